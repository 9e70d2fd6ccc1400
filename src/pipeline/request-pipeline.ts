import type { Admission } from '../admission/admission.js';
import type { Caller } from '../admission/request-caller.js';
import type { Clock } from '../core/clock.js';
import { errors, GravityError, toGravityError } from '../core/errors.js';
import type { Endpoint, RequestContext } from '../core/request-context.js';
import type { RequestCorrelation } from '../core/request-correlation.js';
import type { ServiceTier } from '../core/service-tiers.js';
import type { ContentPart, FinishPart, StreamPart } from '../core/stream-parts.js';
import type { GenerationRequest } from '../engines/engine-adapter.js';

/**
 * What the pipeline needs of the gateway: three calls. Declared here rather than imported so that the
 * pipeline depends on that small contract, not on the gateway's module and everything it drives
 * (src/server/gravity-server.ts passes the Gateway, which satisfies it).
 */
export interface RequestExecutor {
  readonly clock: Clock;
  /** Opens the request's record; `finish` must follow exactly once. */
  begin(options: {
    endpoint: Endpoint;
    stream: boolean;
    model: string;
    serviceTier: ServiceTier;
    correlation?: RequestCorrelation | null | undefined;
  }): RequestContext;
  execute(
    context: RequestContext,
    generation: Omit<GenerationRequest, 'requestId'>,
    signal: AbortSignal,
  ): AsyncIterable<StreamPart>;
  /** Idempotent; settles when the ledger holds the record. */
  finish(context: RequestContext): Promise<void>;
}

/** A validated request, whatever the entry point parsed it from. Entry points may carry more fields. */
export interface PipelineRequest {
  generation: Omit<GenerationRequest, 'requestId'>;
  /** The tier asked for (`auto` for none); admission resolves it against the caller's key. */
  serviceTier: ServiceTier;
}

/** Why a request ended without a finish part. */
export interface PipelineFailure {
  error: GravityError;
  /** The entry point's own signal ended it: the client went away, the batch was cancelled or expired. */
  cancelled: boolean;
  /**
   * Where it failed: `input` (the request did not parse), `admission` (key, tier, limits or budget
   * refused it, and waiting would not help or the entry point does not wait), `execution` (routing, the
   * gateway's queues, the engine, shutdown).
   */
  stage: 'input' | 'admission' | 'execution';
}

/**
 * How an entry point shows a request's outcome: a JSON body, an SSE stream, a batch line's answer. The
 * pipeline calls `admitted` (maybe), `started` (maybe), `text` per token, then exactly one of `finished`
 * or `failed`, both after the ledger commit, so the answer's last bytes follow the record
 * (docs/adr/0001-ledger-commit-before-final-bytes.md). `Result` is what `run` returns.
 */
export interface ResponseRenderer<Request extends PipelineRequest, Result> {
  /**
   * Whether the client has received bytes that cannot be taken back (an SSE stream's head). From then
   * on a failure is recorded with status 200 and its error code, and travels inside the answer.
   */
  readonly committed: boolean;
  /** Admission let the request in; `rateLimitHeaders` are the `x-ratelimit-*` headers (may be empty). */
  admitted(rateLimitHeaders: Record<string, string>): void;
  /** The engine accepted the request: the answer may begin. */
  started(context: RequestContext, request: Request): void | Promise<void>;
  /**
   * Hot path, once per content part (a token's text, an engine's choice chunk, a relayed upstream chunk):
   * no allocation beyond the encoded text, no clock read unless the renderer measures its own write
   * time. Returns a promise only when the pipeline must wait (backpressure).
   */
  text(part: ContentPart): Promise<void> | undefined;
  finished(part: FinishPart, context: RequestContext): Result | Promise<Result>;
  failed(failure: PipelineFailure, context: RequestContext): Result | Promise<Result>;
}

/** One request entering the pipeline. */
export interface PipelineEntry<Request extends PipelineRequest, Result> {
  endpoint: Endpoint;
  /** What is known before validation, for the record of a request that fails it. */
  received: { model: string; stream: boolean; serviceTier?: ServiceTier };
  /** Who sent it: tenant, key (limits, tiers), recorded in the ledger. */
  caller: Caller;
  /** The client's `x-request-id` and trace context (src/core/request-correlation.ts); absent: none. */
  correlation?: RequestCorrelation | null | undefined;
  /** Validates the input; a GravityError thrown here is the request's answer (recorded like any). */
  parse: () => Request;
  renderer: ResponseRenderer<Request, Result>;
  /** Aborted when the entry point gives up: the client left, the batch was cancelled. */
  signal: AbortSignal;
  /**
   * Absent: a request over its rate limits is refused at once (429), as HTTP callers expect. Present:
   * one refused for requests or tokens per minute or concurrency waits until its limit lets it in,
   * paced by the limiter's retry-after, until `until` aborts (its reason is then the answer). Budgets and
   * requests too large for a limit are refused either way: waiting cannot help them.
   */
  waitForRateLimits?: { until: AbortSignal } | undefined;
}

/** Waits `ms` of the driver's time; rejects with the signal's reason when it aborts first. */
export type Sleep = (ms: number, signal: AbortSignal) => Promise<void>;

export const timerSleep: Sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

export interface RequestPipelineOptions {
  gateway: RequestExecutor;
  /** Tiers and limits; absent: the requested tier as is, no limits. */
  admission?: Admission | undefined;
  /** Unexpected failures (not GravityErrors) are logged once, here. */
  log: (context: RequestContext, error: unknown) => void;
  /** How a request waiting for its rate limit sleeps; tests pass one that moves a fake clock. */
  sleep?: Sleep | undefined;
}

/**
 * The one request lifecycle, for every entry point: begin → parse → admit → execute → finish, with the
 * finish exactly once whatever happens (success, bad input, refusal, engine error, client disconnect,
 * shutdown). Entry points give the parsed request and a renderer; the pipeline sets the record's
 * tenant, key, tier, status and error code, and tells the renderer what to show.
 *
 * Status rules: a failure before the renderer committed bytes is recorded with its own status; after,
 * with 200 and the error code (the error travels in the stream); an entry point that gave up (client
 * gone: 499) is recorded with the abort's status, whenever it happened.
 */
export class RequestPipeline {
  private readonly sleep: Sleep;

  constructor(private readonly options: RequestPipelineOptions) {
    this.sleep = options.sleep ?? timerSleep;
  }

  async run<Request extends PipelineRequest, Result>(entry: PipelineEntry<Request, Result>): Promise<Result> {
    const { gateway } = this.options;
    const { renderer, signal, caller } = entry;
    const context = gateway.begin({
      endpoint: entry.endpoint,
      stream: entry.received.stream,
      model: entry.received.model,
      serviceTier: entry.received.serviceTier ?? 'auto',
      correlation: entry.correlation,
    });
    context.tenant = caller.tenant;
    context.apiKeyId = caller.apiKeyId;
    let stage: PipelineFailure['stage'] = 'input';
    let parts: AsyncIterator<StreamPart> | undefined;
    try {
      const request = entry.parse();
      stage = 'admission';
      const waitedMs = await this.admit(context, entry, request);
      // Creating the generator runs none of it: this reading is both the admission's end and the end of
      // Gravity's own time so far (parsing and admission, less any wait for a rate limit).
      const admittedAtMs = gateway.clock.nowMs();
      context.admittedAtMs = admittedAtMs;
      stage = 'execution';
      parts = gateway.execute(context, request.generation, signal)[Symbol.asyncIterator]();
      context.gatewayOverheadMs += admittedAtMs - context.receivedAtMs - waitedMs;
      // Nothing is shown before the engine accepts the request: until then any failure is still a plain
      // error with its own status.
      const first = await parts.next();
      if (first.done || first.value.type !== 'response-start')
        throw errors.internal('engine sent no response-start');
      context.status = 200;
      await renderer.started(context, request);
      for (let next = await parts.next(); !next.done; next = await parts.next()) {
        const part = next.value;
        if (part.type === 'finish') {
          // The ledger commit happens before the final bytes: an answer seen complete is on record.
          await gateway.finish(context);
          return await renderer.finished(part, context);
        }
        if (part.type !== 'response-start') {
          // Hot path, once per token: one call into the renderer; an await only under backpressure.
          const backpressure = renderer.text(part);
          if (backpressure !== undefined) await backpressure;
        }
      }
      throw errors.internal('engine ended without a finish part');
    } catch (error) {
      const cancelled = signal.aborted;
      // Given up by the entry point: its abort's reason says why, whatever the engine threw.
      const gravityError = cancelled
        ? signal.reason instanceof GravityError
          ? signal.reason
          : errors.cancelled('The client closed the connection.')
        : toGravityError(error);
      if (!(error instanceof GravityError) && !cancelled) this.options.log(context, error);
      context.errorCode = gravityError.code;
      context.status = cancelled || !renderer.committed ? gravityError.status : 200;
      await gateway.finish(context);
      return await renderer.failed({ error: gravityError, cancelled, stage }, context);
    } finally {
      await parts?.return?.(undefined).catch(() => {});
      await gateway.finish(context);
    }
  }

  /**
   * Resolves the tier and admits the request against its caller's limits, waiting for rate limits when
   * the entry point asked to. Returns how long it waited (clock ms), which is not Gravity's overhead.
   */
  private async admit<Request extends PipelineRequest>(
    context: RequestContext,
    entry: PipelineEntry<Request, unknown>,
    request: Request,
  ): Promise<number> {
    const admission = this.options.admission;
    if (!admission) {
      context.serviceTier = request.serviceTier;
      return 0;
    }
    // 403 for a tier the key may not use.
    context.serviceTier = admission.resolveTier(entry.caller, request.serviceTier);
    const waitFor = entry.waitForRateLimits;
    let waitedMs = 0;
    let stopWaiting: AbortSignal | undefined;
    for (;;) {
      const decision = await admission.tryAdmit(context, entry.caller, request.generation);
      if (decision.admitted) {
        entry.renderer.admitted(decision.rateLimitHeaders);
        return waitedMs;
      }
      if (!waitFor || decision.retryAfterMs === null) throw decision.error;
      // Off the hot path: only a request that waits for its limit gets here.
      stopWaiting ??= AbortSignal.any([entry.signal, waitFor.until]);
      const clock = this.options.gateway.clock;
      const sleptFromMs = clock.nowMs();
      await this.sleep(decision.retryAfterMs, stopWaiting);
      waitedMs += clock.nowMs() - sleptFromMs;
    }
  }
}
