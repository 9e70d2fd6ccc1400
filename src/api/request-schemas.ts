import { z } from 'zod';
import { errors, type GravityError } from '../core/errors.js';
import { type ServiceTier, serviceTiers } from '../core/service-tiers.js';
import type { ChatMessage, GenerationRequest } from '../engines/engine-adapter.js';

/**
 * Inbound schemas are strict: a client that sends a field Gravity does not know gets a 400 naming it,
 * and a field Gravity knows but does not implement (tools, n > 1, logprobs …) gets a 400 saying so.
 * Nothing is silently ignored.
 */
const textPartSchema = z.strictObject({ type: z.literal('text'), text: z.string() });
const contentSchema = z.union([z.string(), z.array(textPartSchema).min(1)]);

const messageSchema = z.strictObject({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: contentSchema,
  name: z.string().optional(),
});

const commonFields = {
  model: z.string().min(1),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.strictObject({ include_usage: z.boolean().optional() }).nullish(),
  user: z.string().nullish(),
  // `batch` is Gravity's: what the Batch API's lines run at, also selectable directly by keys allowed it.
  service_tier: z.enum(serviceTiers).nullish(),
  n: z.literal(1).nullish(),
};

export const chatCompletionRequestSchema = z.strictObject({
  ...commonFields,
  messages: z.array(messageSchema).min(1),
  max_completion_tokens: z.number().int().min(1).nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
});

export const completionRequestSchema = z.strictObject({
  ...commonFields,
  prompt: z.union([z.string(), z.array(z.string()).length(1)]),
});

/**
 * Parameters of the OpenAI API that Gravity recognises but does not implement. A value equal to the
 * API's default is harmless and accepted; anything else is refused with the reason.
 */
const unsupportedParameters: Record<string, { isDefault: (value: unknown) => boolean; why: string }> = {
  tools: {
    isDefault: (value) => value == null || (Array.isArray(value) && value.length === 0),
    why: 'is not supported: Gravity does not run tool calls yet.',
  },
  tool_choice: {
    isDefault: (value) => value == null || value === 'none',
    why: 'is not supported: Gravity does not run tool calls yet.',
  },
  parallel_tool_calls: {
    isDefault: (value) => value == null,
    why: 'is not supported: Gravity does not run tool calls yet.',
  },
  functions: {
    isDefault: (value) => value == null,
    why: 'is not supported: Gravity does not run function calls.',
  },
  function_call: {
    isDefault: (value) => value == null || value === 'none',
    why: 'is not supported: Gravity does not run function calls.',
  },
  logprobs: {
    isDefault: (value) => value == null || value === false,
    why: 'is not supported: Gravity does not return log probabilities yet.',
  },
  top_logprobs: {
    isDefault: (value) => value == null || value === 0,
    why: 'is not supported: Gravity does not return log probabilities yet.',
  },
  response_format: {
    isDefault: (value) =>
      value == null || (typeof value === 'object' && (value as { type?: unknown }).type === 'text'),
    why: 'is not supported: structured output (json_object, json_schema) is not implemented yet.',
  },
  logit_bias: {
    isDefault: (value) =>
      value == null || (typeof value === 'object' && Object.keys(value as object).length === 0),
    why: 'is not supported yet.',
  },
  presence_penalty: {
    isDefault: (value) => value == null || value === 0,
    why: 'is not supported yet: only 0 is accepted.',
  },
  frequency_penalty: {
    isDefault: (value) => value == null || value === 0,
    why: 'is not supported yet: only 0 is accepted.',
  },
  best_of: {
    isDefault: (value) => value == null || value === 1,
    why: 'is not supported: only 1 is accepted.',
  },
  echo: { isDefault: (value) => value == null || value === false, why: 'is not supported.' },
  suffix: {
    isDefault: (value) => value == null,
    why: 'is not supported: Gravity does not do fill-in-the-middle.',
  },
  store: {
    isDefault: (value) => value == null || value === false,
    why: 'is not supported: Gravity does not store completions.',
  },
  modalities: {
    isDefault: (value) =>
      value == null || (Array.isArray(value) && value.length === 1 && value[0] === 'text'),
    why: 'is not supported: only text output.',
  },
  audio: { isDefault: (value) => value == null, why: 'is not supported: only text output.' },
  prediction: { isDefault: (value) => value == null, why: 'is not supported.' },
  reasoning_effort: {
    isDefault: (value) => value == null,
    why: 'is not supported by the models Gravity serves.',
  },
  web_search_options: { isDefault: (value) => value == null, why: 'is not supported.' },
};

function formatPath(path: readonly PropertyKey[]): string {
  let formatted = '';
  for (const segment of path) {
    formatted +=
      typeof segment === 'number'
        ? `[${segment}]`
        : formatted === ''
          ? String(segment)
          : `.${String(segment)}`;
  }
  return formatted;
}

/**
 * For a value matching no branch of a union (string or array of parts), the most useful report is the
 * branch that got furthest: `content[0].type` beats "no union branch matched".
 */
function deepestIssue(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return issue;
  let best: z.core.$ZodIssue | undefined;
  for (const branch of issue.errors) {
    const candidate = branch[0];
    if (candidate && (!best || candidate.path.length > best.path.length)) best = candidate;
  }
  if (!best || best.path.length === 0) return issue;
  const resolved = deepestIssue(best);
  return { ...resolved, path: [...issue.path, ...resolved.path] } as z.core.$ZodIssue;
}

export function describeZodError(error: z.ZodError): GravityError {
  const first = error.issues[0];
  if (!first) return errors.invalidRequest('Invalid request body.');
  const issue = deepestIssue(first);
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    const prefix = formatPath(issue.path);
    return errors.unrecognizedArgument(prefix ? `${prefix}.${key}` : key);
  }
  const param = formatPath(issue.path);
  if (issue.code === 'invalid_value' && param.endsWith('.type') && param.includes('content')) {
    return errors.unsupportedParameter(param, 'must be "text": Gravity serves text-only models.');
  }
  if (issue.code === 'invalid_value' && param.endsWith('role')) {
    return errors.invalidRequest(
      `Invalid value for '${param}': expected one of system, developer, user, assistant (tool messages need tool calls, which Gravity does not run yet).`,
      param,
      'invalid_value',
    );
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) {
    return errors.invalidRequest(
      `Missing required parameter: '${param}'.`,
      param,
      'missing_required_parameter',
    );
  }
  return errors.invalidRequest(
    `Invalid value for '${param || 'body'}': ${issue.message}`,
    param || null,
    issue.code,
  );
}

/** Validated request plus what the HTTP layer needs to shape the response. */
export interface ParsedRequest {
  generation: Omit<GenerationRequest, 'requestId'>;
  stream: boolean;
  includeUsage: boolean;
  serviceTier: ServiceTier;
}

function rejectUnsupported(body: Record<string, unknown>): void {
  for (const [name, rule] of Object.entries(unsupportedParameters)) {
    if (!(name in body)) continue;
    if (!rule.isDefault(body[name])) throw errors.unsupportedParameter(name, rule.why);
    delete body[name];
  }
}

function asObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw errors.invalidRequest('The request body must be a JSON object.');
  }
  return body as Record<string, unknown>;
}

function messageText(content: z.infer<typeof contentSchema>): string {
  return typeof content === 'string' ? content : content.map((part) => part.text).join('');
}

function common(parsed: z.infer<z.ZodObject<typeof commonFields>>) {
  if (parsed.stream_options && !parsed.stream) {
    throw errors.invalidRequest("'stream_options' is only allowed when 'stream' is true.", 'stream_options');
  }
  return {
    model: parsed.model,
    temperature: parsed.temperature ?? 1,
    topP: parsed.top_p ?? 1,
    seed: parsed.seed ?? null,
    stop: parsed.stop == null ? [] : typeof parsed.stop === 'string' ? [parsed.stop] : parsed.stop,
    user: parsed.user ?? null,
  };
}

export function parseChatCompletionRequest(body: unknown): ParsedRequest {
  const object = { ...asObject(body) };
  rejectUnsupported(object);
  const result = chatCompletionRequestSchema.safeParse(object);
  if (!result.success) throw describeZodError(result.error);
  const parsed = result.data;
  if (
    parsed.max_tokens != null &&
    parsed.max_completion_tokens != null &&
    parsed.max_tokens !== parsed.max_completion_tokens
  ) {
    throw errors.invalidRequest(
      "Set only one of 'max_tokens' and 'max_completion_tokens'.",
      'max_completion_tokens',
    );
  }
  const messages: ChatMessage[] = parsed.messages.map((message) => ({
    role: message.role,
    content: messageText(message.content),
  }));
  return {
    generation: {
      ...common(parsed),
      input: { kind: 'chat', messages },
      maxTokens: parsed.max_completion_tokens ?? parsed.max_tokens ?? null,
    },
    stream: parsed.stream ?? false,
    includeUsage: parsed.stream_options?.include_usage ?? false,
    serviceTier: parsed.service_tier ?? 'auto',
  };
}

export function parseCompletionRequest(body: unknown): ParsedRequest {
  const object = { ...asObject(body) };
  rejectUnsupported(object);
  const result = completionRequestSchema.safeParse(object);
  if (!result.success) throw describeZodError(result.error);
  const parsed = result.data;
  return {
    generation: {
      ...common(parsed),
      input: {
        kind: 'completion',
        prompt: typeof parsed.prompt === 'string' ? parsed.prompt : (parsed.prompt[0] ?? ''),
      },
      // The legacy completions API defaults to 16 tokens.
      maxTokens: parsed.max_tokens ?? 16,
    },
    stream: parsed.stream ?? false,
    includeUsage: parsed.stream_options?.include_usage ?? false,
    serviceTier: parsed.service_tier ?? 'auto',
  };
}
