import { z } from 'zod';
import { errors, type GravityError } from '../core/errors.js';
import { requestFeatures } from '../core/request-features.js';
import { type ServiceTier, serviceTiers } from '../core/service-tiers.js';
import type {
  ChatMessage,
  GenerationOptions,
  GenerationRequest,
  ResponseFormat,
  ToolChoice,
  ToolDefinition,
} from '../engines/engine-adapter.js';
import { defaultGenerationOptions } from '../engines/engine-adapter.js';

/**
 * Inbound schemas follow one rule (docs/openai-compatibility.md): validate strictly what Gravity's own
 * policies read (model, stream, service_tier, token bounds, the text it measures, user) and the shape of
 * every parameter the OpenAI API defines; carry everything else. A field Gravity does not model (a
 * vendor extra such as `top_k` or `chat_template_kwargs`, a message field such as `reasoning_content`) is
 * not refused here: it travels to an upstream as sent, and an engine that runs the model itself answers
 * a 400 naming what it cannot use.
 */

/**
 * zod reports a string given for an integer as "expected number"; this message marks integer schemas so
 * the error can say "expected an integer" (describeZodError reads it).
 */
const integerMarker = 'gravity:integer';
const integer = () => z.int({ message: integerMarker });
/** Any integer, not only the safe ones: seeds above 2^53 are valid in the API. */
const anyInteger = z
  .number({ message: integerMarker })
  .refine(Number.isInteger, { params: { expected: 'int' } });
const positiveInteger = integer().min(1);
const nameField = z.string().optional();

const textPartSchema = z.looseObject({ type: z.literal('text'), text: z.string() });
const refusalPartSchema = z.looseObject({ type: z.literal('refusal'), refusal: z.string() });
const imagePartSchema = z.looseObject({
  type: z.literal('image_url'),
  image_url: z.looseObject({ url: z.string(), detail: z.enum(['auto', 'low', 'high']).optional() }),
});
const audioPartSchema = z.looseObject({
  type: z.literal('input_audio'),
  input_audio: z.looseObject({ data: z.string(), format: z.string() }),
});
const filePartSchema = z.looseObject({
  type: z.literal('file'),
  file: z.looseObject({
    file_data: z.string().optional(),
    file_id: z.string().optional(),
    filename: z.string().optional(),
  }),
});
const knownPartTypes = new Set(['text', 'refusal', 'image_url', 'input_audio', 'file']);
const knownUserParts = z.discriminatedUnion('type', [
  textPartSchema,
  imagePartSchema,
  audioPartSchema,
  filePartSchema,
]);
/**
 * A user content part: one the API defines is checked against its shape; a type it does not define
 * (vLLM's `video_url` …) is carried, and is a feature of its own. Checked here rather than as a union, so
 * a malformed known part is reported at its field (`image_url.url`), not as "no branch matched".
 */
const userPartSchema = z.looseObject({ type: z.string() }).superRefine((part, context) => {
  if (!knownPartTypes.has(part.type)) return;
  const result = knownUserParts.safeParse(part, { reportInput: true });
  if (result.success) return;
  for (const issue of result.error.issues) context.addIssue(issue as never);
});

const textContent = z.union([z.string(), z.array(textPartSchema)]);

const toolCallSchema = z.union([
  z.looseObject({
    id: z.string(),
    type: z.literal('function'),
    function: z.looseObject({ name: z.string(), arguments: z.string() }),
  }),
  z.looseObject({
    id: z.string(),
    type: z.literal('custom'),
    custom: z.looseObject({ name: z.string(), input: z.string() }),
  }),
]);

const messageSchema = z.discriminatedUnion('role', [
  z.looseObject({ role: z.literal('system'), content: textContent, name: nameField }),
  z.looseObject({ role: z.literal('developer'), content: textContent, name: nameField }),
  z.looseObject({
    role: z.literal('user'),
    content: z.union([z.string(), z.array(userPartSchema)]),
    name: nameField,
  }),
  z.looseObject({
    role: z.literal('assistant'),
    // The SDK returns `content: null` (with tool calls) and `refusal: null`; both go back as they came.
    content: z
      .union([z.string(), z.array(z.discriminatedUnion('type', [textPartSchema, refusalPartSchema]))])
      .nullish(),
    refusal: z.string().nullish(),
    name: nameField,
    tool_calls: z.array(toolCallSchema).nullish(),
    function_call: z.looseObject({ name: z.string(), arguments: z.string() }).nullish(),
    audio: z.looseObject({ id: z.string() }).nullish(),
  }),
  z.looseObject({ role: z.literal('tool'), content: textContent, tool_call_id: z.string() }),
  z.looseObject({ role: z.literal('function'), content: z.string().nullable(), name: z.string() }),
]);

const functionDefinitionSchema = z.looseObject({
  name: z.string().min(1),
  description: z.string().optional(),
  parameters: z.record(z.string(), z.unknown()).optional(),
  strict: z.boolean().nullish(),
});

const toolSchema = z.union([
  z.looseObject({ type: z.literal('function'), function: functionDefinitionSchema }),
  z.looseObject({ type: z.literal('custom'), custom: z.looseObject({ name: z.string() }) }),
]);

const toolChoiceSchema = z.union([
  z.enum(['none', 'auto', 'required']),
  z.looseObject({ type: z.literal('function'), function: z.looseObject({ name: z.string() }) }),
  z.looseObject({ type: z.literal('allowed_tools'), allowed_tools: z.looseObject({}) }),
  z.looseObject({ type: z.literal('custom'), custom: z.looseObject({ name: z.string() }) }),
]);

const responseFormatSchema = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('text') }),
  z.looseObject({ type: z.literal('json_object') }),
  z.looseObject({
    type: z.literal('json_schema'),
    json_schema: z.looseObject({
      name: z.string().min(1),
      description: z.string().optional(),
      schema: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().nullish(),
    }),
  }),
]);

const commonFields = {
  model: z.string().min(1),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  seed: anyInteger.nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z
    .looseObject({ include_usage: z.boolean().optional(), include_obfuscation: z.boolean().optional() })
    .nullish(),
  user: z.string().nullish(),
  // `batch` is Gravity's: what the Batch API's lines run at, also selectable directly by keys allowed it.
  service_tier: z.enum(serviceTiers).nullish(),
  n: integer().min(1).max(128).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  logit_bias: z.record(z.string(), z.number().min(-100).max(100)).nullish(),
  // Extras vLLM and llama.cpp's server accept; typed here because in-process engines read them.
  top_k: integer().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  repetition_penalty: z.number().gt(0).nullish(),
};

export const chatCompletionRequestSchema = z.looseObject({
  ...commonFields,
  messages: z.array(messageSchema).min(1),
  max_tokens: positiveInteger.nullish(),
  max_completion_tokens: positiveInteger.nullish(),
  tools: z.array(toolSchema).nullish(),
  tool_choice: toolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  functions: z.array(functionDefinitionSchema).nullish(),
  function_call: z.union([z.enum(['none', 'auto']), z.looseObject({ name: z.string() })]).nullish(),
  response_format: responseFormatSchema.nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: integer().min(0).max(20).nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  store: z.boolean().nullish(),
  modalities: z.array(z.enum(['text', 'audio'])).nullish(),
  audio: z.looseObject({ voice: z.unknown(), format: z.string() }).nullish(),
  prediction: z.looseObject({ type: z.literal('content'), content: z.unknown() }).nullish(),
  reasoning_effort: z.string().nullish(),
  verbosity: z.enum(['low', 'medium', 'high']).nullish(),
  web_search_options: z.looseObject({}).nullish(),
  prompt_cache_key: z.string().nullish(),
  safety_identifier: z.string().nullish(),
});

export const completionRequestSchema = z.looseObject({
  ...commonFields,
  prompt: z.union([
    z.string(),
    z.array(z.string()).min(1),
    z.array(integer().min(0)).min(1),
    z.array(z.array(integer().min(0)).min(1)).min(1),
  ]),
  max_tokens: positiveInteger.nullish(),
  logprobs: integer().min(0).max(5).nullish(),
  echo: z.boolean().nullish(),
  suffix: z.string().nullish(),
  best_of: integer().min(1).max(20).nullish(),
});

/** Parameters the schemas above model: every other top-level field is a vendor extra, carried. */
const modelledChatFields = new Set(Object.keys(chatCompletionRequestSchema.shape));
const modelledCompletionFields = new Set(Object.keys(completionRequestSchema.shape));
const chatRequired = ['model', 'messages'];
const completionRequired = ['model', 'prompt'];
/**
 * Fields Gravity owns and sets itself toward an engine: never carried. (`stream_options` is carried: an
 * upstream gets the client's, with `include_usage` forced on.)
 */
const gravityOwnedFields = new Set(['model', 'stream', 'service_tier']);

// ---------------------------------------------------------------------------------------------------
// Error wording: OpenAI's, with the parameter's path; never a validator's internal code.

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

/** How a value reads in an error: "a string", "an integer", "null" … */
function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return 'a string';
    case 'boolean':
      return 'a boolean';
    case 'number':
      if (!Number.isFinite(value)) return 'a number out of range';
      return Number.isInteger(value) ? 'an integer' : 'a decimal';
    case 'object':
      return 'an object';
    default:
      return typeof value;
  }
}

const expectedNames: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'a boolean',
  array: 'an array',
  object: 'an object',
  record: 'an object',
  null: 'null',
};

function expectedName(expected: string): string {
  return expectedNames[expected] ?? expected;
}

/** What the branches of a union expected at the union's own path ("a string or an array"). */
function unionExpectation(issue: z.core.$ZodIssueInvalidUnion): string | null {
  const names = new Set<string>();
  for (const branch of issue.errors) {
    for (const inner of branch) {
      if (inner.path.length > 0) continue;
      if (inner.code === 'invalid_type') names.add(expectedName(inner.expected));
    }
  }
  return names.size === 0 ? null : [...names].join(' or ');
}

/**
 * For a value matching no branch of a union, the most useful report is the branch that got furthest:
 * `messages[1].content[0].image_url.url` beats "no union branch matched".
 */
function deepestIssue(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return issue;
  let best: z.core.$ZodIssue | undefined;
  for (const branch of issue.errors) {
    for (const candidate of branch) {
      if (!best || candidate.path.length > best.path.length) best = candidate;
    }
  }
  if (!best || best.path.length === 0) return issue;
  const resolved = deepestIssue(best);
  return { ...resolved, path: [...issue.path, ...resolved.path] } as z.core.$ZodIssue;
}

function boundMessage(
  param: string,
  issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig,
  direction: 'below' | 'above',
): GravityError {
  const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
  const inclusive = issue.inclusive !== false;
  const comparison = direction === 'below' ? (inclusive ? '>=' : '>') : inclusive ? '<=' : '<';
  if (issue.origin === 'array' || issue.origin === 'string') {
    const unit = issue.origin === 'array' ? 'array' : 'string';
    const measure = issue.origin === 'array' ? 'length' : 'length';
    const input = issue.input as { length?: number } | undefined;
    const got = input?.length ?? '?';
    return errors.invalidRequest(
      `Invalid '${param}': ${unit} too ${direction === 'below' ? 'short' : 'long'}. Expected a ${unit} with ${direction === 'below' ? 'minimum' : 'maximum'} ${measure} ${String(bound)}, but got ${unit === 'array' ? `an array with length ${got}` : `a string with length ${got}`} instead.`,
      param,
      direction === 'below'
        ? got === 0
          ? 'empty_array'
          : `${unit}_below_min_length`
        : `${unit}_above_max_length`,
    );
  }
  const integer = Number.isInteger(issue.input);
  return errors.invalidRequest(
    `Invalid '${param}': ${integer ? 'integer' : 'decimal'} ${direction} ${direction === 'below' ? 'minimum' : 'maximum'} value. Expected a value ${comparison} ${String(bound)}, but got ${String(issue.input)} instead.`,
    param,
    `${integer ? 'integer' : 'decimal'}_${direction}_${direction === 'below' ? 'min' : 'max'}_value`,
  );
}

export function describeZodError(error: z.ZodError): GravityError {
  const first = error.issues[0];
  if (!first) return errors.invalidRequest('Invalid request body.');
  const issue = deepestIssue(first);
  const param = formatPath(issue.path);
  const where = param || 'body';
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined)
        return errors.invalidRequest(
          `Missing required parameter: '${param}'.`,
          param,
          'missing_required_parameter',
        );
      return errors.invalidRequest(
        `Invalid type for '${where}': expected ${expectedName(issue.message === integerMarker ? 'int' : issue.expected)}, but got ${describeValue(issue.input)} instead.`,
        param || null,
        'invalid_type',
      );
    case 'too_small':
      return boundMessage(where, issue, 'below');
    case 'too_big':
      return boundMessage(where, issue, 'above');
    case 'invalid_value':
      return errors.invalidRequest(
        `Invalid value for '${where}': ${JSON.stringify(issue.input)}. Supported values are: ${issue.values.map((value) => JSON.stringify(value)).join(', ')}.`,
        param || null,
        'invalid_value',
      );
    case 'invalid_union': {
      const input = issue.input;
      if ((issue as { note?: string }).note === 'No matching discriminator') {
        // zod puts the discriminator's key at the end of the path, and the whole object in `input`.
        const key = String(issue.path.at(-1) ?? 'type');
        const value =
          input !== null && typeof input === 'object' ? (input as Record<string, unknown>)[key] : input;
        const path = param;
        if (value === undefined)
          return errors.invalidRequest(
            `Missing required parameter: '${path}'.`,
            path,
            'missing_required_parameter',
          );
        return errors.invalidRequest(
          `Invalid value for '${path}': ${JSON.stringify(value)} is not one of the values the API defines.`,
          path,
          'invalid_value',
        );
      }
      const expected = unionExpectation(issue);
      if (input === undefined)
        return errors.invalidRequest(
          `Missing required parameter: '${param}'.`,
          param,
          'missing_required_parameter',
        );
      return errors.invalidRequest(
        expected
          ? `Invalid type for '${where}': expected ${expected}, but got ${describeValue(input)} instead.`
          : `Invalid value for '${where}': ${describeValue(input)} matches none of the shapes the API defines.`,
        param || null,
        expected ? 'invalid_type' : 'invalid_value',
      );
    }
    case 'custom': {
      const expected = (issue.params as { expected?: string } | undefined)?.expected;
      if (expected)
        return errors.invalidRequest(
          `Invalid type for '${where}': expected ${expectedName(expected)}, but got ${describeValue(issue.input)} instead.`,
          param || null,
          'invalid_type',
        );
      return errors.invalidRequest(
        `Invalid value for '${where}': ${JSON.stringify(issue.input)}.`,
        param || null,
        'invalid_value',
      );
    }
    default:
      return errors.invalidRequest(`Invalid value for '${where}'.`, param || null, 'invalid_value');
  }
}

// ---------------------------------------------------------------------------------------------------

/** Validated request plus what the HTTP layer needs to shape the response. */
export interface ParsedRequest {
  generation: Omit<GenerationRequest, 'requestId'>;
  stream: boolean;
  includeUsage: boolean;
  serviceTier: ServiceTier;
}

function asObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw errors.invalidRequest('The request body must be a JSON object.');
  }
  return body as Record<string, unknown>;
}

/**
 * The client's body less the fields Gravity owns (`owned`; for chat, completions and embeddings the
 * model, stream and service tier): what an upstream receives as sent.
 */
export function carriedFields(
  body: Record<string, unknown>,
  owned: ReadonlySet<string> = gravityOwnedFields,
): Record<string, unknown> {
  const carried: Record<string, unknown> = {};
  for (const key in body) if (!owned.has(key)) setOwnField(carried, key, body[key]);
  return carried;
}

/**
 * Copies one client field onto an object Gravity builds. A body from JSON.parse may hold `__proto__` as
 * an own key; a plain assignment of it would set the copy's prototype (the client's object then read
 * through every field lookup), so that key is defined as a data field, as it was sent.
 */
export function setOwnField(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__')
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}

function partsText(parts: ReadonlyArray<{ type: string; text?: unknown; refusal?: unknown }>): string {
  let text = '';
  for (const part of parts) {
    if (part.type === 'text' && typeof part.text === 'string') text += part.text;
    else if (part.type === 'refusal' && typeof part.refusal === 'string') text += part.refusal;
  }
  return text;
}

type ParsedChat = z.infer<typeof chatCompletionRequestSchema>;
type ParsedCommon = z.infer<z.ZodObject<typeof commonFields>>;

function common(parsed: ParsedCommon) {
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

/** Sampling options and their features, common to both endpoints. */
function samplingOptions(parsed: ParsedCommon, features: Set<string>) {
  const n = parsed.n ?? 1;
  if (n > 1) features.add(requestFeatures.n);
  const presencePenalty = parsed.presence_penalty ?? 0;
  if (presencePenalty !== 0) features.add(requestFeatures.presencePenalty);
  const frequencyPenalty = parsed.frequency_penalty ?? 0;
  if (frequencyPenalty !== 0) features.add(requestFeatures.frequencyPenalty);
  const logitBias = parsed.logit_bias ?? {};
  for (const key of Object.keys(logitBias)) {
    if (!/^\d+$/.test(key))
      throw errors.invalidRequest(
        `Invalid key in 'logit_bias': ${JSON.stringify(key)}. Keys are token ids.`,
        'logit_bias',
        'invalid_value',
      );
  }
  if (Object.keys(logitBias).length > 0) features.add(requestFeatures.logitBias);
  if (parsed.top_k != null) features.add(requestFeatures.topK);
  if (parsed.min_p != null) features.add(requestFeatures.minP);
  if (parsed.repetition_penalty != null) features.add(requestFeatures.repetitionPenalty);
  return {
    n,
    presencePenalty,
    frequencyPenalty,
    logitBias,
    topK: parsed.top_k ?? null,
    minP: parsed.min_p ?? null,
    repetitionPenalty: parsed.repetition_penalty ?? null,
  };
}

/** Top-level fields no schema models: vendor extras, each a feature of its own. */
function addExtras(
  body: Record<string, unknown>,
  modelled: ReadonlySet<string>,
  features: Set<string>,
): void {
  for (const key in body) if (!modelled.has(key) && body[key] !== undefined) features.add(key);
}

function chatMessages(parsed: ParsedChat, features: Set<string>): ChatMessage[] {
  return parsed.messages.map((message): ChatMessage => {
    switch (message.role) {
      case 'user': {
        const content = message.content;
        if (typeof content === 'string') return { role: 'user', content, name: message.name };
        for (const part of content) {
          if (part.type === 'image_url') features.add(requestFeatures.imageInput);
          else if (part.type === 'input_audio') features.add(requestFeatures.audioInput);
          else if (part.type === 'file') features.add(requestFeatures.fileInput);
          else if (part.type !== 'text') features.add(part.type);
        }
        return { role: 'user', content: partsText(content), name: message.name };
      }
      case 'assistant': {
        const content = message.content;
        const text = content == null ? '' : typeof content === 'string' ? content : partsText(content);
        const toolCalls = (message.tool_calls ?? []).map((call) =>
          call.type === 'function'
            ? { id: call.id, name: call.function.name, arguments: call.function.arguments }
            : { id: call.id, name: call.custom.name, arguments: call.custom.input },
        );
        if (message.function_call)
          toolCalls.push({
            id: '',
            name: message.function_call.name,
            arguments: message.function_call.arguments,
          });
        return {
          role: 'assistant',
          content: text,
          name: message.name,
          ...(toolCalls.length > 0 ? { toolCalls } : {}),
        };
      }
      case 'tool': {
        const content = message.content;
        return {
          role: 'tool',
          content: typeof content === 'string' ? content : partsText(content),
          toolCallId: message.tool_call_id,
        };
      }
      case 'function':
        // The deprecated function-calling API's result message: a tool result by another name.
        return { role: 'tool', content: message.content ?? '', name: message.name };
      default: {
        const content = message.content;
        return {
          role: message.role,
          content: typeof content === 'string' ? content : partsText(content),
          name: message.name,
        };
      }
    }
  });
}

function toolOptions(
  parsed: ParsedChat,
  features: Set<string>,
): Pick<GenerationOptions, 'tools' | 'toolChoice' | 'parallelToolCalls'> {
  const tools: ToolDefinition[] = [];
  for (const tool of parsed.tools ?? []) {
    if (tool.type === 'function')
      tools.push({
        name: tool.function.name,
        description: tool.function.description,
        parameters: tool.function.parameters,
      });
    else features.add(requestFeatures.customTools);
  }
  const choice = parsed.tool_choice;
  if (choice != null && (parsed.tools ?? []).length === 0)
    throw errors.invalidRequest(
      "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
      'tool_choice',
      'invalid_value',
    );
  let toolChoice: ToolChoice = 'auto';
  if (typeof choice === 'string') toolChoice = choice;
  else if (choice?.type === 'function') {
    const name = choice.function.name;
    if (!tools.some((tool) => tool.name === name))
      throw errors.invalidRequest(
        `Invalid value for 'tool_choice': function '${name}' is not among 'tools'.`,
        'tool_choice',
        'invalid_value',
      );
    toolChoice = { name };
  } else if (choice != null) features.add(requestFeatures.toolChoice);
  if ((parsed.tools ?? []).length > 0 && toolChoice !== 'none') features.add(requestFeatures.tools);
  if ((parsed.functions ?? []).length > 0 && parsed.function_call !== 'none')
    features.add(requestFeatures.functions);
  return { tools, toolChoice, parallelToolCalls: parsed.parallel_tool_calls ?? true };
}

function responseFormatOption(parsed: ParsedChat, features: Set<string>): ResponseFormat {
  const format = parsed.response_format;
  if (!format || format.type === 'text') return { type: 'text' };
  features.add(requestFeatures.responseFormat);
  if (format.type === 'json_object') return { type: 'json_object' };
  return {
    type: 'json_schema',
    name: format.json_schema.name,
    schema: format.json_schema.schema ?? {},
    strict: format.json_schema.strict ?? false,
  };
}

/** Output modes and OpenAI-only behaviour an engine must serve to honour. */
function chatOnlyFeatures(parsed: ParsedChat, features: Set<string>): void {
  if (parsed.audio != null) features.add(requestFeatures.audioOutput);
  if (parsed.modalities?.includes('audio')) features.add(requestFeatures.modalities);
  if (parsed.prediction != null) features.add(requestFeatures.prediction);
  if (parsed.reasoning_effort != null) features.add(requestFeatures.reasoningEffort);
  if (parsed.verbosity != null) features.add(requestFeatures.verbosity);
  if (parsed.web_search_options != null) features.add(requestFeatures.webSearch);
  if (parsed.store === true) features.add(requestFeatures.store);
}

const isInteger = (value: unknown) => Number.isSafeInteger(value);
const isTextMessage = (message: unknown): boolean => {
  if (message === null || typeof message !== 'object') return false;
  let keys = 0;
  for (const key in message) {
    keys++;
    if (key !== 'role' && key !== 'content') return false;
  }
  const { role, content } = message as { role?: unknown; content?: unknown };
  return (
    keys === 2 &&
    typeof content === 'string' &&
    (role === 'user' || role === 'system' || role === 'assistant' || role === 'developer')
  );
};

/**
 * Plain checks that accept the common value of a hot field without calling zod (each zod call costs about
 * a microsecond). They only ever say "valid"; a value they do not accept is judged, and worded, by zod.
 */
export const quickChecks: Partial<Record<string, (value: unknown) => boolean>> = {
  model: (value) => typeof value === 'string' && value.length > 0,
  stream: (value) => typeof value === 'boolean' || value === null,
  max_tokens: (value) => isInteger(value) && (value as number) >= 1,
  max_completion_tokens: (value) => isInteger(value) && (value as number) >= 1,
  temperature: (value) => typeof value === 'number' && value >= 0 && value <= 2,
  top_p: (value) => typeof value === 'number' && value >= 0 && value <= 1,
  user: (value) => typeof value === 'string',
  prompt: (value) => typeof value === 'string',
  messages: (value) => Array.isArray(value) && value.length > 0 && value.every(isTextMessage),
};

/**
 * Validates a request body against an object schema field by field, for the fields the body has: the
 * cost follows what a client sent, not the forty-odd optional parameters the API defines (a zod object
 * walks its whole shape: ~3x slower on a plain chat request). Values are validated, never transformed,
 * so the body itself is the result. Unknown fields are carried (the schemas are loose).
 */
function parseWith<Shape extends z.core.$ZodLooseShape>(
  schema: z.ZodObject<Shape, z.core.$loose>,
  required: readonly string[],
  object: Record<string, unknown>,
): z.infer<typeof schema> {
  const shape = schema.shape as Record<string, z.ZodType>;
  for (const key of required) {
    if (object[key] === undefined)
      throw errors.invalidRequest(`Missing required parameter: '${key}'.`, key, 'missing_required_parameter');
  }
  for (const key in object) {
    // Own keys only: a client's `__proto__`, `constructor` or `toString` is a vendor extra, not a
    // lookup that reaches Object.prototype (whose members are no schemas and no checks).
    if (!Object.hasOwn(shape, key)) continue;
    const field = shape[key] as z.ZodType;
    // Hot path: the common values pass a plain check; only the rest (and every error) go to zod.
    const quick = Object.hasOwn(quickChecks, key) ? quickChecks[key] : undefined;
    if (quick?.(object[key])) continue;
    // `reportInput`: zod 4 leaves the offending value out of issues by default, and without it a wrong
    // type cannot be told from a missing parameter.
    const result = field.safeParse(object[key], { reportInput: true });
    if (!result.success) {
      const issues = result.error.issues.map((issue) => ({ ...issue, path: [key, ...issue.path] }));
      throw describeZodError(new z.ZodError(issues as z.core.$ZodIssue[]));
    }
  }
  return object as z.infer<typeof schema>;
}

export function parseChatCompletionRequest(body: unknown): ParsedRequest {
  const object = asObject(body);
  const parsed = parseWith(chatCompletionRequestSchema, chatRequired, object);
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
  if (parsed.top_logprobs != null && parsed.top_logprobs > 0 && parsed.logprobs !== true)
    throw errors.invalidRequest(
      "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
      'top_logprobs',
      'invalid_value',
    );
  const features = new Set<string>();
  const messages = chatMessages(parsed, features);
  const options: GenerationOptions = {
    ...defaultGenerationOptions,
    ...toolOptions(parsed, features),
    responseFormat: responseFormatOption(parsed, features),
    logprobs: parsed.logprobs ?? false,
    topLogprobs: parsed.top_logprobs ?? 0,
    ...samplingOptions(parsed, features),
  };
  if (options.logprobs) features.add(requestFeatures.logprobs);
  chatOnlyFeatures(parsed, features);
  addExtras(object, modelledChatFields, features);
  return {
    generation: {
      ...common(parsed),
      input: { kind: 'chat', messages },
      maxTokens: parsed.max_completion_tokens ?? parsed.max_tokens ?? null,
      options,
      features: [...features],
      carried: carriedFields(object),
    },
    stream: parsed.stream ?? false,
    includeUsage: parsed.stream_options?.include_usage ?? false,
    serviceTier: parsed.service_tier ?? 'auto',
  };
}

export function parseCompletionRequest(body: unknown): ParsedRequest {
  const object = asObject(body);
  const parsed = parseWith(completionRequestSchema, completionRequired, object);
  const features = new Set<string>();
  const prompt = parsed.prompt;
  let text: string;
  let prompts: Array<string | number[]> | undefined;
  if (typeof prompt === 'string') text = prompt;
  else if (typeof prompt[0] === 'string') {
    const strings = prompt as string[];
    text = strings.join('\n');
    if (strings.length > 1) {
      features.add(requestFeatures.promptArray);
      prompts = strings;
    } else text = strings[0] as string;
  } else if (typeof prompt[0] === 'number') {
    features.add(requestFeatures.tokenPrompt);
    prompts = [prompt as number[]];
    text = '';
  } else {
    const arrays = prompt as number[][];
    features.add(requestFeatures.tokenPrompt);
    if (arrays.length > 1) features.add(requestFeatures.promptArray);
    prompts = arrays;
    text = '';
  }
  if (parsed.logprobs != null) features.add(requestFeatures.logprobs);
  if (parsed.echo === true) features.add(requestFeatures.echo);
  if (parsed.suffix != null) features.add(requestFeatures.suffix);
  if (parsed.best_of != null && parsed.best_of > 1) features.add(requestFeatures.bestOf);
  const options: GenerationOptions = {
    ...defaultGenerationOptions,
    logprobs: parsed.logprobs != null,
    topLogprobs: parsed.logprobs ?? 0,
    ...samplingOptions(parsed, features),
  };
  addExtras(object, modelledCompletionFields, features);
  return {
    generation: {
      ...common(parsed),
      input: { kind: 'completion', prompt: text, ...(prompts ? { prompts } : {}) },
      // The legacy completions API defaults to 16 tokens.
      maxTokens: parsed.max_tokens ?? 16,
      options,
      features: [...features],
      carried: carriedFields(object),
    },
    stream: parsed.stream ?? false,
    includeUsage: parsed.stream_options?.include_usage ?? false,
    serviceTier: parsed.service_tier ?? 'auto',
  };
}

// ---------------------------------------------------------------------------------------------------
// Embeddings (`/v1/embeddings`).

/** At most this many inputs in one embeddings request, OpenAI's limit. */
export const maxEmbeddingInputs = 2048;

/**
 * The embeddings parameters. `input` is checked by hand (embeddingInputs) so each wrong shape gets its
 * own message; the schema names it so it counts as modelled, not as a vendor extra.
 */
export const embeddingRequestSchema = z.looseObject({
  model: z.string().min(1),
  input: z.unknown(),
  encoding_format: z.enum(['float', 'base64']).nullish(),
  dimensions: positiveInteger.nullish(),
  user: z.string().nullish(),
  service_tier: z.enum(serviceTiers).nullish(),
});
const modelledEmbeddingFields = new Set(Object.keys(embeddingRequestSchema.shape));
const embeddingRequired = ['model', 'input'];

const isTokenId = (value: unknown): boolean => Number.isSafeInteger(value) && (value as number) >= 0;

function invalidInput(message: string): GravityError {
  return errors.invalidRequest(message, 'input', 'invalid_value');
}

/**
 * `input` as OpenAI accepts it: a string, an array of strings, an array of token ids (one input), or
 * an array of token-id arrays. Empty strings and arrays are refused, as OpenAI refuses them (an empty
 * input has no embedding); so are more than `maxEmbeddingInputs` inputs.
 */
function embeddingInputs(input: unknown): Array<string | number[]> {
  const shapes =
    "'input' must be a string, an array of strings, an array of token ids or an array of token-id arrays.";
  if (typeof input === 'string') {
    if (input.length === 0) throw invalidInput("Invalid value for 'input': it must not be an empty string.");
    return [input];
  }
  if (!Array.isArray(input))
    throw invalidInput(`Invalid type for 'input': ${describeValue(input)}. ${shapes}`);
  if (input.length === 0) throw invalidInput("Invalid value for 'input': it must not be an empty array.");
  const first = input[0];
  if (typeof first === 'number') {
    for (const [index, token] of input.entries())
      if (!isTokenId(token))
        throw invalidInput(
          `Invalid value for 'input[${index}]': ${JSON.stringify(token)} is not a token id. ${shapes}`,
        );
    return [input as number[]];
  }
  if (input.length > maxEmbeddingInputs)
    throw invalidInput(
      `Invalid value for 'input': ${input.length} inputs, more than the ${maxEmbeddingInputs} allowed in one request.`,
    );
  if (typeof first === 'string') {
    for (const [index, item] of input.entries()) {
      if (typeof item !== 'string')
        throw invalidInput(`Invalid type for 'input[${index}]': ${describeValue(item)}. ${shapes}`);
      if (item.length === 0)
        throw invalidInput(`Invalid value for 'input[${index}]': it must not be an empty string.`);
    }
    return input as string[];
  }
  for (const [index, item] of input.entries()) {
    if (!Array.isArray(item))
      throw invalidInput(`Invalid type for 'input[${index}]': ${describeValue(item)}. ${shapes}`);
    if (item.length === 0)
      throw invalidInput(`Invalid value for 'input[${index}]': it must not be an empty array.`);
    for (const [position, token] of item.entries())
      if (!isTokenId(token))
        throw invalidInput(
          `Invalid value for 'input[${index}][${position}]': ${JSON.stringify(token)} is not a token id. ${shapes}`,
        );
  }
  return input as number[][];
}

/**
 * An embeddings request. Every one lists the `embeddings` feature (engines that cannot embed are kept
 * off it) and `dimensions` when given; fields the schema does not model are carried to upstreams and,
 * like on the other endpoints, are features an in-process engine refuses by name.
 */
export function parseEmbeddingRequest(body: unknown): ParsedRequest {
  const object = asObject(body);
  const parsed = parseWith(embeddingRequestSchema, embeddingRequired, object);
  const inputs = embeddingInputs(parsed.input);
  const features = new Set<string>([requestFeatures.embeddings]);
  if (parsed.dimensions != null) features.add(requestFeatures.dimensions);
  addExtras(object, modelledEmbeddingFields, features);
  return {
    generation: {
      model: parsed.model,
      input: {
        kind: 'embedding',
        inputs,
        encodingFormat: parsed.encoding_format ?? 'float',
        dimensions: parsed.dimensions ?? null,
      },
      // Nothing is generated: admission reserves the inputs' tokens only, routing sizes the prompt alone.
      maxTokens: 0,
      temperature: 1,
      topP: 1,
      seed: null,
      stop: [],
      user: parsed.user ?? null,
      features: [...features],
      carried: carriedFields(object),
    },
    stream: false,
    includeUsage: false,
    serviceTier: parsed.service_tier ?? 'auto',
  };
}
