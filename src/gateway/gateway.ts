import type { Clock } from '../core/clock.js';
import { errors, GravityError } from '../core/errors.js';
import { estimateRequestTokens, type PromptInput, promptText } from '../core/prompt-size.js';
import { createRequestContext, type Endpoint, type RequestContext } from '../core/request-context.js';
import type { RequestCorrelation } from '../core/request-correlation.js';
import { servesFeature, unservedFeatureError } from '../core/request-features.js';
import type { RequestObserver } from '../core/request-observer.js';
import { type ServiceBand, type ServiceTier, serviceBand } from '../core/service-tiers.js';
import type { StreamPart } from '../core/stream-parts.js';
import type { EngineAdapter, EngineModelInfo, GenerationRequest } from '../engines/engine-adapter.js';
import {
  type AttemptFailure,
  type FleetAttempt,
  FleetCore,
  type FleetEvents,
  type FleetRefusal,
  type FleetReplica,
  type FleetRoutingSettings,
  fleetRequest,
  isRefusal,
  type ReplicaSignals,
} from '../fleet/fleet-core.js';
import { promptBlockHashes } from '../performance-model/block-hashes.js';
import type { RoutingDecision } from '../routing/routing-policy.js';
import type { ReplicaScheduler, ReplicaSchedulerSettings } from '../scheduling/replica-scheduler.js';
import { LiveFleetSignals } from './live-fleet-signals.js';

/** The model label used for requests whose model does not exist, so clients cannot inflate label sets. */
export const unknownModelLabel = '(unknown)';

/** The live driver's handle on a request inside the fleet core: who to wake when an attempt may run. */
export interface LiveRequest {
  readonly context: RequestContext;
  waiter: { resolve: () => void; reject: (reason: unknown) => void } | null;
}

export interface GatewayOptions {
  engines: readonly EngineAdapter[];
  clock: Clock;
  observers: readonly RequestObserver[];
  routing: FleetRoutingSettings;
  /** The queue in front of each engine (null: requests go straight to the engines). */
  schedulerFor: ((engine: EngineAdapter) => ReplicaSchedulerSettings) | null;
  /** Uniform in [0, 1) for routing ties; the simulator seeds the same policies. */
  random?: () => number;
  /** Every decision of the fleet core, in order (parity tests; allocates per request). */
  onDecision?: FleetEvents<LiveRequest>['onDecision'];
  /**
   * Engines Gravity picks for but never calls: the Endpoint Picker's endpoints, which Envoy forwards to.
   * Their engines see none of that traffic, so the requests placed on them count as running there.
   */
  placedEngineIds?: ReadonlySet<string> | undefined;
  /** Where an observer's failure is reported (the request goes on without it); stderr by default. */
  log?: (message: string, details: Record<string, unknown>) => void;
}

/**
 * The live driver of the fleet core (src/fleet/): it turns the core's decisions into promises and engine
 * calls on the wall clock. Per request: begin a record, submit to the core, wait for its dispatch (one
 * timer for every queue bound), run the generation on the chosen engine while reporting first token,
 * tokens and the end back, and on a failure before the first token run the retry the core decides.
 * Every decision lives in the core, which the simulator drives the same way on a virtual clock.
 */
export class Gateway {
  /** In the fleet core's replica order (`replica.index` finds a replica's engine); `members` is the same. */
  readonly engines: readonly EngineAdapter[];
  private readonly members: EngineAdapter[];
  /** Engines Gravity places on but never calls (`GatewayOptions.placedEngineIds`), as they come and go. */
  private readonly placedEngineIds: Set<string>;
  /** Settled when a retired engine has been removed from the fleet and closed, by engine id. */
  private readonly removals = new Map<string, () => void>();
  readonly clock: Clock;
  readonly signals: LiveFleetSignals;
  /** The gateway's queue in front of each engine, by engine id (metrics and tests read it). */
  readonly schedulers = new Map<string, ReplicaScheduler<unknown>>();
  private readonly observers: readonly RequestObserver[];
  /** The observers that watch each attempt's dispatch (tracing); none unless tracing is on. */
  private readonly dispatchObservers: readonly RequestObserver[];
  private readonly inFlight = new Set<AbortController>();
  private readonly finished = new WeakSet<RequestContext>();
  /** Requests placed on each engine of `placedEngineIds` and not yet released, by engine id. */
  private readonly placedRequests = new Map<string, number>();
  private accepting = true;
  private timer: NodeJS.Timeout | undefined;
  private timerAtMs = Number.POSITIVE_INFINITY;

  constructor(private readonly options: GatewayOptions) {
    this.members = [...options.engines];
    this.engines = this.members;
    this.placedEngineIds = new Set(options.placedEngineIds);
    this.clock = options.clock;
    this.observers = options.observers;
    this.dispatchObservers = options.observers.filter((observer) => observer.onDispatched !== undefined);
    this.signals = new LiveFleetSignals({
      // The live list: engines that join later are probed too.
      engines: this.members,
      routing: options.routing,
      clock: options.clock,
    });
  }

  /** The fleet core this gateway drives; built in `start`, once the engines know their models. */
  get core(): FleetCore<LiveRequest> {
    if (!this.fleetCore) throw new Error('the gateway has not started');
    return this.fleetCore;
  }
  private fleetCore: FleetCore<LiveRequest> | undefined;

  private readonly events: FleetEvents<LiveRequest> = {
    onDispatch: (attempt) => {
      const waiter = attempt.request.tag.waiter;
      attempt.request.tag.waiter = null;
      waiter?.resolve();
    },
    onExpire: (attempt, refusal) => {
      const waiter = attempt.request.tag.waiter;
      attempt.request.tag.waiter = null;
      waiter?.reject(refusalError(refusal, attempt.request.model));
    },
    onReplicaRemoved: (replica, formerIndex) => {
      // The core has already moved the indexes after it down: the engine list follows in step.
      const at =
        this.members[formerIndex]?.id === replica.id
          ? formerIndex
          : this.members.findIndex((engine) => engine.id === replica.id);
      const [engine] = at >= 0 ? this.members.splice(at, 1) : [];
      this.schedulers.delete(replica.id);
      this.placedRequests.delete(replica.id);
      this.placedEngineIds.delete(replica.id);
      const removed = this.removals.get(replica.id);
      this.removals.delete(replica.id);
      void engine
        ?.close()
        .catch((error: unknown) =>
          this.logError('closing a removed engine failed', {
            engine: replica.id,
            error: error instanceof Error ? error.message : String(error),
          }),
        )
        .finally(() => removed?.());
    },
  };

  async start(): Promise<void> {
    await Promise.all(this.engines.map((engine) => engine.start()));
    const core = new FleetCore<LiveRequest>({
      replicas: this.engines.map((engine) => this.replicaOptionsOf(engine)),
      routing: this.options.routing,
      random: this.options.random ?? Math.random,
      explain: true,
      events: this.options.onDecision ? { ...this.events, onDecision: this.options.onDecision } : this.events,
    });
    this.fleetCore = core;
    for (const replica of core.replicas)
      if (replica.scheduler) this.schedulers.set(replica.id, replica.scheduler);
    this.signals.start(core as FleetCore<unknown>);
  }

  private replicaOptionsOf(engine: EngineAdapter) {
    return {
      id: engine.id,
      models: engine.models(),
      signals: this.placedEngineIds.has(engine.id)
        ? this.placedSignals(engine)
        : this.signals.signalsOf(engine),
      scheduler: this.options.schedulerFor?.(engine) ?? null,
      servedFeatures: engine.servedFeatures,
      unservedFeatures: engine.unservedFeatures,
    };
  }

  /**
   * An engine joins the running fleet (the Endpoint Picker's discovery): started, then a replica of the
   * core with its own queue, routed to from the next request on. `placed`: Gravity picks for it but
   * Envoy calls it (`GatewayOptions.placedEngineIds`). An engine of that id still retiring is taken back
   * instead, and the new one closed unused.
   */
  async addEngine(engine: EngineAdapter, options: { placed: boolean }): Promise<void> {
    const core = this.core;
    const retiring = core.replicas.find((replica) => replica.id === engine.id);
    if (retiring?.retiring) {
      core.addReplica(this.replicaOptionsOf(this.members[retiring.index] as EngineAdapter));
      await engine.close();
      return;
    }
    await engine.start();
    // Shutdown began while it started: the gateway has closed its engines and would not close this one.
    if (!this.accepting) {
      await engine.close();
      throw errors.shuttingDown();
    }
    if (options.placed) this.placedEngineIds.add(engine.id);
    // The core appends the replica, so the engine goes last here too: indexes stay in step.
    const replica = core.addReplica(this.replicaOptionsOf(engine));
    this.members.push(engine);
    if (replica.scheduler) this.schedulers.set(replica.id, replica.scheduler);
  }

  /**
   * An engine leaves: no new request goes to it, those queued for it are refused (503), those running
   * finish; then it is removed and closed, which the promise waits for. False when no such engine is in
   * the fleet (or it is already retiring).
   */
  retireEngine(id: string): { retired: boolean; removed: Promise<void> } {
    const removed = new Promise<void>((resolve) => this.removals.set(id, resolve));
    const retired = this.core.retireReplica(id, this.clock.nowMs());
    this.armTimer();
    if (!retired) {
      this.removals.delete(id);
      return { retired, removed: Promise.resolve() };
    }
    return { retired, removed };
  }

  get ready(): boolean {
    return this.accepting && this.fleetCore !== undefined && this.fleetCore.models().length > 0;
  }

  /** Each model once, however many engines serve it (as the first engine describes it). */
  models(): EngineModelInfo[] {
    const seen = new Set<string>();
    const models: EngineModelInfo[] = [];
    for (const engine of this.engines) {
      for (const model of engine.models()) {
        if (seen.has(model.id)) continue;
        seen.add(model.id);
        models.push(model);
      }
    }
    return models;
  }

  /** Starts a request's record; `finish` must follow exactly once. */
  begin(options: {
    endpoint: Endpoint;
    stream: boolean;
    model: string;
    serviceTier: ServiceTier;
    correlation?: RequestCorrelation | null | undefined;
  }): RequestContext {
    const model = this.core.resolveModel(options.model);
    const context = createRequestContext({
      ...options,
      model: this.core.pool(model) ? model : unknownModelLabel,
      nowMs: this.clock.nowMs(),
      epochMs: this.clock.epochMs(),
    });
    for (const observer of this.observers) {
      try {
        observer.onRequestStart(context);
      } catch (error) {
        this.observerFailed(context, 'onRequestStart', error);
      }
    }
    return context;
  }

  /**
   * Ends the request's record: observers (metering, the ledger) run once, however often this is called.
   * The promise settles when they have committed what they need to, e.g. the ledger row.
   */
  finish(context: RequestContext): Promise<void> {
    if (this.finished.has(context)) return Promise.resolve();
    this.finished.add(context);
    context.finishedAtMs ??= this.clock.nowMs();
    const pending: Promise<void>[] = [];
    for (const observer of this.observers) {
      let result: Promise<void> | null = null;
      try {
        result = observer.onRequestEnd(context) || null;
      } catch (error) {
        this.observerFailed(context, 'onRequestEnd', error);
      }
      if (result)
        pending.push(result.catch((error: unknown) => this.observerFailed(context, 'onRequestEnd', error)));
    }
    return pending.length === 0 ? Promise.resolve() : Promise.all(pending).then(() => {});
  }

  private notifyDispatched(context: RequestContext): void {
    for (const observer of this.dispatchObservers)
      try {
        observer.onDispatched?.(context);
      } catch (error) {
        this.observerFailed(context, 'onDispatched', error);
      }
  }

  /**
   * Observers must not throw, but one that does (a metrics bug, a malformed figure nobody foresaw) must
   * neither fail the client's response nor keep the other observers (the ledger) from running: each hook
   * runs in its own try (no closure per call: this is once per request per observer), and a failure is
   * logged here while the request goes on.
   */
  private observerFailed(context: RequestContext, hook: string, error: unknown): void {
    this.logError(`request observer failed in ${hook}`, {
      requestId: context.requestId,
      error: error instanceof Error ? error.message : String(error),
    });
  }

  private logError(message: string, details: Record<string, unknown>): void {
    const log =
      this.options.log ??
      ((message: string, details: Record<string, unknown>) => console.error(message, details));
    log(message, details);
  }

  /**
   * Runs the generation on the replica the fleet core chooses and records timings in the context as
   * parts pass. `signal` is the client's; shutdown can also abort the request once the grace period is over.
   *
   * The request is submitted to the core, and each attempt the core dispatches runs here. Until an
   * attempt's first token its response-start is held back whenever a retry could still follow, so the
   * client has seen nothing of a failed attempt; after it, a failure ends the response (an SSE error event,
   * a ledger record marked partial).
   *
   * Hot path: one generator between the engine's and the consumer, so each token costs one async hop
   * here, not one per layer of delegation.
   */
  async *execute(
    context: RequestContext,
    request: Omit<GenerationRequest, 'requestId'>,
    clientSignal: AbortSignal,
  ): AsyncGenerator<StreamPart> {
    if (!this.accepting) throw errors.shuttingDown();
    const core = this.core;
    const model = core.resolveModel(request.model);
    const pool = core.pool(model);
    if (!pool) throw errors.modelNotFound(request.model);
    const generation: GenerationRequest = {
      ...request,
      model,
      requestId: context.requestId,
      serviceTier: context.serviceTier,
      traceparent: context.traceparent,
      tracestate: context.tracestate,
    };
    context.maxTokens = request.maxTokens;

    const controller = new AbortController();
    const signal = controller.signal;
    const forwardAbort = () => controller.abort(clientSignal.reason);
    if (clientSignal.aborted) forwardAbort();
    else clientSignal.addEventListener('abort', forwardAbort, { once: true });
    this.inFlight.add(controller);
    try {
      const band = serviceBand(context.serviceTier);
      let outcome = core.submit(
        fleetRequest({
          tag: { context, waiter: null },
          model,
          tenant: context.tenant ?? 'anonymous',
          band,
          promptTokens: estimateRequestTokens(request),
          maxTokens: request.maxTokens,
          promptBlockHashes: routingBlockHashes(core.usesPromptBlocks(band), request.input),
          features: request.features,
        }),
        this.clock.nowMs(),
      );
      this.armTimer();
      const failures: string[] = [];
      for (;;) {
        if (isRefusal(outcome)) throw this.refusalError(outcome, request.model, request.features, pool);
        const attempt = outcome;
        this.recordRoute(context, attempt, failures);
        try {
          if (attempt.state === 'queued') await this.dispatched(attempt, signal);
          if (this.dispatchObservers.length > 0) {
            // Tracing opens the engine call's span here; its context goes to the engine with the request.
            this.notifyDispatched(context);
            generation.traceparent = context.traceparent;
            generation.tracestate = context.tracestate;
          }
          const engine = this.engines[attempt.replica.index] as EngineAdapter;
          // Hold the response-start while another replica could still take over from a failure.
          const holdStart = attempt.tried.length + 1 < pool.length;
          // Parts held with it: a relayed role-only opener arrives before the first token.
          let held: StreamPart[] | null = null;
          for await (const part of engine.generate(generation, signal)) {
            const nowMs = this.clock.nowMs();
            if (
              part.type === 'text-delta' ||
              part.type === 'choice-delta' ||
              part.type === 'upstream-chunk' ||
              part.type === 'embeddings'
            ) {
              // A part standing for no token is passed on (or held with the start), not timed.
              if (part.tokens === 0) {
                if (held !== null) held.push(part);
                else yield part;
                continue;
              }
              // Per-token path: a few field updates, no allocation beyond the gap sample.
              if (context.firstTokenAtMs === null) {
                context.firstTokenAtMs = nowMs;
                core.firstToken(attempt, nowMs);
              } else context.interTokenGapsMs.push(nowMs - (context.lastTokenAtMs ?? nowMs));
              context.lastTokenAtMs = nowMs;
              context.decodeTokens += part.tokens;
              core.tokens(attempt, part.tokens);
            } else if (part.type === 'response-start') {
              context.startedAtMs = nowMs;
              // Time in the gateway's queue plus time in the engine's own.
              context.queueWaitMs = attempt.queueWaitMs + part.queueWaitMs;
              if (part.promptTokens !== null)
                context.prefillTokens = part.promptTokens - (part.cachedPromptTokens ?? 0);
              if (holdStart) {
                held = [part];
                continue;
              }
            } else {
              context.finishReason = part.finishReason;
              context.usage = part.usage;
              // The engine's final counts are authoritative (an upstream reports them only now).
              context.prefillTokens = part.usage.promptTokens - part.usage.cachedPromptTokens;
              context.decodeTokens = part.usage.completionTokens;
              // Told before the part is passed on: a consumer may stop iterating once it has the finish.
              core.finish(attempt, nowMs, meanOf(context.interTokenGapsMs));
              this.armTimer();
            }
            if (held !== null) {
              const release = held;
              held = null;
              for (const heldPart of release) yield heldPart;
            }
            yield part;
          }
          return;
        } catch (error) {
          const nowMs = this.clock.nowMs();
          if (signal.aborted) {
            core.cancel(attempt, nowMs);
            this.armTimer();
            throw error;
          }
          const next = core.fail(attempt, nowMs, classify(error));
          this.armTimer();
          if (next === null) throw error;
          failures.push(`${attempt.replica.id}: ${error instanceof GravityError ? error.code : 'error'}`);
          for (const observer of this.observers)
            try {
              observer.onRouteAbandoned?.(context);
            } catch (error) {
              this.observerFailed(context, 'onRouteAbandoned', error);
            }
          context.startedAtMs = null;
          context.queueWaitMs = null;
          context.prefillTokens = 0;
          // A retry the core could not place (shed everywhere else) answers with the first failure.
          if (isRefusal(next)) throw error;
          outcome = next;
        } finally {
          // The consumer stopped iterating (or the engine ended without a finish): free the replica.
          if (attempt.state !== 'done') {
            core.cancel(attempt, this.clock.nowMs());
            this.armTimer();
          }
        }
      }
    } finally {
      clientSignal.removeEventListener('abort', forwardAbort);
      this.inFlight.delete(controller);
    }
  }

  /**
   * Routes and queues a request as `execute` does, but runs nothing: once the core dispatches it, the
   * caller learns the replica (and the next best, for fallbacks) and forwards the request itself — the
   * Endpoint Picker, where Envoy sends the request to the endpoint. The replica's slot stays taken until
   * `release`, which must be called once, when the response has ended (or failed, or was abandoned).
   * A refusal of the core throws the client's error, as `execute` does; no retry is run here, since the
   * caller gets the fallbacks and its proxy retries.
   */
  async place(
    context: RequestContext | null,
    request: Pick<GenerationRequest, 'model' | 'input' | 'maxTokens' | 'features'> & {
      options?: { tools: readonly unknown[] } | undefined;
    },
    placement: { tenant: string | null; serviceTier: ServiceTier; eligible: ReadonlySet<string> },
    signal: AbortSignal,
  ): Promise<Placement> {
    if (!this.accepting) throw errors.shuttingDown();
    const core = this.core;
    const model = core.resolveModel(request.model);
    const pool = core.pool(model);
    if (!pool) throw errors.modelNotFound(request.model);
    const band = serviceBand(placement.serviceTier);
    const outcome = core.submit(
      fleetRequest({
        tag: { context: context as RequestContext, waiter: null },
        model,
        tenant: placement.tenant ?? 'anonymous',
        band,
        promptTokens: estimateRequestTokens(request),
        maxTokens: request.maxTokens,
        promptBlockHashes: routingBlockHashes(core.usesPromptBlocks(band), request.input),
        features: request.features,
        eligibleReplicas: placement.eligible,
      }),
      this.clock.nowMs(),
    );
    this.armTimer();
    if (isRefusal(outcome)) throw this.refusalError(outcome, request.model, request.features, pool);
    const attempt = outcome;
    if (context) this.recordRoute(context, attempt, []);
    try {
      if (attempt.state === 'queued') await this.dispatched(attempt, signal);
    } catch (error) {
      if (attempt.state !== 'done') core.cancel(attempt, this.clock.nowMs());
      this.armTimer();
      throw error;
    }
    // Envoy forwards it to the replica next: tracing's engine span covers that (its context stays here).
    if (context && this.dispatchObservers.length > 0) this.notifyDispatched(context);
    const replicaId = attempt.replica.id;
    const placed = this.placedRequests.get(replicaId) ?? 0;
    this.placedRequests.set(replicaId, placed + 1);
    if (context) context.queueWaitMs = attempt.queueWaitMs;
    // The pick first, then the others routing ranked, best first: the order a proxy falls back in.
    const ranked = attempt.decision?.top.map((score) => score.replica) ?? [];
    const fallbacks = ranked.filter((id) => id !== replicaId);
    let released = false;
    return {
      replica: replicaId,
      fallbacks,
      release: (outcome, atMs = this.clock.nowMs()) => {
        if (released) return;
        released = true;
        this.placedRequests.set(replicaId, (this.placedRequests.get(replicaId) ?? 1) - 1);
        if (outcome.kind === 'finished') {
          if (outcome.firstTokenAtMs !== null) core.firstToken(attempt, outcome.firstTokenAtMs);
          core.finish(attempt, atMs, null);
        } else if (outcome.kind === 'failed')
          core.fail(attempt, atMs, { replicaFault: true, retryable: false, message: outcome.message });
        else core.cancel(attempt, atMs);
        this.armTimer();
      },
    };
  }

  /** A placed engine's load: its own figures (scraped, where configured) plus what Gravity placed there. */
  private placedSignals(engine: EngineAdapter): ReplicaSignals {
    const own = this.signals.signalsOf(engine);
    const placed = this.placedRequests;
    return {
      get waitingRequests() {
        return own.waitingRequests;
      },
      get runningRequests() {
        return Math.max(own.runningRequests, placed.get(engine.id) ?? 0);
      },
      get kvUsedFraction() {
        return own.kvUsedFraction;
      },
    };
  }

  /**
   * The client's answer for a request the core would not run. A request no replica can serve for a
   * feature it uses names the first such feature and the engines that could have taken the model.
   */
  private refusalError(
    refusal: FleetRefusal,
    model: string,
    features: readonly string[] | undefined,
    pool: readonly FleetReplica[],
  ): GravityError {
    if (refusal.kind === 'no-replica' && refusal.filter === 'serves-features') {
      const engines = pool.map((replica) => this.engines[replica.index] as EngineAdapter);
      const feature =
        (features ?? []).find((candidate) => engines.every((engine) => !servesFeature(engine, candidate))) ??
        features?.[0] ??
        '';
      const names = engines.map((engine) => `'${engine.id}' (${engine.type})`).join(', ');
      return unservedFeatureError(feature, `the engines serving model '${model}': ${names}`);
    }
    return refusalError(refusal, model);
  }

  /** Waits until the core dispatches the attempt; a client that leaves takes it out of the queue. */
  private dispatched(attempt: FleetAttempt<LiveRequest>, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        attempt.request.tag.waiter = null;
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      attempt.request.tag.waiter = {
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (reason) => {
          signal.removeEventListener('abort', onAbort);
          reject(reason);
        },
      };
    });
  }

  /** The chosen replica and routing's reasons on the context (`x-gravity-route`, the ledger's `route`). */
  private recordRoute(
    context: RequestContext,
    attempt: FleetAttempt<LiveRequest>,
    failures: readonly string[],
  ): void {
    const decision = attempt.decision;
    // A retry onto the last replica left needs no scoring (no decision), but the record must still name
    // the replica that serves it and the attempts that failed, not the first attempt's choice.
    if (decision)
      context.route = JSON.stringify({
        replica: attempt.replica.id,
        profile: decision.profile,
        attempt: attempt.number,
        top: decision.top,
        ...(decision.filtered.length > 0 && { filtered: decision.filtered }),
        ...(failures.length > 0 && { failed: failures }),
      });
    else if (failures.length > 0)
      context.route = JSON.stringify({
        replica: attempt.replica.id,
        attempt: attempt.number,
        failed: failures,
      });
    context.engineId = attempt.replica.id;
    for (const observer of this.observers)
      try {
        observer.onRouted?.(context);
      } catch (error) {
        this.observerFailed(context, 'onRouted', error);
      }
  }

  /**
   * Which replica would serve this request now, and why: routing's decision without running it or
   * teaching the prefix index (the debug endpoint, `POST /v1/routing/explain`).
   */
  explainRoute(options: {
    model: string;
    input: GenerationRequest['input'];
    maxTokens: number | null;
    features?: readonly string[] | undefined;
    /** Tool definitions, which count toward the prompt's size. */
    options?: { tools: readonly unknown[] } | undefined;
    tenant: string | null;
    serviceTier: ServiceTier;
  }): { model: string; candidates: string[]; decision: RoutingDecision | null } {
    const model = this.core.resolveModel(options.model);
    const pool = this.core.pool(model);
    if (!pool) throw errors.modelNotFound(options.model);
    const band: ServiceBand = serviceBand(options.serviceTier);
    const decision = this.core.explain(
      fleetRequest({
        tag: { context: null as unknown as RequestContext, waiter: null },
        model,
        tenant: options.tenant ?? 'anonymous',
        band,
        promptTokens: estimateRequestTokens(options),
        maxTokens: options.maxTokens,
        promptBlockHashes: routingBlockHashes(this.core.usesPromptBlocks(band), options.input),
        features: options.features,
      }),
      this.clock.nowMs(),
    );
    if (isRefusal(decision)) throw this.refusalError(decision, options.model, options.features, pool);
    return { model, candidates: pool.map((replica) => replica.id), decision };
  }

  /** Health, labels and scraped-signal freshness per replica (`GET /v1/routing/replicas`). */
  routingSnapshot(): ReturnType<LiveFleetSignals['snapshot']> {
    return this.signals.snapshot(this.core as FleetCore<unknown>);
  }

  /** One timer for the earliest queue bound of any replica. */
  private armTimer(): void {
    const nextMs = this.core.nextExpiryMs();
    if (nextMs === this.timerAtMs) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAtMs = nextMs;
    if (!Number.isFinite(nextMs)) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAtMs = Number.POSITIVE_INFINITY;
        this.core.expire(this.clock.nowMs());
        this.armTimer();
      },
      Math.max(0, Math.ceil(nextMs - this.clock.nowMs())),
    );
    this.timer.unref();
  }

  /**
   * Stops taking requests, lets in-flight ones finish for up to `graceMs`, then cancels the rest and
   * closes the engines.
   */
  async shutdown(graceMs: number): Promise<{ cancelled: number }> {
    this.accepting = false;
    const deadline = Date.now() + graceMs;
    while (this.inFlight.size > 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    const cancelled = this.inFlight.size;
    for (const controller of this.inFlight) controller.abort(errors.shuttingDown());
    // Give cancelled streams a moment to write their error event and ledger record.
    while (this.inFlight.size > 0 && Date.now() < deadline + 1000)
      await new Promise((resolve) => setTimeout(resolve, 10));
    if (this.timer) clearTimeout(this.timer);
    this.signals.close();
    await Promise.all(this.engines.map((engine) => engine.close()));
    return { cancelled };
  }
}

function meanOf(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  let sum = 0;
  for (const value of values) sum += value;
  return sum / values.length;
}

/** A request `Gateway.place` put on a replica, which the caller forwards there itself. */
export interface Placement {
  /** The replica's (engine's) id. */
  readonly replica: string;
  /** The other replicas routing ranked, best first, for the caller's proxy to fall back to. */
  readonly fallbacks: readonly string[];
  /**
   * Frees the replica's slot and tells the core how it went: `finished` teaches the latency scorers,
   * `failed` counts against the replica's health, `abandoned` says nothing either way. Idempotent.
   */
  release(
    outcome:
      | { kind: 'finished'; firstTokenAtMs: number | null }
      | { kind: 'failed'; message: string }
      | { kind: 'abandoned' },
    atMs?: number,
  ): void;
}

/** The client's answer for a refusal of the core. */
function refusalError(refusal: FleetRefusal, model: string): GravityError {
  switch (refusal.kind) {
    case 'shed':
      return errors.tierOverloaded(
        refusal.band,
        Math.ceil(refusal.retryAfterMs / 1000),
        refusal.predictedTtftMs,
      );
    case 'expired':
      return errors.overloaded(Math.ceil(refusal.waitedMs / 1000));
    case 'no-replica':
      return refusal.filter === 'residency'
        ? errors.residencyDenied(refusal.reason)
        : errors.noReplicaAvailable(model, refusal.reason);
  }
}

/** What a failed attempt says about its replica and whether another replica may do better. */
function classify(error: unknown): AttemptFailure {
  const message = error instanceof Error ? error.message : String(error);
  if (!(error instanceof GravityError)) return { replicaFault: true, retryable: true, message };
  const notTheReplicas =
    error.code === 'overloaded' ||
    error.code === 'tier_overloaded' ||
    error.code === 'shutting_down' ||
    error.code === 'cancelled';
  return {
    // Outlier detection counts what says something about the replica, not about the request.
    replicaFault: !notTheReplicas && error.status >= 500,
    // 429s and 503s mean this replica is full; another may not be.
    retryable:
      error.code !== 'cancelled' &&
      error.code !== 'shutting_down' &&
      (error.status >= 500 || error.status === 429),
    message,
  };
}

/**
 * The prompt's block hashes for prefix-affinity routing, where the profile uses them. An embeddings
 * request has none: its inputs are each a separate prompt and no engine keeps a prefix cache for them.
 */
function routingBlockHashes(used: boolean, input: PromptInput): readonly number[] | null {
  return used && input.kind !== 'embedding' ? promptBlockHashes(promptText(input)) : null;
}
