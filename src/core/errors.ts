/**
 * Every error Gravity returns to a client, in one catalogue. Each entry fixes the HTTP status and the
 * OpenAI error `type`/`code`, so handlers never choose status codes themselves.
 */
export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'insufficient_quota'
  | 'server_error'
  | 'service_unavailable';

export interface OpenAIErrorBody {
  error: { message: string; type: OpenAIErrorType; param: string | null; code: string | null };
}

/**
 * The longest message an error carries. Many quote what the client sent (a model name, an id, a value
 * that is not allowed), which can be megabytes long: the answer must not echo it back whole.
 */
const maxMessageCharacters = 2000;

function clipped(message: string): string {
  return message.length <= maxMessageCharacters ? message : `${message.slice(0, maxMessageCharacters)}…`;
}

export class GravityError extends Error {
  readonly status: number;
  readonly type: OpenAIErrorType;
  readonly code: string | null;
  readonly param: string | null;
  /** Extra response headers, e.g. `retry-after`. */
  readonly headers: Record<string, string>;

  constructor(options: {
    status: number;
    type: OpenAIErrorType;
    code: string | null;
    message: string;
    param?: string | null;
    headers?: Record<string, string>;
    cause?: unknown;
  }) {
    super(clipped(options.message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GravityError';
    this.status = options.status;
    this.type = options.type;
    this.code = options.code;
    this.param = options.param ?? null;
    this.headers = options.headers ?? {};
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** An upstream's error fields, each a string or null: what reaches the client and the ledger. */
export interface UpstreamErrorFields {
  message: string | null;
  code: string | null;
  type: string | null;
  param: string | null;
}

/**
 * Reads an upstream's error object (`{message, type, param, code}` as OpenAI, vLLM and llama.cpp's server
 * send it) into fields Gravity can pass on. The upstream is another party: a field may be anything JSON
 * allows. A string stays; a finite number becomes its text (vLLM's `code: 400`); anything else (an
 * object, an array, a boolean, null) becomes null, so the caller's default stands in. Every error
 * built from upstream data goes through here, so neither a client body nor a ledger row ever carries a
 * non-string code or "[object Object]".
 */
export function upstreamErrorFields(error: unknown): UpstreamErrorFields {
  const fields = (error !== null && typeof error === 'object' ? error : {}) as Record<string, unknown>;
  return {
    message: upstreamErrorText(fields.message),
    code: upstreamErrorText(fields.code),
    type: upstreamErrorText(fields.type),
    param: upstreamErrorText(fields.param),
  };
}

function upstreamErrorText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return null;
}

export const errors = {
  invalidJson: (detail: string) =>
    new GravityError({
      status: 400,
      type: 'invalid_request_error',
      code: 'invalid_json',
      message: `We could not parse the JSON body of your request (${detail}). Send a valid JSON object.`,
    }),
  invalidRequest: (message: string, param: string | null = null, code: string | null = null) =>
    new GravityError({ status: 400, type: 'invalid_request_error', code, message, param }),
  unrecognizedArgument: (param: string) =>
    new GravityError({
      status: 400,
      type: 'invalid_request_error',
      code: 'unrecognized_argument',
      message: `Unrecognized request argument supplied: ${param}`,
      param,
    }),
  unsupportedParameter: (param: string, why: string) =>
    new GravityError({
      status: 400,
      type: 'invalid_request_error',
      code: 'unsupported_parameter',
      message: `Unsupported parameter: '${param}' ${why}`,
      param,
    }),
  modelNotFound: (model: string) =>
    new GravityError({
      status: 404,
      type: 'invalid_request_error',
      code: 'model_not_found',
      message: `The model '${model}' does not exist or you do not have access to it.`,
      param: 'model',
    }),
  /** An embeddings request for a model whose engines compute no embeddings (a chat-only engine). */
  embeddingsNotServed: (engines: string) =>
    new GravityError({
      status: 400,
      type: 'invalid_request_error',
      code: 'unsupported_model',
      message:
        `Embeddings are not served by ${engines}. Use a model whose engine serves embeddings ` +
        '(see docs/openai-compatibility.md).',
      param: 'model',
    }),
  contextLengthExceeded: (options: {
    contextTokens: number;
    promptTokens: number;
    maxTokens: number | null;
    /** The prompt was refused from a lower bound on its tokens, without tokenizing it. */
    promptTokensAtLeast?: boolean;
  }) =>
    new GravityError({
      status: 400,
      type: 'invalid_request_error',
      code: 'context_length_exceeded',
      param: 'messages',
      message:
        `This model's maximum context length is ${options.contextTokens} tokens. However, you requested ` +
        `${options.promptTokensAtLeast ? 'at least ' : ''}${options.promptTokens + (options.maxTokens ?? 0)} tokens (${options.promptTokensAtLeast ? 'at least ' : ''}${options.promptTokens} in the prompt, ` +
        `${options.maxTokens ?? 0} for the completion). Please reduce the prompt or the completion length.`,
    }),
  /** One input of an embeddings request is longer than the engine's context: each input is embedded alone. */
  embeddingInputTooLong: (options: { index: number; inputTokens: number; contextTokens: number }) =>
    new GravityError({
      status: 400,
      type: 'invalid_request_error',
      code: 'context_length_exceeded',
      param: 'input',
      message:
        `This model's maximum context length is ${options.contextTokens} tokens. However, input ` +
        `${options.index} has ${options.inputTokens} tokens. Please shorten or split the input.`,
    }),
  payloadTooLarge: (limitBytes: number) =>
    new GravityError({
      status: 413,
      type: 'invalid_request_error',
      code: 'request_too_large',
      message: `The request body exceeds the limit of ${limitBytes} bytes.`,
    }),
  /** The client took too long to send its request's headers or body; the connection is closed after. */
  requestTimeout: (what: string, timeoutMs: number) =>
    new GravityError({
      status: 408,
      type: 'invalid_request_error',
      code: 'request_timeout',
      message: `The request ${what} did not arrive within ${timeoutMs / 1000} s. Send the whole request without pausing.`,
    }),
  headersTooLarge: () =>
    new GravityError({
      status: 431,
      type: 'invalid_request_error',
      code: 'request_header_fields_too_large',
      message: 'The request headers are too large.',
    }),
  /** Bytes that are not an HTTP/1.1 request Gravity accepts (malformed, or Content-Length with Transfer-Encoding). */
  malformedHttp: (detail: string) =>
    new GravityError({
      status: 400,
      type: 'invalid_request_error',
      code: 'invalid_http_request',
      message: `The request is not valid HTTP/1.1 (${detail}).`,
    }),
  notFound: (method: string, url: string) =>
    new GravityError({
      status: 404,
      type: 'invalid_request_error',
      code: 'unknown_url',
      message: `Unrecognized request URL (${method} ${url}).`,
    }),
  shuttingDown: () =>
    new GravityError({
      status: 503,
      type: 'service_unavailable',
      code: 'shutting_down',
      message: 'Gravity is shutting down and accepts no new requests. Retry against another instance.',
      headers: { 'retry-after': '1' },
    }),
  cancelled: (reason: string) =>
    new GravityError({ status: 499, type: 'invalid_request_error', code: 'cancelled', message: reason }),
  upstream: (options: { status: number; message: string; code?: string | null; type?: OpenAIErrorType }) =>
    new GravityError({
      status: options.status,
      type: options.type ?? (options.status >= 500 ? 'server_error' : 'invalid_request_error'),
      code: options.code ?? 'upstream_error',
      message: options.message,
    }),
  upstreamUnreachable: (engineId: string, detail: string) =>
    new GravityError({
      status: 502,
      type: 'server_error',
      code: 'upstream_unreachable',
      message: `Engine '${engineId}' could not be reached: ${detail}`,
    }),
  /** The upstream did not answer, or stopped sending, within one of its engine's time bounds. */
  upstreamTimeout: (engineId: string, detail: string) =>
    new GravityError({
      status: 504,
      type: 'server_error',
      code: 'upstream_timeout',
      message: `upstream '${engineId}' ${detail}`,
    }),
  engineFailed: (engineId: string, detail: string) =>
    new GravityError({
      status: 500,
      type: 'server_error',
      code: 'engine_error',
      message: `Engine '${engineId}' failed: ${detail}`,
    }),
  /**
   * The scheduler sheds a request whose tier would miss its TTFT target (flex): come back later. A 429,
   * as OpenAI answers flex requests it has no capacity for, with Retry-After.
   */
  tierOverloaded: (tier: string, retryAfterSeconds: number, predictedTtftMs: number) =>
    new GravityError({
      status: 429,
      type: 'rate_limit_error',
      code: 'rate_limit_exceeded',
      message: `The ${tier} tier is at capacity: the predicted time to first token (${Math.round(predictedTtftMs)} ms) exceeds its target. Retry after ${retryAfterSeconds} s, or use a higher service_tier.`,
      headers: { 'retry-after': String(retryAfterSeconds) },
    }),
  /** A queued request waited past its tier's bound. */
  overloaded: (waitedSeconds: number) =>
    new GravityError({
      status: 503,
      type: 'service_unavailable',
      code: 'overloaded',
      message: `The engine is currently overloaded (waited ${waitedSeconds} s in the queue); please try again later.`,
      headers: { 'retry-after': String(Math.max(1, waitedSeconds)) },
    }),
  /** `/v1/usage` and its kind: as many summaries of the ledger as it runs or queues are already under way. */
  usageQueriesBusy: (maxPending: number) =>
    new GravityError({
      status: 503,
      type: 'service_unavailable',
      code: 'usage_queries_busy',
      message: `${maxPending} usage queries are already running or waiting, the most the ledger takes at once; please try again shortly.`,
      headers: { 'retry-after': '1' },
    }),
  fileNotFound: (fileId: string, param = 'id') =>
    new GravityError({
      status: 404,
      type: 'invalid_request_error',
      code: 'file_not_found',
      message: `No such File object: ${fileId}`,
      param,
    }),
  batchNotFound: (batchId: string) =>
    new GravityError({
      status: 404,
      type: 'invalid_request_error',
      code: 'batch_not_found',
      message: `No batch found with id '${batchId}'.`,
      param: 'batch_id',
    }),
  responseNotFound: (responseId: string, param: string | null = null) =>
    new GravityError({
      status: 404,
      type: 'invalid_request_error',
      code: param === 'previous_response_id' ? 'previous_response_not_found' : 'not_found',
      message:
        param === 'previous_response_id'
          ? `Previous response with id '${responseId}' not found.`
          : `Response with id '${responseId}' not found.`,
      param,
    }),
  /** The object exists but its state forbids the operation (cancel a finished batch, delete a file in use). */
  conflict: (message: string, code: string) =>
    new GravityError({ status: 409, type: 'invalid_request_error', code, message }),
  missingApiKey: () =>
    new GravityError({
      status: 401,
      type: 'invalid_request_error',
      code: 'invalid_api_key',
      message:
        "You didn't provide an API key. Send it in an Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY).",
    }),
  invalidApiKey: (redactedKey: string) =>
    new GravityError({
      status: 401,
      type: 'invalid_request_error',
      code: 'invalid_api_key',
      message: `Incorrect API key provided: ${redactedKey}. Ask your Gravity operator for a valid key.`,
    }),
  revokedApiKey: (prefix: string) =>
    new GravityError({
      status: 401,
      type: 'invalid_request_error',
      code: 'invalid_api_key',
      message: `The API key ${prefix}*** has been revoked.`,
    }),
  tierNotAllowed: (tier: string, allowed: readonly string[]) =>
    new GravityError({
      status: 403,
      type: 'permission_error',
      code: 'tier_not_allowed',
      param: 'service_tier',
      message: `Your API key may not use service_tier '${tier}' (allowed: ${allowed.join(', ')}, or auto).`,
    }),
  adminKeyRequired: (what: string) =>
    new GravityError({
      status: 403,
      type: 'permission_error',
      code: 'admin_key_required',
      message: `${what} requires an admin API key.`,
    }),
  /** Over a requests, tokens or concurrency limit; `headers` carry x-ratelimit-* and retry-after. */
  rateLimited: (message: string, headers: Record<string, string>) =>
    new GravityError({
      status: 429,
      type: 'rate_limit_error',
      code: 'rate_limit_exceeded',
      message,
      headers,
    }),
  /** Over a spend budget for the period. */
  insufficientQuota: (message: string, headers: Record<string, string>) =>
    new GravityError({
      status: 429,
      type: 'insufficient_quota',
      code: 'insufficient_quota',
      message,
      headers,
    }),
  /** A tenant's data-residency policy allows none of the replicas serving the model. */
  residencyDenied: (message: string) =>
    new GravityError({ status: 403, type: 'permission_error', code: 'data_residency_denied', message }),
  /** Every replica of the model is ejected or unhealthy (routing's filters left none). */
  noReplicaAvailable: (model: string, reason: string) =>
    new GravityError({
      status: 503,
      type: 'service_unavailable',
      code: 'no_replica_available',
      message: `No replica can serve '${model}' now: ${reason}.`,
      headers: { 'retry-after': '1' },
    }),
  internal: (detail = 'The server had an error while processing your request.') =>
    new GravityError({ status: 500, type: 'server_error', code: 'internal_error', message: detail }),
} as const;

/** Anything thrown becomes a GravityError; unknown failures are server errors without internals. */
export function toGravityError(error: unknown): GravityError {
  if (error instanceof GravityError) return error;
  return errors.internal();
}
