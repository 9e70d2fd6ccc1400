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
  | 'server_error'
  | 'service_unavailable';

export interface OpenAIErrorBody {
  error: { message: string; type: OpenAIErrorType; param: string | null; code: string | null };
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
    super(options.message, options.cause === undefined ? undefined : { cause: options.cause });
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
  contextLengthExceeded: (options: {
    contextTokens: number;
    promptTokens: number;
    maxTokens: number | null;
  }) =>
    new GravityError({
      status: 400,
      type: 'invalid_request_error',
      code: 'context_length_exceeded',
      param: 'messages',
      message:
        `This model's maximum context length is ${options.contextTokens} tokens. However, you requested ` +
        `${options.promptTokens + (options.maxTokens ?? 0)} tokens (${options.promptTokens} in the prompt, ` +
        `${options.maxTokens ?? 0} for the completion). Please reduce the prompt or the completion length.`,
    }),
  payloadTooLarge: (limitBytes: number) =>
    new GravityError({
      status: 413,
      type: 'invalid_request_error',
      code: 'request_too_large',
      message: `The request body exceeds the limit of ${limitBytes} bytes.`,
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
  engineFailed: (engineId: string, detail: string) =>
    new GravityError({
      status: 500,
      type: 'server_error',
      code: 'engine_error',
      message: `Engine '${engineId}' failed: ${detail}`,
    }),
  internal: (detail = 'The server had an error while processing your request.') =>
    new GravityError({ status: 500, type: 'server_error', code: 'internal_error', message: detail }),
} as const;

/** Anything thrown becomes a GravityError; unknown failures are server errors without internals. */
export function toGravityError(error: unknown): GravityError {
  if (error instanceof GravityError) return error;
  return errors.internal();
}
