import Fastify, { type FastifyError, type FastifyInstance, LogController } from 'fastify';
import type { Admission } from '../admission/admission.js';
import { requestCaller } from '../admission/request-caller.js';
import { defaults } from '../core/defaults.js';
import { errors, GravityError } from '../core/errors.js';
import type { Endpoint } from '../core/request-context.js';
import { requestCorrelation } from '../core/request-correlation.js';
import type { Gateway } from '../gateway/gateway.js';
import type { LedgerStore } from '../metering/ledger/ledger-store.js';
import type { PrometheusMetrics } from '../metering/prometheus-metrics.js';
import type { RequestPipeline } from '../pipeline/request-pipeline.js';
import { registerAuthentication } from './authentication.js';
import { completionHandler, refusedRequestRenderer } from './completion-handler.js';
import {
  type EdgeLimits,
  edgeServerOptions,
  openAIClientErrorHandler,
  registerEdgeBounds,
} from './edge-bounds.js';
import { embeddingsHandler } from './embeddings-handler.js';
import { registerModelRoutes } from './models-route.js';
import { parseChatCompletionRequest, parseCompletionRequest } from './request-schemas.js';
import { registerRoutingRoutes } from './routing-route.js';
import { registerUsageRoute } from './usage-route.js';

export interface HttpServerOptions {
  gateway: Gateway;
  /** The request lifecycle the completion endpoints run through (admission included). */
  pipeline: RequestPipeline;
  metrics: PrometheusMetrics;
  /** The ledger behind `/v1/usage`; absent when metering is off. */
  ledger?: LedgerStore | undefined;
  bodyLimitBytes: number;
  /** How long a response waits for a client that reads nothing before it is dropped (499). */
  writeStallTimeoutMs: number;
  logLevel: string;
  /** Keys, for authentication (the pipeline applies tiers and limits); absent: everyone is anonymous. */
  admission?: Admission | undefined;
  /**
   * Routes of the entry points built on this edge (the Batch API's `/v1/files` and `/v1/batches`): they
   * register themselves, so the edge does not depend on them.
   */
  extraRoutes?: ReadonlyArray<(app: FastifyInstance) => void> | undefined;
  /** Header and body deadlines, the connection cap (`server.*` in the config); absent: the defaults. */
  limits?: EdgeLimits | undefined;
  /** `/metrics` needs an admin key from loopback clients too (`metrics.requireAdminKey`). */
  metricsRequireAdminKey?: boolean | undefined;
  /** `/metrics` is served on its own port (`metrics.port`, metrics-listener.ts), not on this one. */
  metricsOnOwnPort?: boolean | undefined;
}

/** For requests refused before they could be read: no client disconnect can cancel anything. */
const neverAborted = new AbortController().signal;

/** Maps framework-level failures (body parsing, limits, routing) to OpenAI-style errors. */
function toOpenAIError(error: FastifyError | GravityError, bodyLimitBytes: number): GravityError {
  if (error instanceof GravityError) return error;
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return errors.payloadTooLarge(bodyLimitBytes);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return errors.invalidJson('the body is empty');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return errors.invalidRequest('The Content-Length header does not match the body.');
  }
  if (error instanceof SyntaxError) return errors.invalidJson(error.message);
  if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
    return errors.invalidRequest(error.message);
  }
  return errors.internal();
}

/**
 * The OpenAI-compatible HTTP edge. Thin: it translates the wire format; completions run through the
 * request pipeline, the rest asks the gateway (models, routing) or the ledger (usage).
 */
export function createHttpServer(options: HttpServerOptions): FastifyInstance {
  const { gateway, pipeline, metrics, bodyLimitBytes } = options;
  const limits = options.limits ?? defaults.http;
  const app = Fastify({
    ...edgeServerOptions(limits),
    clientErrorHandler: openAIClientErrorHandler(limits.headersTimeoutMs),
    bodyLimit: bodyLimitBytes,
    logger: { level: options.logLevel },
    // Per-request log lines would sit on the hot path; metering records every request instead.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  });

  // Every body is parsed as JSON whatever its content type (curl's -d sends form encoding by default);
  // JSON.parse is iterative, so deeply nested input cannot exhaust the stack.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    const text = body as string;
    if (text.length === 0) return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (error) {
      done(errors.invalidJson((error as Error).message), undefined);
    }
  });

  const completionEndpoints: Record<string, Endpoint> = {
    '/v1/chat/completions': 'chat.completions',
    '/v1/completions': 'completions',
    '/v1/embeddings': 'embeddings',
    '/v1/responses': 'responses',
  };
  app.setErrorHandler(async (error: FastifyError | GravityError, request, reply) => {
    const gravityError = toOpenAIError(error, bodyLimitBytes);
    if (gravityError.status >= 500) request.log.error({ err: error }, 'request failed');
    // A completion request refused before its handler ran (bad JSON, body too large, a body too slow)
    // still gets its one usage record: it enters the pipeline and fails its parse, under the tenant of
    // its key. Requests refused by authentication never get here (authentication.ts answers them).
    const endpoint = completionEndpoints[request.routeOptions.url ?? ''];
    if (endpoint) {
      await pipeline.run({
        endpoint,
        received: { model: '', stream: false },
        caller: requestCaller(request),
        correlation: requestCorrelation(request.headers),
        parse: () => {
          throw gravityError;
        },
        renderer: refusedRequestRenderer(reply),
        signal: neverAborted,
      });
      return reply;
    }
    return reply.code(gravityError.status).headers(gravityError.headers).send(gravityError.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    const error = errors.notFound(request.method, request.url);
    return reply.code(error.status).send(error.toBody());
  });

  registerEdgeBounds(app, limits);
  registerAuthentication(app, options.admission, {
    metrics,
    metricsRequireAdminKey: options.metricsRequireAdminKey ?? false,
  });
  const clock = gateway.clock;
  const { writeStallTimeoutMs } = options;
  app.post(
    '/v1/chat/completions',
    completionHandler({
      pipeline,
      clock,
      endpoint: 'chat.completions',
      parse: parseChatCompletionRequest,
      writeStallTimeoutMs,
    }),
  );
  app.post(
    '/v1/completions',
    completionHandler({
      pipeline,
      clock,
      endpoint: 'completions',
      parse: parseCompletionRequest,
      writeStallTimeoutMs,
    }),
  );

  app.post('/v1/embeddings', embeddingsHandler({ pipeline, writeStallTimeoutMs }));

  registerModelRoutes(app, gateway);

  if (options.ledger) registerUsageRoute(app, options.ledger);
  registerRoutingRoutes(app, gateway);
  for (const register of options.extraRoutes ?? []) register(app);

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    if (gateway.ready) return { status: 'ready' };
    return reply.code(503).send({ status: 'not ready' });
  });
  if (!options.metricsOnOwnPort)
    app.get('/metrics', async (_request, reply) => {
      reply.header('content-type', metrics.contentType());
      return metrics.render();
    });
  return app;
}
