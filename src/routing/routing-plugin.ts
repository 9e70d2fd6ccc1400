import type { z } from 'zod';
import type { PrefixIndex } from './prefix-index.js';
import type { ReplicaStatistics } from './replica-statistics.js';
import type { ReplicaLoadView, RoutedRequestView } from './routing-policy.js';

/**
 * The three kinds of routing plugin (filter → scorer → picker, after the Kubernetes inference gateway's
 * scheduler). Plugins are registered by kebab-case type name (plugin-registry.ts), configured by name in a
 * profile with a params object whose defaults live in the plugin's schema, and never read wall time:
 * `nowMs` comes from the caller's Clock.
 */

/** A tenant's data-residency policy: where its requests may run. Absent lists allow anything. */
export interface ResidencyPolicy {
  readonly regions?: readonly string[] | undefined;
  readonly providers?: readonly string[] | undefined;
}

/** State shared by every plugin of one router (all profiles, all tiers): what the router has learnt. */
export interface RoutingState {
  /** Uniform in [0, 1): seeded in the simulator, Math.random live. */
  readonly random: () => number;
  /** Which replica recently served which prompt-prefix blocks (the router's view, not the engines'). */
  readonly prefixIndex: PrefixIndex;
  /** EWMA latencies per replica, from reported outcomes. */
  readonly statistics: ReplicaStatistics;
  /** Residency policies by tenant (`routing.residency`). */
  readonly residency: ReadonlyMap<string, ResidencyPolicy>;
}

/** Keeps or drops one replica. Must be cheap: it runs for every replica on every request. */
export interface ReplicaFilter {
  readonly type: string;
  /**
   * A soft filter drops replicas only while others remain: when it would leave none, routing ignores it
   * (context-fits: routing's token count is an estimate, so the engine has the last word).
   */
  readonly soft?: boolean;
  accepts(request: RoutedRequestView, replica: ReplicaLoadView, nowMs: number): boolean;
  /** Why nothing passed, for the client's error (e.g. naming the residency policy). */
  rejection(request: RoutedRequestView): string;
}

/**
 * Scores the candidates in [0, 1] (1 best). `candidates[0..count)` index into `replicas`; the scorer
 * writes `scores[k]` for candidate k. Batch scoring lets a scorer normalise across candidates.
 */
export interface ReplicaScorer {
  readonly type: string;
  /** Whether it reads `request.promptBlockHashes`. */
  readonly usesPromptBlocks?: boolean;
  score(
    request: RoutedRequestView,
    replicas: readonly ReplicaLoadView[],
    candidates: Int32Array,
    count: number,
    scores: Float64Array,
    nowMs: number,
  ): void;
}

/** Chooses one candidate from their weighted totals; returns an index into `replicas`. */
export interface ReplicaPicker {
  readonly type: string;
  pick(candidates: Int32Array, count: number, totals: Float64Array): number;
}

/** A plugin type as registered: its name, its params schema (with defaults) and its factory. */
export interface PluginDefinition<Plugin, Params> {
  readonly type: string;
  readonly params: z.ZodType<Params, unknown>;
  create(params: Params, state: RoutingState): Plugin;
}

export type FilterDefinition<Params = unknown> = PluginDefinition<ReplicaFilter, Params>;
export type ScorerDefinition<Params = unknown> = PluginDefinition<ReplicaScorer, Params>;
export type PickerDefinition<Params = unknown> = PluginDefinition<ReplicaPicker, Params>;

/** Replica load as scorers compare it: requests waiting plus running. */
export function replicaLoad(replica: ReplicaLoadView): number {
  return replica.waitingRequests + replica.runningRequests;
}

/**
 * Writes `1 - (value - min) / (max - min)` (lower is better) for each candidate; every candidate gets 1
 * when all are equal, so a scorer that cannot tell replicas apart never decides.
 */
export function invertedMinMax(values: Float64Array, count: number, scores: Float64Array): void {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let k = 0; k < count; k++) {
    const value = values[k] as number;
    if (value < min) min = value;
    if (value > max) max = value;
  }
  const range = max - min;
  for (let k = 0; k < count; k++) scores[k] = range > 0 ? 1 - ((values[k] as number) - min) / range : 1;
}

/** A definition as the registry stores it: params already erased to what its schema accepts. */
export interface RegisteredPlugin<Plugin> {
  readonly type: string;
  readonly params: z.ZodType<unknown, unknown>;
  create(params: never, state: RoutingState): Plugin;
}
