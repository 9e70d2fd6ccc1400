import { completionResponseBody } from '../api/openai-wire-format.js';
import { parseChatCompletionRequest, parseCompletionRequest } from '../api/request-schemas.js';
import { errors, GravityError, toGravityError } from '../core/errors.js';
import type { Endpoint } from '../core/request-context.js';
import type { StreamPart, TokenUsage } from '../core/stream-parts.js';
import type { Gateway } from '../gateway/gateway.js';
import type { BatchEndpoint } from './batch-input.js';

/** What one line's request answered, as an HTTP client would have seen it. */
export interface LineAnswer {
  statusCode: number;
  requestId: string;
  body: unknown;
  usage: TokenUsage | null;
  /** The error code when the answer is an error (`shutting_down`, `rate_limit_exceeded` …). */
  errorCode: string | null;
}

const endpoints: Record<BatchEndpoint, Endpoint> = {
  '/v1/chat/completions': 'chat.completions',
  '/v1/completions': 'completions',
};

/**
 * Runs one batch line through exactly the path an HTTP request takes — `gateway.begin`, the edge's own
 * request parser, `gateway.execute`, `gateway.finish` — non-streamed, at the `batch` tier and as the
 * batch owner's tenant, so the line leaves one ledger record like any request. Never throws: a failure
 * is the line's answer, with the status and body the HTTP edge would have sent.
 */
export async function executeBatchLine(options: {
  gateway: Gateway;
  endpoint: BatchEndpoint;
  body: Record<string, unknown>;
  tenant: string;
  signal: AbortSignal;
}): Promise<LineAnswer> {
  const { gateway, body, signal } = options;
  const endpoint = endpoints[options.endpoint];
  const context = gateway.begin({
    endpoint,
    stream: false,
    model: typeof body.model === 'string' ? body.model : '',
    serviceTier: 'batch',
  });
  context.tenant = options.tenant;
  let iterator: AsyncIterator<StreamPart> | undefined;
  try {
    if (body.stream === true)
      throw errors.unsupportedParameter(
        'stream',
        'is not supported in a batch: each line is answered whole.',
      );
    // A line's own service_tier is not the batch's: batch lines always run at the batch tier.
    const { service_tier: _ignored, ...request } = body;
    const parsed =
      endpoint === 'chat.completions' ? parseChatCompletionRequest(request) : parseCompletionRequest(request);
    iterator = gateway.execute(context, parsed.generation, signal)[Symbol.asyncIterator]();
    context.gatewayOverheadMs += gateway.clock.nowMs() - context.receivedAtMs;
    let text = '';
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      const part = next.value;
      if (part.type === 'response-start') context.status = 200;
      else if (part.type === 'text-delta') text += part.text;
      else if (part.type === 'finish') {
        await gateway.finish(context);
        return {
          statusCode: 200,
          requestId: context.requestId,
          body: completionResponseBody({
            context,
            text,
            finishReason: part.finishReason,
            usage: part.usage,
            metered: context.metered,
          }),
          usage: part.usage,
          errorCode: null,
        };
      }
    }
    throw errors.internal('engine ended without a finish part');
  } catch (error) {
    // Stopped by the runner (cancel, expiry): the abort's reason says why, whatever the engine threw.
    const gravityError =
      signal.aborted && signal.reason instanceof GravityError ? signal.reason : toGravityError(error);
    context.status = gravityError.status;
    context.errorCode = gravityError.code;
    await gateway.finish(context);
    return {
      statusCode: gravityError.status,
      requestId: context.requestId,
      body: gravityError.toBody(),
      usage: null,
      errorCode: gravityError.code,
    };
  } finally {
    await iterator?.return?.(undefined).catch(() => {});
    await gateway.finish(context);
  }
}
