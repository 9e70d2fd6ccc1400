import type { Clock } from '../core/clock.js';
import { errors, GravityError } from '../core/errors.js';
import { estimateInputTokens, estimateTextTokens, promptText } from '../core/prompt-size.js';
import { createRequestContext, type Endpoint, type RequestContext } from '../core/request-context.js';
import type { RequestObserver } from '../core/request-observer.js';
import { type ServiceTier, serviceBand } from '../core/service-tiers.js';
import type { StreamPart } from '../core/stream-parts.js';
import type { EngineAdapter, EngineModelInfo, GenerationRequest } from '../engines/engine-adapter.js';
import type { FleetRouter } from '../routing/fleet-router.js';
import type { ReplicaLoadView, RoutingDecision } from '../routing/routing-policy.js';
import type { LiveReplicaScheduler, SchedulerTicket } from '../scheduling/live-replica-scheduler.js';

/** The model label used for requests whose model does not exist, so clients cannot inflate label sets. */
export const unknownModelLabel = '(unknown)';

/**
 * Wires the stages for one request: resolve the model to its engines, route to one, execute, observe.
 * Later stages (admission, scheduling) slot in here; the HTTP layer only translates to and from the wire.
 */
export class Gateway {
  /** Model id → the engines (replicas) serving it, in configuration order. */
  private readonly modelToEngines = new Map<string, EngineAdapter[]>();
  private readonly inFlight = new Set<AbortController>();
  private readonly finished = new WeakSet<RequestContext>();
  private accepting = true;

  constructor(
    readonly engines: readonly EngineAdapter[],
    readonly clock: Clock,
    private readonly observers: readonly RequestObserver[],
    /**
     * Routes each request to one of its model's engines (filters, scores, health, retries, aliases);
     * null sends every request to the model's first engine.
     */
    readonly router: FleetRouter | null = null,
    /** Builds the queue in front of each engine (null: requests go straight to the engine). */
    private readonly schedulerFor: ((engine: EngineAdapter) => LiveReplicaScheduler) | null = null,
  ) {}

  /** The gateway's queue in front of each engine, by engine id. */
  readonly schedulers = new Map<string, LiveReplicaScheduler>();

  async start(): Promise<void> {
    await Promise.all(this.engines.map((engine) => engine.start()));
    this.router?.start();
    if (this.schedulerFor)
      for (const engine of this.engines) this.schedulers.set(engine.id, this.schedulerFor(engine));
    for (const engine of this.engines) {
      for (const model of engine.models()) {
        const serving = this.modelToEngines.get(model.id);
        if (serving) serving.push(engine);
        else this.modelToEngines.set(model.id, [engine]);
      }
    }
  }

  get ready(): boolean {
    return this.accepting && this.modelToEngines.size > 0;
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

  /** Starts a request's record; `end` must follow exactly once. */
  begin(options: {
    endpoint: Endpoint;
    stream: boolean;
    model: string;
    serviceTier: ServiceTier;
  }): RequestContext {
    const context = createRequestContext({
      ...options,
      model: this.modelToEngines.has(this.resolveModel(options.model))
        ? this.resolveModel(options.model)
        : unknownModelLabel,
      nowMs: this.clock.nowMs(),
      epochMs: this.clock.epochMs(),
    });
    for (const observer of this.observers) observer.onRequestStart(context);
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
      const result = observer.onRequestEnd(context);
      if (result) pending.push(result);
    }
    return pending.length === 0 ? Promise.resolve() : Promise.all(pending).then(() => {});
  }

  /**
   * Runs the generation on the model's engine and records timings in the context as parts pass.
   * `signal` is the client's; shutdown can also abort the request once the grace period is over.
   */
  async *execute(
    context: RequestContext,
    request: Omit<GenerationRequest, 'requestId'>,
    signal: AbortSignal,
  ): AsyncGenerator<StreamPart> {
    if (!this.accepting) throw errors.shuttingDown();
    const model = this.resolveModel(request.model);
    const serving = this.modelToEngines.get(model);
    if (!serving) throw errors.modelNotFound(request.model);
    const generation = model === request.model ? request : { ...request, model };

    const controller = new AbortController();
    const forwardAbort = () => controller.abort(signal.reason);
    if (signal.aborted) forwardAbort();
    else signal.addEventListener('abort', forwardAbort, { once: true });
    this.inFlight.add(controller);
    try {
      yield* this.generateWithRetries(serving, context, generation, controller.signal);
    } finally {
      signal.removeEventListener('abort', forwardAbort);
      this.inFlight.delete(controller);
    }
  }

  /**
   * Routes the request and runs it, retrying on the next best replica when an attempt fails before its
   * first token (connection errors, 5xx, 429) while attempts and the retry budget last. Until the first
   * token the attempt's response-start is held back, so the client has seen nothing of a failed attempt;
   * after it, a failure ends the response (an SSE error event, a ledger record marked partial).
   */
  private async *generateWithRetries(
    serving: readonly EngineAdapter[],
    context: RequestContext,
    request: Omit<GenerationRequest, 'requestId'>,
    signal: AbortSignal,
  ): AsyncGenerator<StreamPart> {
    const router = this.router;
    router?.onRequest();
    const tried = new Set<EngineAdapter>();
    const failures: string[] = [];
    let lastFailure: unknown;
    for (let attempt = 1; ; attempt++) {
      let engine: EngineAdapter;
      try {
        engine = this.route(serving, tried, context, request, attempt, failures);
      } catch (error) {
        // No replica left for a retry (all ejected): the client hears about the attempt that failed.
        if (lastFailure !== undefined) throw lastFailure;
        throw error;
      }
      // Retrying needs a router and another replica to go to; otherwise parts pass straight through.
      const retryable = router !== null && tried.size + 1 < serving.length;
      const attemptStartMs = this.clock.nowMs();
      let heldStart: StreamPart | null = null;
      let delivered = false;
      try {
        for await (const part of this.runOnReplica(engine, context, request, signal)) {
          if (!delivered) {
            if (part.type === 'response-start' && retryable) {
              heldStart = part;
              continue;
            }
            if (part.type !== 'response-start') {
              delivered = true;
              router?.health.onSuccess(engine.id);
            }
            if (heldStart) {
              const held = heldStart;
              heldStart = null;
              yield held;
            }
          }
          yield part;
        }
        router?.onSuccess(
          engine.id,
          serviceBand(context.serviceTier),
          context.firstTokenAtMs === null ? null : context.firstTokenAtMs - attemptStartMs,
          meanOf(context.interTokenGapsMs),
        );
        return;
      } catch (error) {
        if (signal.aborted || !router) throw error;
        if (isReplicaFault(error)) router.onFailure(engine.id, error);
        if (delivered || !retryable || !isRetryable(error) || !router.mayRetry(attempt)) throw error;
        tried.add(engine);
        lastFailure = error;
        failures.push(`${engine.id}: ${error instanceof GravityError ? error.code : 'error'}`);
        for (const observer of this.observers) observer.onRouteAbandoned?.(context);
        context.startedAtMs = null;
        context.queueWaitMs = null;
        context.prefillTokens = 0;
      }
    }
  }

  /**
   * One attempt on one replica: waits for the replica's queue, runs the generation and records timings
   * in the context as parts pass. Called once per attempt; a retry calls it again for another replica.
   */
  private async *runOnReplica(
    engine: EngineAdapter,
    context: RequestContext,
    request: Omit<GenerationRequest, 'requestId'>,
    signal: AbortSignal,
  ): AsyncGenerator<StreamPart> {
    let ticket: SchedulerTicket | null = null;
    try {
      // Wait for the replica's queue to let the request run: by tier, tenant share and deadline.
      const scheduler = this.schedulers.get(engine.id);
      if (scheduler) {
        ticket = await scheduler.acquire(
          {
            tenant: context.tenant ?? 'anonymous',
            tier: serviceBand(context.serviceTier),
            promptTokens: estimateInputTokens(request.input),
          },
          signal,
        );
      }
      const gatewayQueueWaitMs = ticket?.queueWaitMs ?? 0;
      for await (const part of engine.generate(
        { ...request, requestId: context.requestId, serviceTier: context.serviceTier },
        signal,
      )) {
        const nowMs = this.clock.nowMs();
        if (part.type === 'text-delta') {
          // Per-token path: a few field updates, no allocation beyond the gap sample.
          if (context.firstTokenAtMs === null) {
            context.firstTokenAtMs = nowMs;
            ticket?.onFirstToken(nowMs);
          } else context.interTokenGapsMs.push(nowMs - (context.lastTokenAtMs ?? nowMs));
          context.lastTokenAtMs = nowMs;
          context.decodeTokens += part.tokens;
          ticket?.onTokens(part.tokens);
        } else if (part.type === 'response-start') {
          context.startedAtMs = nowMs;
          // Time in the gateway's queue plus time in the engine's own.
          context.queueWaitMs = gatewayQueueWaitMs + part.queueWaitMs;
          if (part.promptTokens !== null)
            context.prefillTokens = part.promptTokens - (part.cachedPromptTokens ?? 0);
        } else {
          context.finishReason = part.finishReason;
          context.usage = part.usage;
          // The engine's final counts are authoritative (an upstream reports them only now).
          context.prefillTokens = part.usage.promptTokens - part.usage.cachedPromptTokens;
          context.decodeTokens = part.usage.completionTokens;
        }
        yield part;
      }
    } finally {
      ticket?.release();
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
    tenant: string | null;
    serviceTier: ServiceTier;
  }): { model: string; candidates: string[]; decision: RoutingDecision | null } {
    const model = this.resolveModel(options.model);
    const serving = this.modelToEngines.get(model);
    if (!serving) throw errors.modelNotFound(options.model);
    if (!this.router) return { model, candidates: serving.map((engine) => engine.id), decision: null };
    const text = promptText(options.input);
    const { decision } = this.router.route(
      serving,
      serving.map((engine) => this.loadView(engine)),
      {
        model,
        promptText: text,
        promptTokens: estimateTextTokens(text),
        maxTokens: options.maxTokens,
        tenant: options.tenant,
        tier: serviceBand(options.serviceTier),
      },
      { dryRun: true },
    );
    return { model, candidates: serving.map((engine) => engine.id), decision };
  }

  /** A model alias resolved to the model id that serves it. */
  private resolveModel(model: string): string {
    return this.router ? this.router.resolveModel(model) : model;
  }

  /**
   * Chooses the engine for an attempt among the model's engines not yet tried, records the choice and its
   * explanation in the context, and tells observers. A model with one engine skips scoring unless a
   * residency policy must still be checked.
   */
  private route(
    serving: readonly EngineAdapter[],
    tried: ReadonlySet<EngineAdapter>,
    context: RequestContext,
    request: Omit<GenerationRequest, 'requestId'>,
    attempt: number,
    failures: readonly string[],
  ): EngineAdapter {
    const candidates = tried.size === 0 ? serving : serving.filter((engine) => !tried.has(engine));
    let engine = candidates[0] as EngineAdapter;
    const router = this.router;
    // Fast path: one engine and nothing to filter needs no load readings.
    if (router && (candidates.length > 1 || router.filtersSingleReplicas)) {
      const text = promptText(request.input);
      const { replica, decision } = router.route(
        candidates,
        candidates.map((candidate) => this.loadView(candidate)),
        {
          model: request.model,
          promptText: text,
          promptTokens: estimateTextTokens(text),
          maxTokens: request.maxTokens,
          tenant: context.tenant,
          tier: serviceBand(context.serviceTier),
        },
      );
      engine = replica as EngineAdapter;
      context.route = JSON.stringify({
        replica: engine.id,
        profile: decision.profile,
        attempt,
        top: decision.top,
        ...(decision.filtered.length > 0 && { filtered: decision.filtered }),
        ...(failures.length > 0 && { failed: failures }),
      });
    }
    context.engineId = engine.id;
    for (const observer of this.observers) observer.onRouted?.(context);
    return engine;
  }

  /** An engine's load as routing sees it: what waits in the gateway's queue for it counts as waiting. */
  loadView(engine: EngineAdapter): ReplicaLoadView {
    const load = engine.load();
    return {
      id: engine.id,
      waitingRequests: load.waiting + (this.schedulers.get(engine.id)?.queuedRequests ?? 0),
      runningRequests: load.slotsBusy,
      kvUsedFraction: load.kvUsedFraction ?? null,
    };
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
    for (const scheduler of this.schedulers.values()) scheduler.close();
    this.router?.close();
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

/** Failures that say something about the replica (outlier detection counts them), not about the request. */
function isReplicaFault(error: unknown): boolean {
  if (!(error instanceof GravityError)) return true;
  if (error.code === 'overloaded' || error.code === 'shutting_down' || error.code === 'cancelled')
    return false;
  return error.status >= 500;
}

/** Failures another replica may not have: replica faults, and 429s or 503s (this replica is full). */
function isRetryable(error: unknown): boolean {
  if (!(error instanceof GravityError)) return true;
  if (error.code === 'cancelled' || error.code === 'shutting_down') return false;
  return error.status >= 500 || error.status === 429;
}
