import type { Clock } from '../core/clock.js';
import { errors } from '../core/errors.js';
import { bandRank, type ServiceBand } from '../core/service-tiers.js';
import { promptBlockHashes } from '../performance-model/block-hashes.js';
import { PrometheusScraper } from './engine-signals/prometheus-scraper.js';
import { ReplicaHealth, type ReplicaHealthSnapshot } from './replica-health.js';
import { RetryBudget } from './retry-budget.js';
import type { RoutingConfig } from './routing-config.js';
import type { RoutingState } from './routing-plugin.js';
import type { ReplicaLabels, ReplicaLoadView, RoutingDecision, RoutingPolicy } from './routing-policy.js';
import { createRoutingPolicy, createRoutingState } from './routing-profile.js';
import { RoutingRejection } from './routing-rejection.js';

/** What routing needs from a live replica; EngineAdapter satisfies it. */
export interface RoutableReplica {
  readonly id: string;
  models(): ReadonlyArray<{ id: string; contextTokens: number | null }>;
  /** Optional active health check: resolves when the replica answers, throws otherwise. */
  probe?(signal: AbortSignal): Promise<void>;
}

export interface LiveRouteRequest {
  model: string;
  /** The prompt as one string (what the prefix index hashes). */
  promptText: string;
  promptTokens: number;
  maxTokens: number | null;
  tenant: string | null;
  tier: ServiceBand;
}

/**
 * Routing as the live gateway runs it: the same policies the simulator runs, fed with live replica views
 * (engine load, scraped Prometheus signals, config labels, health), plus what only a live fleet needs:
 * active health checks, passive outlier detection, a retry budget and model aliases.
 */
export class FleetRouter {
  readonly state: RoutingState;
  private readonly defaultPolicy: RoutingPolicy;
  private readonly tierPolicies = new Map<ServiceBand, RoutingPolicy>();
  readonly health: ReplicaHealth;
  private readonly retryBudget: RetryBudget;
  private readonly scrapers = new Map<string, PrometheusScraper>();
  private healthTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: {
      config: RoutingConfig;
      replicas: readonly RoutableReplica[];
      clock: Clock;
      random?: () => number;
    },
  ) {
    const { config, clock } = options;
    const context = {
      random: options.random ?? Math.random,
      profiles: config.profiles,
      residency: config.residency,
      prefixIndex: config.prefixIndex,
    };
    this.state = createRoutingState(context);
    this.defaultPolicy = createRoutingPolicy(config.policy, { ...context, state: this.state });
    for (const [tier, name] of Object.entries(config.tierProfiles))
      this.tierPolicies.set(
        tier as ServiceBand,
        createRoutingPolicy(name as string, { ...context, state: this.state }),
      );
    this.health = new ReplicaHealth(config.health);
    this.retryBudget = new RetryBudget(config.retries.budgetRatio, config.retries.minRetriesPerSecond);
    for (const [id, replica] of Object.entries(config.replicas))
      if (replica.metrics)
        this.scrapers.set(id, new PrometheusScraper({ ...replica.metrics, nowMs: () => clock.nowMs() }));
  }

  /** Starts scrapers and active health checks. */
  start(): void {
    for (const scraper of this.scrapers.values()) scraper.start();
    const { intervalMs, timeoutMs } = this.options.config.health;
    const probed = this.options.replicas.filter((replica) => replica.probe);
    if (intervalMs > 0 && probed.length > 0) {
      this.healthTimer = setInterval(() => {
        for (const replica of probed) void this.probe(replica, timeoutMs);
      }, intervalMs);
      this.healthTimer.unref();
    }
  }

  close(): void {
    for (const scraper of this.scrapers.values()) scraper.close();
    if (this.healthTimer) clearInterval(this.healthTimer);
  }

  /** Runs one active check now (also what the timer does). */
  async probe(replica: RoutableReplica, timeoutMs = this.options.config.health.timeoutMs): Promise<void> {
    if (!replica.probe) return;
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      await replica.probe(signal);
      this.health.onProbe(replica.id, this.options.clock.nowMs(), null);
    } catch (error) {
      this.health.onProbe(replica.id, this.options.clock.nowMs(), (error as Error).message);
    }
  }

  /** The model id an alias stands for (the name itself when it is no alias). */
  resolveModel(model: string): string {
    return this.options.config.aliases[model] ?? model;
  }

  /** Whether a model with one replica still needs routing's filters (a residency policy exists). */
  get filtersSingleReplicas(): boolean {
    return Object.keys(this.options.config.residency).length > 0;
  }

  policyFor(tier: ServiceBand): RoutingPolicy {
    return this.tierPolicies.get(tier) ?? this.defaultPolicy;
  }

  /**
   * Chooses among `candidates` (the model's replicas not yet tried), whose load views the gateway gives
   * in the same order. Throws a GravityError when the filters leave none: 403 naming the residency
   * policy, 400 when no context window fits, 503 when every replica is ejected.
   */
  route(
    candidates: readonly RoutableReplica[],
    loads: readonly ReplicaLoadView[],
    request: LiveRouteRequest,
    options: { dryRun?: boolean } = {},
  ): { replica: RoutableReplica; decision: RoutingDecision } {
    const nowMs = this.options.clock.nowMs();
    const policy = this.policyFor(request.tier);
    const views = candidates.map((replica, index) =>
      this.view(replica, loads[index] as ReplicaLoadView, request.model, nowMs),
    );
    let decision: RoutingDecision;
    try {
      decision = policy.decide(
        views,
        {
          promptTokens: request.promptTokens,
          priority: bandRank[request.tier],
          maxTokens: request.maxTokens,
          tenant: request.tenant ?? 'anonymous',
          promptBlockHashes: policy.usesPromptBlocks ? promptBlockHashes(request.promptText) : null,
        },
        nowMs,
        options,
      );
    } catch (error) {
      if (!(error instanceof RoutingRejection)) throw error;
      if (error.filter === 'residency') throw errors.residencyDenied(error.reason);
      throw errors.noReplicaAvailable(request.model, error.reason);
    }
    const replica = candidates[decision.index] as RoutableReplica;
    if (!options.dryRun) this.health.onAttempt(replica.id);
    return { replica, decision };
  }

  /** Counts a request for the retry budget; call once per request. */
  onRequest(): void {
    this.retryBudget.onRequest(this.options.clock.nowMs());
  }

  /** Whether a failed attempt may be retried: attempts left and budget left. */
  mayRetry(attempt: number): boolean {
    if (attempt >= this.options.config.retries.maxAttempts) return false;
    return this.retryBudget.tryRetry(this.options.clock.nowMs());
  }

  /** The attempt reached its first token: the replica is healthy; latency feeds the latency scorer. */
  onSuccess(replica: string, tier: ServiceBand, ttftMs: number | null, interTokenMs: number | null): void {
    this.health.onSuccess(replica);
    this.policyFor(tier).observe({ replica, ttftMs, interTokenMs }, this.options.clock.nowMs());
  }

  onFailure(replica: string, error: unknown): void {
    this.health.onFailure(
      replica,
      this.options.clock.nowMs(),
      error instanceof Error ? error.message : String(error),
    );
  }

  /** Health, scraped signals and labels per replica, for the debug endpoint. */
  snapshot(): {
    replicas: Array<{
      id: string;
      labels: ReplicaLabels;
      health: ReplicaHealthSnapshot | null;
      signals: { stale: boolean; lastError: string | null } | null;
    }>;
    prefixIndexBlocks: number;
  } {
    const nowMs = this.options.clock.nowMs();
    const health = new Map(this.health.snapshot(nowMs).map((entry) => [entry.replica, entry]));
    return {
      replicas: this.options.replicas.map((replica) => {
        const scraper = this.scrapers.get(replica.id);
        return {
          id: replica.id,
          labels: this.labels(replica.id),
          health: health.get(replica.id) ?? null,
          signals: scraper ? { stale: scraper.current() === null, lastError: scraper.lastError } : null,
        };
      }),
      prefixIndexBlocks: this.state.prefixIndex.size,
    };
  }

  private labels(id: string): ReplicaLabels {
    const { metrics: _metrics, ...labels } = this.options.config.replicas[id] ?? {};
    return labels;
  }

  private view(
    replica: RoutableReplica,
    load: ReplicaLoadView,
    model: string,
    nowMs: number,
  ): ReplicaLoadView {
    const scraped = this.scrapers.get(replica.id)?.current() ?? null;
    return {
      id: replica.id,
      // Scraped figures see the engine's own queue; Gravity's counts add what waits in Gravity.
      waitingRequests: load.waitingRequests + (scraped?.waitingRequests ?? 0),
      runningRequests: Math.max(load.runningRequests, scraped?.runningRequests ?? 0),
      kvUsedFraction: scraped?.kvUsedFraction ?? load.kvUsedFraction,
      labels: this.labels(replica.id),
      contextTokens: replica.models().find((candidate) => candidate.id === model)?.contextTokens ?? null,
      healthy: this.health.isAvailable(replica.id, nowMs),
    };
  }
}
