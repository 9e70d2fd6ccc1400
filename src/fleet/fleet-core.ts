import FlatQueue from 'flatqueue';
import { bandRank, type ServiceBand } from '../core/service-tiers.js';
import { ReplicaHealth } from '../routing/replica-health.js';
import { RetryBudget } from '../routing/retry-budget.js';
import type { RoutingConfig } from '../routing/routing-config.js';
import type { RoutingState } from '../routing/routing-plugin.js';
import type {
  ReplicaLabels,
  ReplicaLoadView,
  RoutedRequestView,
  RoutingDecision,
  RoutingPolicy,
} from '../routing/routing-policy.js';
import { createRoutingPolicy, createRoutingState } from '../routing/routing-profile.js';
import { RoutingRejection } from '../routing/routing-rejection.js';
import {
  ReplicaScheduler,
  type ReplicaSchedulerSettings,
  type ScheduledRequest,
} from '../scheduling/replica-scheduler.js';

/**
 * The fleet core: everything Gravity decides about where and when a request runs, as one clock-free
 * state machine (docs/adr/0002-fleet-core.md). Events go in — a request arrives, an attempt's first token
 * comes out, tokens stream, it finishes, fails or is cancelled, a probe answers, time passes — and
 * decisions come out: which replica (routing profile per tier, filters, scores), when it may run there
 * (one gateway scheduler per replica: tier bands, VTC, shedding, queue bounds), whether a failed attempt is
 * retried and where, and what the router learns (latency, health, prefix index, VTC counters).
 *
 * Nothing here reads a clock, sets a timer or touches a socket: callers pass times and ask for
 * `nextExpiryMs()`. The live gateway drives it with promises and one timer (src/gateway/gateway.ts), the
 * fleet simulator with events on a virtual clock (src/simulator/fleet-simulator.ts): the same object,
 * the same decisions.
 */

/** What an engine says about its own load, read at every routing decision. */
export interface ReplicaSignals {
  /** Requests waiting inside the engine (not in Gravity's queue for it). */
  readonly waitingRequests: number;
  readonly runningRequests: number;
  /** Fraction of the engine's KV cache in use, or null where unknown. */
  readonly kvUsedFraction: number | null;
}

export interface FleetReplicaOptions {
  /** Stable id: an engine id live, `<hardware>-<n>` in the simulator. */
  id: string;
  /** The models it serves, with their context windows (null: unknown). */
  models: ReadonlyArray<{ id: string; contextTokens: number | null }>;
  /** Labels the replica carries by itself (e.g. its hardware); `routing.replicas.<id>` adds to them. */
  labels?: ReplicaLabels;
  signals: ReplicaSignals;
  /** Request features its engine serves (core/request-features.ts); absent: all of them. */
  servedFeatures?: ReadonlySet<string> | undefined;
  /** Request features its engine refuses although `servedFeatures` lets them in; absent: none. */
  unservedFeatures?: ReadonlySet<string> | undefined;
  /** The gateway's queue in front of it; null sends requests straight to the engine. */
  scheduler: ReplicaSchedulerSettings | null;
}

/** The `routing` settings the core runs (Gravity's config and a scenario share the schema). */
export type FleetRoutingSettings = Pick<
  RoutingConfig,
  | 'policy'
  | 'tierProfiles'
  | 'profiles'
  | 'replicas'
  | 'residency'
  | 'aliases'
  | 'prefixIndex'
  | 'health'
  | 'retries'
>;

/** A request as the core sees it; it doubles as the routing policies' request view (no copy per route). */
export interface FleetRequest<Tag> extends RoutedRequestView {
  /** The driver's own handle (a waiting promise live, a simulated request). */
  readonly tag: Tag;
  /** The model id (aliases already resolved with `resolveModel`). */
  readonly model: string;
  readonly tenant: string;
  readonly band: ServiceBand;
  readonly promptTokens: number;
  readonly maxTokens: number | null;
  /** Prefix-index keys; pass them when `usesPromptBlocks(band)` says routing reads them. */
  readonly promptBlockHashes: readonly number[] | null;
  /**
   * Which gateway's router routes it (and its retries), below `FleetCoreOptions.gateways.count`; absent:
   * the first. Only the simulator runs several gateways in one core; a live gateway is one of them.
   */
  readonly gateway?: number | undefined;
  /**
   * The only replicas it may go to, by id; absent: any of its model's. The Endpoint Picker passes the
   * endpoints Envoy can reach (and the subset hint it was sent), since Envoy, not Gravity, forwards there.
   */
  readonly eligibleReplicas?: ReadonlySet<string> | undefined;
}

/** Builds a FleetRequest with its routing view fields filled in. */
export function fleetRequest<Tag>(options: Omit<FleetRequest<Tag>, 'priority'>): FleetRequest<Tag> {
  return { ...options, priority: bandRank[options.band] };
}

/** One replica of the fleet as routing sees it: the engine's figures plus Gravity's own. */
export class FleetReplica implements ReplicaLoadView {
  readonly labels: ReplicaLabels;
  readonly scheduler: ReplicaScheduler<FleetAttempt<unknown>> | null;
  /** Set before each routing decision: health for filters, the request's model's window for context-fits. */
  healthy = true;
  contextTokens: number | null = null;
  readonly servedFeatures: ReadonlySet<string> | null;
  readonly unservedFeatures: ReadonlySet<string> | null;
  private contextByModel: ReadonlyMap<string, number | null>;
  /** Leaving the fleet (`FleetCore.retireReplica`): out of every pool, removed once its attempts end. */
  retiring = false;
  /** Attempts dispatched here and not yet over: a retiring replica is removed when this reaches 0. */
  activeAttempts = 0;

  constructor(
    /** Its place in `FleetCore.replicas`; it moves down when a replica before it is removed. */
    public index: number,
    readonly id: string,
    readonly signals: ReplicaSignals,
    options: {
      labels: ReplicaLabels;
      models: ReadonlyArray<{ id: string; contextTokens: number | null }>;
      scheduler: ReplicaScheduler<FleetAttempt<unknown>> | null;
      servedFeatures?: ReadonlySet<string> | undefined;
      unservedFeatures?: ReadonlySet<string> | undefined;
    },
  ) {
    this.labels = options.labels;
    this.servedFeatures = options.servedFeatures ?? null;
    this.unservedFeatures = options.unservedFeatures ?? null;
    this.scheduler = options.scheduler;
    this.contextByModel = new Map(options.models.map((model) => [model.id, model.contextTokens]));
  }

  /** Waiting in the engine's own queue plus waiting in Gravity's queue for it: counted here once. */
  get waitingRequests(): number {
    return this.signals.waitingRequests + (this.scheduler?.queuedRequests ?? 0);
  }
  get runningRequests(): number {
    return this.signals.runningRequests;
  }
  get kvUsedFraction(): number | null {
    return this.signals.kvUsedFraction;
  }

  contextFor(model: string): number | null {
    return this.contextByModel.get(model) ?? null;
  }

  /**
   * New model figures from the engine: an upstream learns its context windows from its own `/models`
   * after Gravity started. The simulator's replicas never change theirs.
   */
  updateModels(models: ReadonlyArray<{ id: string; contextTokens: number | null }>): void {
    this.contextByModel = new Map(models.map((model) => [model.id, model.contextTokens]));
  }
}

export type AttemptState = 'queued' | 'running' | 'done';

/** One try of a request on one replica: routed, then queued or running, then done. */
export class FleetAttempt<Tag> {
  state: AttemptState = 'queued';
  ticket: ScheduledRequest<FleetAttempt<unknown>> | null = null;
  dispatchedMs: number | null = null;
  firstTokenMs: number | null = null;

  constructor(
    readonly request: FleetRequest<Tag>,
    readonly replica: FleetReplica,
    /** 1 for the first attempt. */
    readonly number: number,
    /** Replicas tried before this attempt, in order. */
    readonly tried: readonly FleetReplica[],
    /** Routing's reasons (null when explanations are off or one replica needed no scoring). */
    readonly decision: RoutingDecision | null,
    readonly routedMs: number,
  ) {}

  /** Milliseconds the attempt waited in Gravity's queue before it could run. */
  get queueWaitMs(): number {
    return this.dispatchedMs === null ? 0 : this.dispatchedMs - this.routedMs;
  }
}

/** Why the core would not run a request (the driver turns it into the client's answer). */
export type FleetRefusal =
  /** The replica's scheduler predicts the tier's TTFT target cannot be met (flex): come back later. */
  | {
      kind: 'shed';
      band: ServiceBand;
      replica: string;
      retryAfterMs: number;
      predictedTtftMs: number;
    }
  /** The request waited in a replica's queue past its tier's bound. */
  | { kind: 'expired'; replica: string; waitedMs: number }
  /** The filters left no replica: a residency policy, no context window that fits, all ejected. */
  | { kind: 'no-replica'; filter: string; reason: string };

/** What failed, as far as retrying goes. */
export interface AttemptFailure {
  /** The failure says something about the replica (outlier detection counts it). */
  replicaFault: boolean;
  /** Another replica may not fail the same way (connection errors, 5xx, 429). */
  retryable: boolean;
  /** For the health snapshot. */
  message: string;
}

/** Every decision the core takes, in order: what the parity test compares across the two clocks. */
export type FleetDecision<Tag> =
  | { type: 'routed'; tag: Tag; replica: string; attempt: number; atMs: number }
  | { type: 'dispatched'; tag: Tag; replica: string; atMs: number }
  | { type: 'refused'; tag: Tag; refusal: FleetRefusal['kind']; atMs: number }
  | { type: 'retried'; tag: Tag; from: string; atMs: number };

export interface FleetEvents<Tag> {
  /** The attempt may run on `attempt.replica` now. May fire inside `submit` or `retry`. */
  onDispatch(attempt: FleetAttempt<Tag>, nowMs: number): void;
  /**
   * A queued attempt is refused: it waited past its tier's bound (inside `expire`), or its replica left
   * the fleet (inside `retireReplica`, a `no-replica` refusal with filter `retired`).
   */
  onExpire(attempt: FleetAttempt<Tag>, refusal: FleetRefusal, nowMs: number): void;
  /**
   * A retired replica's last attempt ended and it is gone from `replicas` (whose indexes after it moved
   * down by one; `formerIndex` is where it was). The driver closes what it kept for it (the engine).
   */
  onReplicaRemoved?(replica: FleetReplica, formerIndex: number): void;
  /** Every decision, for tests and traces; absent in production (it would allocate per request). */
  onDecision?(decision: FleetDecision<Tag>): void;
}

export interface FleetCoreOptions<Tag> {
  replicas: readonly FleetReplicaOptions[];
  routing: FleetRoutingSettings;
  /** Uniform in [0, 1): seeded in the simulator, Math.random live. */
  random: () => number;
  /** Keep routing's reasons on each attempt (live: `x-gravity-route`); the simulator's hot path does not. */
  explain: boolean;
  events: FleetEvents<Tag>;
  /**
   * Gateway replicas in front of the same engines (simulator only; absent: one). Each gets its own
   * router — profiles, prefix index and latency figures — unless `sharedRoutingState`, which models one
   * view all of them read and write (a shared store without its latency). Queues, health and the retry
   * budget stay one per fleet.
   */
  gateways?: { count: number; sharedRoutingState: boolean } | undefined;
}

/** One gateway's router: what it has learnt and the policies that read it. */
interface GatewayRouter {
  readonly state: RoutingState;
  readonly defaultPolicy: RoutingPolicy;
  readonly tierPolicies: ReadonlyMap<ServiceBand, RoutingPolicy>;
}

export class FleetCore<Tag> {
  /** Every member, in the order they joined (configuration order first); `members` is the same array. */
  readonly replicas: readonly FleetReplica[];
  private readonly members: FleetReplica[] = [];
  readonly health: ReplicaHealth;
  private readonly pools = new Map<string, FleetReplica[]>();
  /** One per gateway; live, and in a simulation of one gateway, just one. */
  private readonly routers: readonly GatewayRouter[];
  private readonly retryBudget: RetryBudget;
  private readonly hasResidency: boolean;
  /** Earliest queue-bound expiry per replica index; stale entries are dropped lazily. */
  private readonly expiries = new FlatQueue<number>();
  /**
   * The expiry last queued for each replica: a replica whose earliest bound did not move queues nothing,
   * so the heap holds about one live entry per replica instead of one per request.
   */
  private readonly armedExpiryMs: number[] = [];
  /** Replicas with a queue in front of them (VTC counters), for sharing service across gateways. */
  private scheduledReplicas = 0;

  constructor(private readonly options: FleetCoreOptions<Tag>) {
    const routing = options.routing;
    const context = {
      random: options.random,
      profiles: routing.profiles,
      residency: routing.residency,
      prefixIndex: routing.prefixIndex,
    };
    const gateways = options.gateways ?? { count: 1, sharedRoutingState: false };
    const sharedState = createRoutingState(context);
    this.routers = Array.from({ length: gateways.count }, (_, gateway) => {
      const state = gateway === 0 || gateways.sharedRoutingState ? sharedState : createRoutingState(context);
      const defaultPolicy = createRoutingPolicy(routing.policy, { ...context, state });
      const tierPolicies = new Map<ServiceBand, RoutingPolicy>();
      for (const [band, name] of Object.entries(routing.tierProfiles))
        if (name !== undefined)
          tierPolicies.set(band as ServiceBand, createRoutingPolicy(name, { ...context, state }));
      return { state, defaultPolicy, tierPolicies };
    });
    this.health = new ReplicaHealth(routing.health);
    this.retryBudget = new RetryBudget(routing.retries.budgetRatio, routing.retries.minRetriesPerSecond);
    this.hasResidency = Object.keys(routing.residency).length > 0;
    this.replicas = this.members;
    for (const replica of options.replicas) this.join(replica);
  }

  /**
   * A replica joins the fleet (membership is a rare event: the Endpoint Picker's discovery): it gets its
   * queue and joins its models' pools, last in each. A replica of that id that is still retiring returns
   * to its pools instead, with what it kept (its queue, health and the prefix index's memory of it).
   */
  addReplica(replica: FleetReplicaOptions): FleetReplica {
    const existing = this.members.find((member) => member.id === replica.id);
    if (existing === undefined) return this.join(replica);
    if (!existing.retiring) throw new Error(`replica '${replica.id}' is already in the fleet`);
    existing.retiring = false;
    this.joinPools(existing, replica.models);
    return existing;
  }

  /**
   * A replica leaves the fleet: out of every pool at once (routing no longer sees it), its queued attempts
   * refused (`onExpire`, filter `retired`: the driver answers 503, nothing is lost), its running attempts
   * left to end; when the last has ended it is removed and forgotten (`onReplicaRemoved`). False when no
   * replica has that id or it is already retiring.
   */
  retireReplica(id: string, nowMs: number): boolean {
    const replica = this.members.find((member) => member.id === id);
    if (replica === undefined || replica.retiring) return false;
    replica.retiring = true;
    for (const pool of this.pools.values()) {
      const at = pool.indexOf(replica);
      if (at >= 0) pool.splice(at, 1);
    }
    const refusal: FleetRefusal = {
      kind: 'no-replica',
      filter: 'retired',
      reason: `replica '${id}' left the fleet`,
    };
    for (const scheduled of replica.scheduler?.evictQueued() ?? []) {
      const attempt = scheduled.tag as FleetAttempt<Tag>;
      attempt.state = 'done';
      this.noteRefused(attempt.request.tag, refusal.kind, nowMs);
      this.options.events.onExpire(attempt, refusal, nowMs);
    }
    this.removeIfDrained(replica);
    return true;
  }

  private join(replica: FleetReplicaOptions): FleetReplica {
    const { metrics: _metrics, ...configured } = this.options.routing.replicas[replica.id] ?? {};
    const scheduler = replica.scheduler
      ? new ReplicaScheduler<FleetAttempt<unknown>>(replica.scheduler, {
          onDispatch: (scheduled, nowMs) => {
            // May fire inside `submit`, before it returns the ticket: take it from the event.
            const attempt = scheduled.tag as FleetAttempt<Tag>;
            attempt.ticket = scheduled;
            this.dispatch(attempt, nowMs);
          },
          onExpire: (scheduled, nowMs) => this.expired(scheduled.tag as FleetAttempt<Tag>, nowMs),
        })
      : null;
    const fleetReplica = new FleetReplica(this.members.length, replica.id, replica.signals, {
      labels: { ...replica.labels, ...configured },
      models: replica.models,
      scheduler,
      servedFeatures: replica.servedFeatures,
      unservedFeatures: replica.unservedFeatures,
    });
    this.members.push(fleetReplica);
    this.joinPools(fleetReplica, replica.models);
    if (scheduler) this.scheduledReplicas++;
    return fleetReplica;
  }

  private joinPools(
    replica: FleetReplica,
    models: ReadonlyArray<{ id: string; contextTokens: number | null }>,
  ): void {
    for (const model of models) {
      const pool = this.pools.get(model.id);
      if (pool) pool.push(replica);
      else this.pools.set(model.id, [replica]);
    }
  }

  /**
   * Removes a retiring replica whose attempts have all ended, and everything kept under its id: health,
   * the prefix index's entries and latency figures of every router. Indexes after it move down, so the
   * expiry heap (keyed by index) is rebuilt: a rare event, not a per-request cost.
   */
  private removeIfDrained(replica: FleetReplica): void {
    if (replica.activeAttempts > 0 || this.members[replica.index] !== replica) return;
    const formerIndex = replica.index;
    this.members.splice(formerIndex, 1);
    for (let index = formerIndex; index < this.members.length; index++)
      (this.members[index] as FleetReplica).index = index;
    if (replica.scheduler) this.scheduledReplicas--;
    this.health.forget(replica.id);
    for (const router of new Set(this.routers.map((each) => each.state))) {
      router.prefixIndex.forget(replica.id);
      router.statistics.forget(replica.id);
    }
    this.expiries.clear();
    this.armedExpiryMs.length = 0;
    for (let index = 0; index < this.members.length; index++) this.armExpiry(index);
    this.options.events.onReplicaRemoved?.(replica, formerIndex);
  }

  /** The model id an alias stands for (the name itself when it is no alias). */
  resolveModel(model: string): string {
    return this.options.routing.aliases[model] ?? model;
  }

  /** The replicas serving a model (after alias resolution), in configuration order; undefined if none. */
  pool(model: string): readonly FleetReplica[] | undefined {
    return this.pools.get(model);
  }

  models(): string[] {
    return [...this.pools.keys()];
  }

  /** What the (first) gateway's router has learnt: the prefix index and latency figures. */
  get routingState(): RoutingState {
    return (this.routers[0] as GatewayRouter).state;
  }

  policyFor(band: ServiceBand, gateway = 0): RoutingPolicy {
    const router = this.routers[gateway] as GatewayRouter;
    return router.tierPolicies.get(band) ?? router.defaultPolicy;
  }

  /** Whether routing reads prompt block hashes for this band (drivers hash prompts only then). */
  usesPromptBlocks(band: ServiceBand): boolean {
    return this.policyFor(band).usesPromptBlocks;
  }

  /**
   * A request arrives: it is routed to one of its model's replicas and queued there (or dispatched at
   * once when a slot is free: `onDispatch` fires before this returns). A shed attempt moves on to the
   * next best replica while attempts and the retry budget last. The model must have a pool.
   */
  submit(request: FleetRequest<Tag>, nowMs: number): FleetAttempt<Tag> | FleetRefusal {
    this.retryBudget.onRequest(nowMs);
    return this.attempt(request, [], 1, nowMs);
  }

  /**
   * The attempt's first token came out at `atMs`: the scheduler learns its TTFT. Health is not judged
   * here but once, at the attempt's end (`finish`, `fail`): a replica that always breaks off mid-stream
   * would otherwise have its failure count reset by every first token and never be ejected.
   */
  firstToken(attempt: FleetAttempt<Tag>, atMs: number): void {
    attempt.firstTokenMs = atMs;
    if (attempt.ticket) attempt.replica.scheduler?.onFirstToken(attempt.ticket, atMs);
  }

  /** Tokens streamed: they count against the tenant's fair share. Per-token path: no clock, no allocation. */
  tokens(attempt: FleetAttempt<Tag>, tokens: number): void {
    if (attempt.ticket) attempt.replica.scheduler?.onTokens(attempt.ticket, tokens);
  }

  /** The attempt finished: its slot goes to the next request, and latency scorers learn from it. */
  finish(attempt: FleetAttempt<Tag>, nowMs: number, interTokenMs: number | null): void {
    if (!this.release(attempt, nowMs)) return;
    this.health.onSuccess(attempt.replica.id);
    this.policyFor(attempt.request.band, attempt.request.gateway).observe(
      {
        replica: attempt.replica.id,
        ttftMs: attempt.firstTokenMs === null ? null : attempt.firstTokenMs - attempt.routedMs,
        interTokenMs,
      },
      nowMs,
    );
    // After what was learnt above, which removal then forgets with the rest.
    if (attempt.replica.retiring) this.removeIfDrained(attempt.replica);
  }

  /**
   * The client left (or shutdown cancelled it): out of the queue or its slot freed, nothing learnt. A
   * half-open replica's trial that ends this way says nothing either way: the next request may try it.
   */
  cancel(attempt: FleetAttempt<Tag>, nowMs: number): void {
    if (!this.release(attempt, nowMs)) return;
    this.health.onUnjudged(attempt.replica.id);
    if (attempt.replica.retiring) this.removeIfDrained(attempt.replica);
  }

  /**
   * The attempt failed. Returns the next attempt — on the best replica not yet tried, queued or already
   * dispatched — when the failure came before the first token, is retryable, and attempts and the retry
   * budget last; otherwise null (the failure is the request's answer), or the refusal that ended a retry.
   */
  fail(
    attempt: FleetAttempt<Tag>,
    nowMs: number,
    failure: AttemptFailure,
  ): FleetAttempt<Tag> | FleetRefusal | null {
    if (!this.release(attempt, nowMs)) return null;
    // Judged once, at the attempt's end: a failure mid-stream counts as much as one before it.
    if (failure.replicaFault) this.health.onFailure(attempt.replica.id, nowMs, failure.message);
    else this.health.onUnjudged(attempt.replica.id);
    if (attempt.replica.retiring) this.removeIfDrained(attempt.replica);
    if (attempt.firstTokenMs !== null || !failure.retryable) return null;
    const tried = [...attempt.tried, attempt.replica];
    if (!this.mayRetry(attempt.request, tried, attempt.number, nowMs)) return null;
    this.options.events.onDecision?.({
      type: 'retried',
      tag: attempt.request.tag,
      from: attempt.replica.id,
      atMs: nowMs,
    });
    const next = this.attempt(attempt.request, tried, attempt.number + 1, nowMs);
    // No replica left for the retry (all ejected): the client hears about the failure itself.
    return isRefusal(next) && next.kind === 'no-replica' ? null : next;
  }

  /** An active health check's result (null error: the replica answered). */
  onProbe(replica: string, nowMs: number, error: string | null): void {
    this.health.onProbe(replica, nowMs, error);
  }

  /**
   * Each tenant's weighted tokens (VTC) served by this fleet's queues since the last call, per band (by
   * its shared name) and tenant; `visit` may see one pair several times (once per replica). What a
   * driver shares with the other gateways in front of the same engines.
   */
  drainServedTokens(visit: (band: string, tenant: string, tokens: number) => void): void {
    for (const replica of this.replicas) replica.scheduler?.drainServedTokens(visit);
  }

  /**
   * Weighted tokens the other gateways served a tenant in a band, a running total. Each replica's queue
   * counts an equal share of it, as the tenant's own service here is spread over the replicas: service
   * elsewhere then weighs what the same service here would.
   */
  setServiceElsewhere(band: string, tenant: string, servedTokens: number): void {
    if (this.scheduledReplicas === 0) return;
    const share = servedTokens / this.scheduledReplicas;
    for (const replica of this.replicas) replica.scheduler?.setServiceElsewhere(band, tenant, share);
  }

  /** Another gateway ejected a replica (shared state): it is avoided here too, by its own timer. */
  onPeerEjection(replica: string, nowMs: number, ejectedForMs: number, error: string | null): void {
    this.health.onPeerEjection(replica, nowMs, ejectedForMs, error);
  }

  /** Another gateway readmitted a replica: an ejection taken on a peer's word ends here too. */
  onPeerReadmission(replica: string): void {
    this.health.onPeerReadmission(replica);
  }

  /** The earliest time a queued request's wait bound passes (Infinity when none waits). */
  nextExpiryMs(): number {
    while (this.expiries.length > 0) {
      const index = this.expiries.peek() as number;
      const replica = this.replicas[index] as FleetReplica;
      const atMs = this.expiries.peekValue() as number;
      if (replica.scheduler?.nextExpiryMs() === atMs) return atMs;
      this.expiries.pop();
      if (this.armedExpiryMs[index] === atMs) this.armedExpiryMs[index] = Number.NaN;
    }
    return Number.POSITIVE_INFINITY;
  }

  /** Refuses every queued request whose wait bound has passed (`onExpire` for each). */
  expire(nowMs: number): void {
    while (this.nextExpiryMs() <= nowMs) {
      const index = this.expiries.pop() as number;
      this.armedExpiryMs[index] = Number.NaN;
      (this.replicas[index] as FleetReplica).scheduler?.expire(nowMs);
      this.armExpiry(index);
    }
  }

  /**
   * Which replica would serve the request now, and why — without queueing it, teaching the prefix index
   * or claiming a half-open replica's trial (`POST /v1/routing/explain`).
   */
  explain(request: FleetRequest<Tag>, nowMs: number): RoutingDecision | FleetRefusal {
    const pool = this.pools.get(request.model) ?? [];
    this.prepareViews(pool, request.model, nowMs);
    try {
      return this.policyFor(request.band, request.gateway).decide(pool, request, nowMs, { dryRun: true });
    } catch (error) {
      if (error instanceof RoutingRejection) return refusalOf(error);
      throw error;
    }
  }

  private attempt(
    request: FleetRequest<Tag>,
    tried: readonly FleetReplica[],
    number: number,
    nowMs: number,
  ): FleetAttempt<Tag> | FleetRefusal {
    const pool = this.pools.get(request.model) as FleetReplica[];
    const eligible = request.eligibleReplicas;
    let candidates = tried.length === 0 ? pool : pool.filter((replica) => !tried.includes(replica));
    if (eligible !== undefined) candidates = candidates.filter((replica) => eligible.has(replica.id));
    // A pool can be empty once its replicas have all retired (membership changes at run time).
    if (candidates.length === 0) {
      const refusal: FleetRefusal =
        eligible !== undefined
          ? {
              kind: 'no-replica',
              filter: 'eligible',
              reason: 'none of the eligible endpoints serves the model',
            }
          : { kind: 'no-replica', filter: 'members', reason: 'no replica serves the model now' };
      this.noteRefused(request.tag, refusal.kind, nowMs);
      return refusal;
    }
    let replica = candidates[0] as FleetReplica;
    let decision: RoutingDecision | null = null;
    // Fast path: one candidate, no residency policy and no feature to check needs no scoring. A request
    // limited to eligible replicas is always scored: its only candidate may be ejected, and the caller
    // (the Endpoint Picker) must then hear "none ready" rather than be sent to it.
    if (
      candidates.length > 1 ||
      this.hasResidency ||
      (request.features?.length ?? 0) > 0 ||
      eligible !== undefined
    ) {
      this.prepareViews(candidates, request.model, nowMs);
      const policy = this.policyFor(request.band, request.gateway);
      try {
        if (this.options.explain) {
          decision = policy.decide(candidates, request, nowMs);
          replica = candidates[decision.index] as FleetReplica;
        } else replica = candidates[policy.pick(candidates, request, nowMs)] as FleetReplica;
      } catch (error) {
        if (!(error instanceof RoutingRejection)) throw error;
        const refusal = refusalOf(error);
        this.noteRefused(request.tag, refusal.kind, nowMs);
        return refusal;
      }
      this.health.onAttempt(replica.id);
    }
    const attempt = new FleetAttempt(request, replica, number, tried, decision, nowMs);
    this.options.events.onDecision?.({
      type: 'routed',
      tag: request.tag,
      replica: replica.id,
      attempt: number,
      atMs: nowMs,
    });
    const scheduler = replica.scheduler;
    if (!scheduler) {
      this.dispatch(attempt, nowMs);
      return attempt;
    }
    const outcome = scheduler.submit(
      {
        tag: attempt as FleetAttempt<unknown>,
        tenant: request.tenant,
        tier: request.band,
        promptTokens: request.promptTokens,
      },
      nowMs,
    );
    if (outcome.decision.kind === 'shed') {
      attempt.state = 'done';
      const refusal: FleetRefusal = {
        kind: 'shed',
        band: request.band,
        replica: replica.id,
        retryAfterMs: outcome.decision.retryAfterMs,
        predictedTtftMs: outcome.decision.predictedTtftMs,
      };
      this.noteRefused(request.tag, 'shed', nowMs);
      // Another replica may have room for it: shedding is that replica's view, not the fleet's.
      const next = [...tried, replica];
      if (!this.mayRetry(request, next, number, nowMs)) return refusal;
      this.options.events.onDecision?.({ type: 'retried', tag: request.tag, from: replica.id, atMs: nowMs });
      const retried = this.attempt(request, next, number + 1, nowMs);
      return isRefusal(retried) && retried.kind === 'no-replica' ? refusal : retried;
    }
    attempt.ticket = outcome.request;
    this.armExpiry(replica.index);
    return attempt;
  }

  /** Tells the decision log a request (or attempt) was refused, and why. */
  private noteRefused(tag: Tag, refusal: FleetRefusal['kind'], nowMs: number): void {
    this.options.events.onDecision?.({ type: 'refused', tag, refusal, atMs: nowMs });
  }

  private mayRetry(
    request: FleetRequest<Tag>,
    tried: readonly FleetReplica[],
    attempts: number,
    nowMs: number,
  ): boolean {
    const pool = this.pools.get(request.model) as FleetReplica[];
    // Tried replicas that have since retired are no longer in the pool: they leave nothing untried there.
    let triedInPool = 0;
    for (const replica of tried) if (!replica.retiring) triedInPool++;
    if (triedInPool >= pool.length) return false;
    if (attempts >= this.options.routing.retries.maxAttempts) return false;
    return this.retryBudget.tryRetry(nowMs);
  }

  /** Health and the request's context window on each candidate view, read once per decision. */
  private prepareViews(candidates: readonly FleetReplica[], model: string, nowMs: number): void {
    for (const replica of candidates) {
      replica.healthy = this.health.isAvailable(replica.id, nowMs);
      replica.contextTokens = replica.contextFor(model);
    }
  }

  private dispatch(attempt: FleetAttempt<Tag>, nowMs: number): void {
    attempt.state = 'running';
    attempt.replica.activeAttempts++;
    attempt.dispatchedMs = nowMs;
    this.options.events.onDecision?.({
      type: 'dispatched',
      tag: attempt.request.tag,
      replica: attempt.replica.id,
      atMs: nowMs,
    });
    this.options.events.onDispatch(attempt, nowMs);
  }

  private expired(attempt: FleetAttempt<Tag>, nowMs: number): void {
    attempt.state = 'done';
    this.noteRefused(attempt.request.tag, 'expired', nowMs);
    this.options.events.onExpire(
      attempt,
      { kind: 'expired', replica: attempt.replica.id, waitedMs: nowMs - attempt.routedMs },
      nowMs,
    );
  }

  /** Frees the attempt's place (queue or slot). False when it was already over. */
  private release(attempt: FleetAttempt<Tag>, nowMs: number): boolean {
    if (attempt.state === 'done') return false;
    if (attempt.state === 'running') attempt.replica.activeAttempts--;
    attempt.state = 'done';
    const scheduler = attempt.replica.scheduler;
    if (scheduler && attempt.ticket) {
      scheduler.release(attempt.ticket, nowMs);
      this.armExpiry(attempt.replica.index);
    }
    return true;
  }

  private armExpiry(index: number): void {
    const atMs = (this.replicas[index] as FleetReplica).scheduler?.nextExpiryMs() ?? Number.POSITIVE_INFINITY;
    if (!Number.isFinite(atMs) || this.armedExpiryMs[index] === atMs) return;
    this.armedExpiryMs[index] = atMs;
    this.expiries.push(index, atMs);
  }
}

/** Whether a core answer is a refusal rather than an attempt or a decision. */
export function isRefusal(value: object): value is FleetRefusal {
  return 'kind' in value;
}

function refusalOf(rejection: RoutingRejection): FleetRefusal {
  return { kind: 'no-replica', filter: rejection.filter, reason: rejection.reason };
}
