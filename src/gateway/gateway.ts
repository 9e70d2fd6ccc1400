import type { Clock } from '../core/clock.js';
import { errors } from '../core/errors.js';
import {
  createRequestContext,
  type Endpoint,
  type RequestContext,
  type ServiceTier,
} from '../core/request-context.js';
import type { RequestObserver } from '../core/request-observer.js';
import type { StreamPart } from '../core/stream-parts.js';
import type { EngineAdapter, EngineModelInfo, GenerationRequest } from '../engines/engine-adapter.js';
import type { ReplicaLoadView, RoutingPolicy } from '../routing/routing-policy.js';
import { tierRanks } from '../scheduling/queue-ordering.js';

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
    /** Picks one of several engines serving a model; unused for models with one engine. */
    private readonly routing: RoutingPolicy | null = null,
  ) {}

  async start(): Promise<void> {
    await Promise.all(this.engines.map((engine) => engine.start()));
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
      model: this.modelToEngines.has(options.model) ? options.model : unknownModelLabel,
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
    const serving = this.modelToEngines.get(request.model);
    if (!serving) throw errors.modelNotFound(request.model);
    // Fast path: a model with one engine needs no load readings.
    const engine =
      serving.length === 1 ? (serving[0] as EngineAdapter) : this.route(serving, context, request);
    context.engineId = engine.id;
    for (const observer of this.observers) observer.onRouted?.(context);

    const controller = new AbortController();
    const forwardAbort = () => controller.abort(signal.reason);
    if (signal.aborted) forwardAbort();
    else signal.addEventListener('abort', forwardAbort, { once: true });
    this.inFlight.add(controller);
    try {
      for await (const part of engine.generate(
        { ...request, requestId: context.requestId, serviceTier: context.serviceTier },
        controller.signal,
      )) {
        const nowMs = this.clock.nowMs();
        if (part.type === 'text-delta') {
          // Per-token path: a few field updates, no allocation beyond the gap sample.
          if (context.firstTokenAtMs === null) context.firstTokenAtMs = nowMs;
          else context.interTokenGapsMs.push(nowMs - (context.lastTokenAtMs ?? nowMs));
          context.lastTokenAtMs = nowMs;
          context.decodeTokens += part.tokens;
        } else if (part.type === 'response-start') {
          context.startedAtMs = nowMs;
          context.queueWaitMs = part.queueWaitMs;
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
      signal.removeEventListener('abort', forwardAbort);
      this.inFlight.delete(controller);
    }
  }

  /** Asks the routing policy which engine serves the request, from each engine's load figures now. */
  private route(
    serving: readonly EngineAdapter[],
    context: RequestContext,
    request: Omit<GenerationRequest, 'requestId'>,
  ): EngineAdapter {
    if (!this.routing) return serving[0] as EngineAdapter;
    const replicas: ReplicaLoadView[] = serving.map((engine) => {
      const load = engine.load();
      return {
        id: engine.id,
        waitingRequests: load.waiting,
        runningRequests: load.slotsBusy,
        kvUsedFraction: load.kvUsedFraction ?? null,
      };
    });
    const tier = context.serviceTier === 'auto' ? 'default' : context.serviceTier;
    const index = this.routing.pick(
      replicas,
      { promptTokens: estimatedPromptTokens(request.input), priority: tierRanks[tier] },
      this.clock.nowMs(),
    );
    return serving[index] ?? (serving[0] as EngineAdapter);
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
    await Promise.all(this.engines.map((engine) => engine.close()));
    return { cancelled };
  }
}

/**
 * A tokenizer-free prompt size for routing (~4 characters per token); engines report the real count.
 * Routing policies use it only to weigh requests against each other.
 */
function estimatedPromptTokens(input: GenerationRequest['input']): number {
  if (input.kind === 'completion') return Math.ceil(input.prompt.length / 4);
  let characters = 0;
  for (const message of input.messages) characters += message.content.length;
  return Math.ceil(characters / 4);
}
