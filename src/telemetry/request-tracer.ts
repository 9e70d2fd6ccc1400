import {
  type Attributes,
  type Context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { Clock } from '../core/clock.js';
import type { Endpoint, RequestContext } from '../core/request-context.js';
import type { RequestObserver } from '../core/request-observer.js';

/**
 * The GenAI semantic conventions' attribute names. They are still "development" in the conventions, so
 * they are spelled out here (as the semantic-conventions package advises for incubating names) rather
 * than imported from its incubating entry point, whose names may move.
 */
const genAi = {
  operationName: 'gen_ai.operation.name',
  requestModel: 'gen_ai.request.model',
  requestMaxTokens: 'gen_ai.request.max_tokens',
  requestStream: 'gen_ai.request.stream',
  responseModel: 'gen_ai.response.model',
  responseFinishReasons: 'gen_ai.response.finish_reasons',
  inputTokens: 'gen_ai.usage.input_tokens',
  outputTokens: 'gen_ai.usage.output_tokens',
  cachedInputTokens: 'gen_ai.usage.cache_read.input_tokens',
} as const;

/** `gen_ai.operation.name` by endpoint (the conventions' values; a Responses request is a chat). */
const operationOf: Record<Endpoint, string> = {
  'chat.completions': 'chat',
  completions: 'text_completion',
  embeddings: 'embeddings',
  responses: 'chat',
};

const propagator = new W3CTraceContextPropagator();

/** One request's open spans; kept only while tracing is on, and only until the request ends. */
interface RequestSpans {
  readonly server: Span;
  readonly serverContext: Context;
  attempt: Span | null;
  attemptContext: Context;
  queue: Span | null;
  engine: Span | null;
  attempts: number;
  /** Clock ms at which the next routing began: admission's end, or the failure of the attempt before. */
  routingFromMs: number;
}

/**
 * A request as a tree of spans, built from the request observer's events (the seam metering uses):
 *
 * ```
 * chat <model>              SERVER   the request, child of the client's traceparent when it sent one
 * ├─ gravity.admission               key, tier, limits (until admission let it in)
 * └─ gravity.attempt                 one per attempt: a retry on another replica is a sibling
 *    ├─ gravity.routing              the pick (gravity.replica)
 *    ├─ gravity.queue                the wait in Gravity's queue for that replica
 *    └─ chat <model>        CLIENT   the engine call; its context is the upstream's traceparent
 * ```
 *
 * Times come from Gravity's clock (the same readings the ledger records), so spans nest exactly. The
 * GenAI attributes and Gravity's own (tier, tenant, replica, energy, cost) are set at the end, from the
 * figures metering recorded: this observer must come after metering in the gateway's list.
 *
 * Only built while tracing is on (src/telemetry/open-telemetry.ts); off, the gateway has no such observer.
 */
export class RequestTracer implements RequestObserver {
  private readonly spans = new WeakMap<RequestContext, RequestSpans>();

  constructor(
    private readonly tracer: Tracer,
    private readonly clock: Clock,
  ) {}

  onRequestStart(context: RequestContext): void {
    // The client's trace continues here; the sampler follows its sampled flag (ParentBased).
    const parent =
      context.traceparent === null
        ? ROOT_CONTEXT
        : propagator.extract(
            ROOT_CONTEXT,
            { traceparent: context.traceparent, tracestate: context.tracestate ?? undefined },
            defaultTextMapGetter,
          );
    const operation = operationOf[context.endpoint];
    const server = this.tracer.startSpan(
      `${operation} ${context.model}`,
      {
        kind: SpanKind.SERVER,
        startTime: epochMsOf(context, context.receivedAtMs),
        attributes: {
          [genAi.operationName]: operation,
          [genAi.requestModel]: context.model,
          [genAi.requestStream]: context.stream,
          'gravity.request.id': context.requestId,
          ...(context.clientRequestId !== null && { 'gravity.client_request.id': context.clientRequestId }),
        },
      },
      parent,
    );
    const serverContext = trace.setSpan(parent, server);
    this.spans.set(context, {
      server,
      serverContext,
      attempt: null,
      attemptContext: serverContext,
      queue: null,
      engine: null,
      attempts: 0,
      routingFromMs: context.receivedAtMs,
    });
  }

  onRouted(context: RequestContext): void {
    const spans = this.spans.get(context);
    if (!spans) return;
    const nowMs = this.clock.nowMs();
    if (spans.attempts === 0 && context.admittedAtMs !== null) {
      this.tracer
        .startSpan(
          'gravity.admission',
          {
            startTime: epochMsOf(context, context.receivedAtMs),
            attributes: {
              'gravity.tier': context.serviceTier,
              'gravity.tenant': context.tenant ?? 'anonymous',
            },
          },
          spans.serverContext,
        )
        .end(epochMsOf(context, context.admittedAtMs));
      spans.routingFromMs = context.admittedAtMs;
    }
    spans.attempts++;
    const replica = context.engineId ?? '';
    const startTime = epochMsOf(context, spans.routingFromMs);
    const attempt = this.tracer.startSpan(
      'gravity.attempt',
      { startTime, attributes: { 'gravity.attempt': spans.attempts, 'gravity.replica': replica } },
      spans.serverContext,
    );
    spans.attempt = attempt;
    spans.attemptContext = trace.setSpan(spans.serverContext, attempt);
    const routing = this.tracer.startSpan(
      'gravity.routing',
      { startTime, attributes: { 'gravity.replica': replica, ...routeAttributes(context.route) } },
      spans.attemptContext,
    );
    routing.end(epochMsOf(context, nowMs));
    spans.queue = this.tracer.startSpan(
      'gravity.queue',
      { startTime: epochMsOf(context, nowMs), attributes: { 'gravity.replica': replica } },
      spans.attemptContext,
    );
  }

  onDispatched(context: RequestContext): void {
    const spans = this.spans.get(context);
    if (!spans) return;
    const now = epochMsOf(context, this.clock.nowMs());
    spans.queue?.end(now);
    spans.queue = null;
    const operation = operationOf[context.endpoint];
    const engine = this.tracer.startSpan(
      `${operation} ${context.model}`,
      {
        kind: SpanKind.CLIENT,
        startTime: now,
        attributes: {
          [genAi.operationName]: operation,
          [genAi.requestModel]: context.model,
          ...(context.maxTokens !== null && { [genAi.requestMaxTokens]: context.maxTokens }),
          'gravity.replica': context.engineId ?? '',
          'gravity.attempt': spans.attempts,
        },
      },
      spans.attemptContext,
    );
    spans.engine = engine;
    // The engine call's own context goes upstream: an engine that traces continues this trace under it.
    const carrier: { traceparent?: string; tracestate?: string } = {};
    propagator.inject(trace.setSpan(ROOT_CONTEXT, engine), carrier, defaultTextMapSetter);
    context.traceparent = carrier.traceparent ?? null;
    context.tracestate = carrier.tracestate ?? null;
  }

  onRouteAbandoned(context: RequestContext): void {
    const spans = this.spans.get(context);
    if (!spans) return;
    const nowMs = this.clock.nowMs();
    const now = epochMsOf(context, nowMs);
    const failure = { code: SpanStatusCode.ERROR, message: 'failed before its first token; retried' };
    for (const span of [spans.queue, spans.engine, spans.attempt]) {
      span?.setStatus(failure);
      span?.end(now);
    }
    spans.queue = null;
    spans.engine = null;
    spans.attempt = null;
    spans.routingFromMs = nowMs;
  }

  onRequestEnd(context: RequestContext): void {
    const spans = this.spans.get(context);
    if (!spans) return;
    this.spans.delete(context);
    const end = epochMsOf(context, context.finishedAtMs ?? this.clock.nowMs());
    const failed = context.errorCode !== null;
    const status = failed
      ? { code: SpanStatusCode.ERROR, message: context.errorCode ?? '' }
      : { code: SpanStatusCode.UNSET };
    if (spans.queue) {
      // Still waiting when it ended: expired, shed on retry, or the client left.
      spans.queue.setStatus(status);
      spans.queue.end(end);
    }
    const usage = usageAttributes(context);
    if (spans.engine) {
      spans.engine.setAttributes(usage);
      spans.engine.setStatus(status);
      spans.engine.end(end);
    }
    if (spans.attempt) {
      spans.attempt.setStatus(status);
      spans.attempt.end(end);
    }
    const server = spans.server;
    server.setAttributes(usage);
    server.setAttributes(gravityAttributes(context));
    // A refusal (4xx) is the server doing its job; an error is one it could not answer (5xx), or a
    // stream that broke after its head (status 200 with an error code).
    if (failed && (context.status >= 500 || context.status === 200)) server.setStatus(status);
    server.end(end);
  }
}

/** A Clock reading as epoch milliseconds, on the same base as the ledger's times. */
function epochMsOf(context: RequestContext, clockMs: number): number {
  return context.receivedAtEpochMs + (clockMs - context.receivedAtMs);
}

/** The routing profile and attempt number from routing's explanation (the ledger's `route`). */
function routeAttributes(route: string | null): Attributes {
  if (route === null) return {};
  try {
    const parsed = JSON.parse(route) as { profile?: unknown };
    return typeof parsed.profile === 'string' ? { 'gravity.route.profile': parsed.profile } : {};
  } catch {
    return {};
  }
}

/** Token counts exactly as the ledger records them (metering-service.ts `recordOf`). */
function usageAttributes(context: RequestContext): Attributes {
  const usage = context.usage;
  const attributes: Attributes = {
    [genAi.inputTokens]: usage?.promptTokens ?? context.prefillTokens,
    [genAi.outputTokens]: usage?.completionTokens ?? context.decodeTokens,
  };
  if (usage) {
    attributes[genAi.responseModel] = context.model;
    attributes[genAi.cachedInputTokens] = usage.cachedPromptTokens;
  }
  if (context.finishReason !== null) attributes[genAi.responseFinishReasons] = [context.finishReason];
  return attributes;
}

/** Gravity's own figures: who, which tier and replica, the wait, and what it cost in joules and dollars. */
function gravityAttributes(context: RequestContext): Attributes {
  const attributes: Attributes = {
    'gravity.tier': context.serviceTier,
    'gravity.tenant': context.tenant ?? 'anonymous',
    'http.response.status_code': context.status,
  };
  if (context.maxTokens !== null) attributes[genAi.requestMaxTokens] = context.maxTokens;
  if (context.engineId !== null) attributes['gravity.replica'] = context.engineId;
  if (context.queueWaitMs !== null) attributes['gravity.queue.wait_ms'] = context.queueWaitMs;
  if (context.firstTokenAtMs !== null)
    attributes['gravity.ttft_ms'] = context.firstTokenAtMs - context.receivedAtMs;
  if (context.errorCode !== null) attributes['error.type'] = context.errorCode;
  const metered = context.metered;
  if (metered) {
    attributes['gravity.energy.joules'] = metered.energyJoules;
    attributes['gravity.energy.source'] = metered.energySource;
    attributes['gravity.cost.usd'] = metered.costUsd;
    attributes['gravity.cost.source'] = metered.costSource;
    attributes['gravity.price.usd'] = metered.priceUsd;
    attributes['gravity.carbon.grams'] = metered.carbonGrams;
  }
  return attributes;
}
