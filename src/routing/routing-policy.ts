/**
 * Routing: which replica of a model serves a request. A policy sees plain replica figures and a clock
 * reading, never sockets or wall time, so the fleet core runs the same code under the live gateway and
 * the fleet simulator (docs/adr/0002-fleet-core.md). Every policy is a profile of the filter → scorer →
 * picker pipeline (routing-pipeline.ts, after the Kubernetes inference gateway's scheduler); the names
 * below are the built-in profiles (routing-profile.ts).
 */

/** What an operator says about a replica in config: where it runs, whose it is, what it costs. */
export interface ReplicaLabels {
  readonly region?: string | undefined;
  readonly provider?: string | undefined;
  /** A hardware profile name, e.g. `h100-sxm`. */
  readonly hardware?: string | undefined;
  /** Blended $ per 1M tokens the replica costs to run (or a paid API charges). */
  readonly costPerMillionTokensUsd?: number | undefined;
  /** Joules per generated token, measured or modelled. */
  readonly energyJoulesPerToken?: number | undefined;
}

export interface ReplicaLoadView {
  /** Stable id, e.g. `h100-0`. */
  readonly id: string;
  /** Requests waiting inside the replica's engine. */
  readonly waitingRequests: number;
  /** Requests the replica's engine is running. */
  readonly runningRequests: number;
  /** Fraction of the replica's KV cache in use, or null where unknown (an upstream without metrics). */
  readonly kvUsedFraction: number | null;
  /** Labels from config; absent in the simulator unless a scenario gives them. */
  readonly labels?: ReplicaLabels | undefined;
  /** The replica's context window for the request's model, or null where unknown. */
  readonly contextTokens?: number | null | undefined;
  /** False while health checks or outlier detection keep the replica out; absent means healthy. */
  readonly healthy?: boolean | undefined;
  /** Request features its engine serves (core/request-features.ts); null or absent: all of them. */
  readonly servedFeatures?: ReadonlySet<string> | null | undefined;
  /** Request features its engine refuses although its allow-list lets them in; null or absent: none. */
  readonly unservedFeatures?: ReadonlySet<string> | null | undefined;
}

export interface RoutedRequestView {
  readonly promptTokens: number;
  /** Tier rank (priority 0 … batch 3). */
  readonly priority: number;
  /** Completion tokens asked for, or null/absent when the client set no limit. */
  readonly maxTokens?: number | null | undefined;
  /** The tenant admission resolved (`anonymous` without keys); residency filters read it. */
  readonly tenant?: string | null | undefined;
  /**
   * Chained hashes of the prompt's blocks (block-hashes.ts): the prefix index's keys. The simulator passes
   * the workload's hashes; the gateway hashes the prompt text. Null where no scorer needs them.
   */
  readonly promptBlockHashes?: readonly number[] | null | undefined;
  /** Features beyond plain text the request uses (core/request-features.ts): `serves-features` reads them. */
  readonly features?: readonly string[] | undefined;
}

/** One candidate's weighted total and each scorer's value, for explanations. */
export interface ReplicaScore {
  readonly replica: string;
  readonly score: number;
  readonly scorers: Readonly<Record<string, number>>;
}

/** Why a replica was chosen: what `x-gravity-route` and the ledger's `route` column carry. */
export interface RoutingDecision {
  /** Index into the replicas passed in. */
  readonly index: number;
  readonly profile: string;
  /** Replicas the filters removed, with the filter that removed each. */
  readonly filtered: ReadonlyArray<{ replica: string; filter: string }>;
  /** The best candidates, best first (at most five). */
  readonly top: readonly ReplicaScore[];
}

/** What became of a routed request, reported back so latency scorers can learn (EWMA). */
export interface RouteOutcome {
  readonly replica: string;
  /** Arrival at the replica to first token; null when it failed first. */
  readonly ttftMs: number | null;
  /** Mean gap between tokens; null with fewer than two tokens. */
  readonly interTokenMs: number | null;
}

export interface RoutingPolicy {
  readonly name: string;
  /**
   * Index into `replicas` (never empty) of the replica that should serve `request`. Throws a
   * RoutingRejection when the filters leave no candidate. Hot in the simulator: allocates nothing.
   */
  pick(replicas: readonly ReplicaLoadView[], request: RoutedRequestView, nowMs: number): number;
  /** `pick` with its reasons; allocates, so the live gateway uses it and the simulator does not. */
  decide(
    replicas: readonly ReplicaLoadView[],
    request: RoutedRequestView,
    nowMs: number,
    options?: { dryRun?: boolean },
  ): RoutingDecision;
  /** Feeds latency scorers; optional to call. */
  observe(outcome: RouteOutcome, nowMs: number): void;
  /** Whether any scorer reads `promptBlockHashes` (the gateway hashes prompts only then). */
  readonly usesPromptBlocks: boolean;
}
