import { z } from 'zod';
import {
  carriedFields,
  describeZodError,
  type ParsedRequest,
  parseChatCompletionRequest,
  setOwnField,
} from '../api/request-schemas.js';
import { errors, type GravityError } from '../core/errors.js';
import { requestFeatures, responsesFeatures } from '../core/request-features.js';
import { serviceTiers } from '../core/service-tiers.js';

/**
 * `POST /v1/responses` as Gravity serves it: the body is validated strictly where Gravity reads it, then
 * translated onto a chat completions body and parsed by the chat parser, so the request meets the same
 * features, admission, routing and engines as a chat request. The translated body is also what an
 * upstream receives (`carried`), so an OpenAI-compatible server without `/v1/responses` serves it on
 * its chat endpoint.
 *
 * What chat has no shape for (built-in tools, `max_tool_calls`, input items such as
 * `computer_call_output`, `include` values naming tool output) is not refused here: it is listed as a
 * request feature (`responsesFeatures`), left out of the chat translation, and sent as written in
 * `responsesBody`. Only an engine that serves `/v1/responses` natively serves those features; routing
 * and the engines refuse them elsewhere with a 400 naming the parameter.
 */

const integerMessage = 'gravity:integer';
const textSchema = z.string();

/** A content part of an input message (`input_text`, `input_image`, `input_file`) or a replayed output. */
const contentPartSchema = z.looseObject({ type: z.string() }).superRefine((part, context) => {
  const shape = Object.hasOwn(contentPartShapes, part.type) ? contentPartShapes[part.type] : undefined;
  if (!shape) {
    context.addIssue({
      code: 'custom',
      message: `unsupported content part '${part.type}'`,
      path: ['type'],
      input: part.type,
    });
    return;
  }
  const result = shape.safeParse(part, { reportInput: true });
  if (!result.success) for (const issue of result.error.issues) context.addIssue(issue as never);
});

const contentPartShapes: Record<string, z.ZodType> = {
  input_text: z.looseObject({ type: z.literal('input_text'), text: textSchema }),
  output_text: z.looseObject({ type: z.literal('output_text'), text: textSchema }),
  refusal: z.looseObject({ type: z.literal('refusal'), refusal: textSchema }),
  input_image: z.looseObject({
    type: z.literal('input_image'),
    image_url: z.string().nullish(),
    file_id: z.string().nullish(),
    detail: z.enum(['auto', 'low', 'high']).nullish(),
  }),
  input_file: z.looseObject({
    type: z.literal('input_file'),
    file_data: z.string().nullish(),
    file_id: z.string().nullish(),
    filename: z.string().nullish(),
    file_url: z.string().nullish(),
  }),
};

const messageItemSchema = z.looseObject({
  type: z.literal('message').optional(),
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: z.union([z.string(), z.array(contentPartSchema)]),
  id: z.string().nullish(),
  status: z.string().nullish(),
});

const functionCallItemSchema = z.looseObject({
  type: z.literal('function_call'),
  call_id: z.string().min(1),
  name: z.string().min(1),
  arguments: z.string(),
  id: z.string().nullish(),
  status: z.string().nullish(),
});

const functionCallOutputItemSchema = z.looseObject({
  type: z.literal('function_call_output'),
  call_id: z.string().min(1),
  output: z.union([z.string(), z.array(contentPartSchema)]),
  id: z.string().nullish(),
  status: z.string().nullish(),
});

/** Reasoning items come back from clients that replay a whole output; chat engines read none of it. */
const reasoningItemSchema = z.looseObject({ type: z.literal('reasoning') });

const itemSchemas: Record<string, z.ZodType> = {
  message: messageItemSchema,
  function_call: functionCallItemSchema,
  function_call_output: functionCallOutputItemSchema,
  reasoning: reasoningItemSchema,
};

/** The schema of an item type; a type named like an Object.prototype member (`constructor`) has none. */
function itemSchemaOf(type: string): z.ZodType | undefined {
  return Object.hasOwn(itemSchemas, type) ? itemSchemas[type] : undefined;
}

/**
 * One input item. Types chat has no shape for are carried as sent (a request feature, `input.<type>`):
 * Gravity reads nothing of them, and only an upstream's own /v1/responses gets them.
 */
const inputItemSchema = z.looseObject({ type: z.string().optional() }).superRefine((item, context) => {
  const shape = itemSchemaOf(item.type ?? 'message');
  if (!shape) return;
  const result = shape.safeParse(item, { reportInput: true });
  if (!result.success) for (const issue of result.error.issues) context.addIssue(issue as never);
});

const functionToolSchema = z.looseObject({
  type: z.literal('function'),
  name: z.string().min(1),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});

const toolChoiceSchema = z.union([
  z.enum(['none', 'auto', 'required']),
  z.looseObject({ type: z.literal('function'), name: z.string().min(1) }),
  z.looseObject({
    type: z.literal('allowed_tools'),
    mode: z.enum(['auto', 'required']),
    tools: z.array(z.looseObject({ type: z.string() })),
  }),
  z.looseObject({ type: z.string() }),
]);

const textFormatSchema = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('text') }),
  z.looseObject({ type: z.literal('json_object') }),
  z.looseObject({
    type: z.literal('json_schema'),
    name: z.string().min(1),
    schema: z.record(z.string(), z.unknown()),
    description: z.string().nullish(),
    strict: z.boolean().nullish(),
  }),
]);

/** The parameters Gravity reads or answers for; every other top-level field is carried to the chat body. */
export const responsesRequestSchema = z.looseObject({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(inputItemSchema)]).optional(),
  instructions: z.string().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_obfuscation: z.boolean().optional() }).nullish(),
  tools: z.array(z.looseObject({ type: z.string() })).nullish(),
  tool_choice: toolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  text: z
    .looseObject({
      format: textFormatSchema.nullish(),
      verbosity: z.enum(['low', 'medium', 'high']).nullish(),
    })
    .nullish(),
  max_output_tokens: z.int({ message: integerMessage }).min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_logprobs: z.int({ message: integerMessage }).min(0).max(20).nullish(),
  service_tier: z.enum(serviceTiers).nullish(),
  // OpenAI's bounds: 16 pairs, keys up to 64 characters, values up to 512.
  metadata: z
    .record(z.string().max(64), z.string().max(512))
    .refine((pairs) => Object.keys(pairs).length <= 16, { message: 'at most 16 metadata pairs' })
    .nullish(),
  user: z.string().nullish(),
  safety_identifier: z.string().nullish(),
  prompt_cache_key: z.string().nullish(),
  store: z.boolean().nullish(),
  previous_response_id: z.string().min(1).nullish(),
  truncation: z.enum(['auto', 'disabled']).nullish(),
  include: z.array(z.string()).nullish(),
  reasoning: z
    .looseObject({
      effort: z.string().nullish(),
      summary: z.string().nullish(),
      generate_summary: z.unknown().optional(),
    })
    .nullish(),
  background: z.boolean().nullish(),
  conversation: z.unknown().optional(),
  prompt: z.unknown().optional(),
  max_tool_calls: z.int({ message: integerMessage }).min(0).nullish(),
});

type ResponsesBody = z.infer<typeof responsesRequestSchema>;

/**
 * Responses fields that never reach the chat body as they are: translated, Gravity's own, or refused.
 * Every other field (`seed`, `stop`, vendor sampling extras) is carried to the chat body as sent.
 */
const translatedFields: ReadonlySet<string> = new Set(Object.keys(responsesRequestSchema.shape));

/**
 * Includes Gravity can honour on every engine. `reasoning.encrypted_content`: Gravity's own engines
 * produce no reasoning items to carry it; an upstream with its own /v1/responses gets it in the body and
 * answers it. Any other value is a request feature (`include.<value>`) only such an upstream serves.
 */
const servedIncludes = new Set(['message.output_text.logprobs', 'reasoning.encrypted_content']);

/** An input item as Gravity stores it (with an id) and lists it under `input_items`. */
export type InputItem = Record<string, unknown> & { type: string; id: string };

/** The request's settings the Response object echoes back. */
export interface ResponseEcho {
  instructions: string | null;
  tools: unknown[];
  toolChoice: unknown;
  parallelToolCalls: boolean;
  text: { format: unknown; verbosity?: unknown };
  temperature: number;
  topP: number;
  maxOutputTokens: number | null;
  metadata: Record<string, string>;
  user: string | null;
  store: boolean;
  previousResponseId: string | null;
  truncation: string;
  topLogprobs: number;
  reasoning: unknown;
  safetyIdentifier: string | null;
  promptCacheKey: string | null;
}

export interface ParsedResponsesRequest extends ParsedRequest {
  echo: ResponseEcho;
  /** This request's own input items, with ids: stored for `input_items` and later continuations. */
  inputItems: InputItem[];
}

/** Earlier turns of a conversation: the items before this request's input, oldest first. */
export type EarlierItems = (previousResponseId: string) => readonly Record<string, unknown>[];

function asObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw errors.invalidRequest('The request body must be a JSON object.');
  return body as Record<string, unknown>;
}

function unsupported(param: string, why: string): GravityError {
  return errors.unsupportedParameter(param, `${why} See docs/openai-compatibility.md (Responses API).`);
}

/**
 * Refuses what no engine serves through Gravity, by the parameter that asks: these need state kept on
 * the upstream side, which Gravity neither owns nor routes by.
 */
function refuseUnserved(body: ResponsesBody): void {
  if (body.background === true)
    throw unsupported(
      'background',
      'is not served: Gravity answers responses in the request that creates them.',
    );
  if (body.conversation != null)
    throw unsupported('conversation', 'is not served: continue a conversation with previous_response_id.');
  if (body.prompt != null) throw unsupported('prompt', 'is not served: Gravity stores no prompt templates.');
  if (body.truncation === 'auto')
    throw unsupported(
      'truncation',
      "'auto' is not served: Gravity does not drop conversation items; an input longer than the context is refused.",
    );
}

/** A `tool_choice` that forces a built-in tool: its type, or null. */
function builtInToolChoice(choice: ResponsesBody['tool_choice']): string | null {
  if (choice == null || typeof choice !== 'object') return null;
  return choice.type === 'function' || choice.type === 'allowed_tools' ? null : choice.type;
}

/**
 * What this request asks that only a native `/v1/responses` serves (request-features.ts
 * `responsesFeatures`), in the order the body names it: the first one an engine cannot serve is the
 * one its 400 names.
 */
function responsesNativeFeaturesOf(body: ResponsesBody, inputItems: readonly InputItem[]): string[] {
  const features = new Set<string>();
  for (const tool of body.tools ?? [])
    if (tool.type !== 'function') features.add(responsesFeatures.builtInTool(tool.type));
  const forced = builtInToolChoice(body.tool_choice);
  if (forced !== null) features.add(responsesFeatures.builtInToolChoice(forced));
  if (body.max_tool_calls != null) features.add(requestFeatures.maxToolCalls);
  for (const item of inputItems)
    if (!itemSchemaOf(item.type)) features.add(responsesFeatures.inputItem(item.type));
  for (const value of body.include ?? [])
    if (!servedIncludes.has(value)) features.add(responsesFeatures.include(value));
  return [...features];
}

/** Validates a Responses body against the schema above; the first issue is worded as OpenAI words it. */
function validate(object: Record<string, unknown>): ResponsesBody {
  if (object.model === undefined)
    throw errors.invalidRequest(
      "Missing required parameter: 'model'.",
      'model',
      'missing_required_parameter',
    );
  const result = responsesRequestSchema.safeParse(object, { reportInput: true });
  if (!result.success) {
    const issue = result.error.issues[0];
    if (issue?.code === 'custom' && String(issue.message).startsWith('unsupported ')) {
      const path = issue.path
        .map((key) => (typeof key === 'number' ? `[${key}]` : `.${String(key)}`))
        .join('');
      throw unsupported(
        path.replace(/^\./, ''),
        `(${issue.message.replace('unsupported ', '')}) is not served.`,
      );
    }
    throw describeZodError(result.error);
  }
  return result.data;
}

/** `input` as items: a string is one user message. */
function inputAsItems(input: ResponsesBody['input'], idSuffix: string): InputItem[] {
  if (input === undefined) return [];
  const items: Record<string, unknown>[] =
    typeof input === 'string'
      ? [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: input }] }]
      : (input as Record<string, unknown>[]);
  return items.map((item, index) => {
    const type = typeof item.type === 'string' ? item.type : 'message';
    const id = typeof item.id === 'string' ? item.id : `${itemIdPrefix(type)}_${idSuffix}_${index}`;
    const stored: InputItem = { ...item, type, id };
    // OpenAI lists message content as parts, whatever form it was sent in.
    if (type === 'message' && typeof item.content === 'string')
      stored.content = [
        { type: item.role === 'assistant' ? 'output_text' : 'input_text', text: item.content },
      ];
    return stored;
  });
}

function itemIdPrefix(type: string): string {
  if (type === 'function_call') return 'fc';
  if (type === 'function_call_output') return 'fco';
  if (type === 'reasoning') return 'rs';
  return 'msg';
}

type ChatPart = Record<string, unknown>;

/** A content part as a chat content part (the chat parser then reads it like any chat request's). */
function chatPart(part: Record<string, unknown>, path: string): ChatPart {
  switch (part.type) {
    case 'input_text':
    case 'output_text':
      return { type: 'text', text: part.text };
    case 'refusal':
      return { type: 'refusal', refusal: part.refusal };
    case 'input_image': {
      if (typeof part.image_url !== 'string')
        throw unsupported(
          `${path}.file_id`,
          'is not served: send the image as image_url (a URL or a data URL).',
        );
      return {
        type: 'image_url',
        image_url: { url: part.image_url, ...(part.detail ? { detail: part.detail } : {}) },
      };
    }
    default: {
      if (typeof part.file_url === 'string')
        throw unsupported(`${path}.file_url`, 'is not served: send the file as file_data.');
      const file: Record<string, unknown> = {};
      if (typeof part.file_data === 'string') file.file_data = part.file_data;
      if (typeof part.file_id === 'string') file.file_id = part.file_id;
      if (typeof part.filename === 'string') file.filename = part.filename;
      return { type: 'file', file };
    }
  }
}

function textOf(parts: readonly Record<string, unknown>[]): string {
  let text = '';
  for (const part of parts) {
    if (typeof part.text === 'string') text += part.text;
    else if (typeof part.refusal === 'string') text += part.refusal;
  }
  return text;
}

/**
 * Items as chat messages. Consecutive `function_call` items become one assistant message with several
 * tool calls (parallel calls), joined to the assistant message just before them when there is one.
 */
export function chatMessagesOf(
  items: readonly Record<string, unknown>[],
  path = 'input',
): Record<string, unknown>[] {
  const messages: Record<string, unknown>[] = [];
  items.forEach((item, index) => {
    const where = `${path}[${index}]`;
    const type = typeof item.type === 'string' ? item.type : 'message';
    if (type === 'reasoning') return;
    if (type === 'function_call') {
      const call = {
        id: item.call_id,
        type: 'function',
        function: { name: item.name, arguments: item.arguments },
      };
      const last = messages.at(-1);
      if (last?.role === 'assistant') {
        last.tool_calls = [...((last.tool_calls as unknown[] | undefined) ?? []), call];
        if (last.content === '') last.content = null;
      } else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
      return;
    }
    if (type === 'function_call_output') {
      const output = item.output;
      messages.push({
        role: 'tool',
        tool_call_id: item.call_id,
        content: typeof output === 'string' ? output : textOf(output as Record<string, unknown>[]),
      });
      return;
    }
    // Items chat has no shape for (built-in tool calls an upstream served through its own
    // /v1/responses, stored with its output) are left out of the chat translation.
    if (type !== 'message') return;
    const role = item.role as string;
    const content = item.content;
    if (typeof content === 'string') {
      messages.push({ role, content });
      return;
    }
    const parts = (content as Record<string, unknown>[]).map((part, partIndex) =>
      chatPart(part, `${where}.content[${partIndex}]`),
    );
    // Chat defines content parts other than text only for user messages; the others read as their text.
    // Text-only content goes as a string: the plain chat shape every engine and upstream reads.
    if (role === 'user' && parts.some((part) => part.type !== 'text'))
      messages.push({ role, content: parts });
    else messages.push({ role, content: textOf(content as Record<string, unknown>[]) });
  });
  return messages;
}

/** Function tools as chat tools; built-in tools have no chat shape (they are request features). */
function chatTools(tools: ResponsesBody['tools']): unknown[] | undefined {
  const translated: unknown[] = [];
  (tools ?? []).forEach((raw, index) => {
    if (raw.type !== 'function') return;
    const result = functionToolSchema.safeParse(raw, { reportInput: true });
    if (!result.success) {
      const issues = result.error.issues.map((issue) => ({
        ...issue,
        path: ['tools', index, ...issue.path],
      }));
      throw describeZodError(new z.ZodError(issues as z.core.$ZodIssue[]));
    }
    const tool = result.data;
    translated.push({
      type: 'function',
      function: {
        name: tool.name,
        ...(tool.description != null ? { description: tool.description } : {}),
        ...(tool.parameters != null ? { parameters: tool.parameters } : {}),
        ...(tool.strict != null ? { strict: tool.strict } : {}),
      },
    });
  });
  return translated.length > 0 ? translated : undefined;
}

function chatToolChoice(choice: ResponsesBody['tool_choice']): unknown {
  if (choice == null || typeof choice === 'string') return choice ?? undefined;
  if (choice.type === 'function') return { type: 'function', function: { name: choice.name } };
  // A built-in tool's choice: chat has no shape for it (the request lists it as a feature).
  if (choice.type !== 'allowed_tools') return undefined;
  // allowed_tools: chat's shape nests the same fields under `allowed_tools`.
  return { type: 'allowed_tools', allowed_tools: { mode: choice.mode, tools: choice.tools } };
}

function chatResponseFormat(format: unknown): unknown {
  if (format == null) return undefined;
  const typed = format as {
    type: string;
    name?: string;
    schema?: unknown;
    description?: unknown;
    strict?: unknown;
  };
  if (typed.type !== 'json_schema') return { type: typed.type };
  return {
    type: 'json_schema',
    json_schema: {
      name: typed.name,
      schema: typed.schema,
      ...(typed.description != null ? { description: typed.description } : {}),
      ...(typed.strict != null ? { strict: typed.strict } : {}),
    },
  };
}

/** Fields Gravity owns toward an upstream that serves `/v1/responses` (it sets model and stream itself). */
const gravityOwnedResponsesFields = new Set([
  'model',
  'stream',
  'service_tier',
  'previous_response_id',
  'store',
]);

/**
 * The body for an upstream that serves `/v1/responses` itself: the client's body as sent, with the
 * earlier turns of `previous_response_id` expanded into `input` (Gravity keeps the conversation) and
 * `store: false` (nothing is kept upstream), each earlier item as earlierItemForUpstream says.
 */
function upstreamResponsesBody(
  object: Record<string, unknown>,
  input: ResponsesBody['input'],
  earlier: readonly Record<string, unknown>[],
): Record<string, unknown> {
  const body = carriedFields(object, gravityOwnedResponsesFields);
  if (earlier.length > 0) {
    const current = typeof input === 'string' ? [{ role: 'user', content: input }] : (input ?? []);
    const expanded: Record<string, unknown>[] = [];
    for (const item of earlier) {
      const sent = earlierItemForUpstream(item);
      if (sent !== null) expanded.push(sent);
    }
    body.input = [...expanded, ...current];
  }
  body.store = false;
  return body;
}

/** Item types whose ids Gravity may have issued (input items, its own engines' output). */
const itemsGravityNames = new Set(['message', 'function_call', 'function_call_output']);

/**
 * An earlier item as the upstream gets it.
 * - Messages and function calls and outputs go without id and status: Gravity issued some of those ids,
 *   and the upstream kept nothing of its own (`store: false`), so an id would name nothing there.
 * - A reasoning item keeps its id (the item schema requires one) and goes only with its
 *   `encrypted_content`: the one form an upstream that kept nothing can read back (OpenAI refuses a
 *   reasoning item it can neither find nor decrypt). Without it (the client did not ask for
 *   `include: ["reasoning.encrypted_content"]`) it is left out, as OpenAI advises for stateless
 *   conversations; the messages and calls still go.
 * - Any other item (a built-in tool call such as `web_search_call`) came from the upstream itself: it
 *   goes back as the upstream issued it, its required id and status included.
 */
function earlierItemForUpstream(item: Record<string, unknown>): Record<string, unknown> | null {
  const type = typeof item.type === 'string' ? item.type : 'message';
  if (itemsGravityNames.has(type)) {
    const { id: _id, status: _status, ...rest } = item;
    return rest;
  }
  if (type === 'reasoning') {
    const { status: _status, ...rest } = item;
    return typeof rest.encrypted_content === 'string' ? rest : null;
  }
  return item;
}

/**
 * Parses a `POST /v1/responses` body. `earlierItems` expands `previous_response_id` into the earlier
 * turns (it throws the 404 for an id the caller may not continue).
 */
export function parseResponsesRequest(
  body: unknown,
  options: { itemIdSuffix: string; earlierItems: EarlierItems },
): ParsedResponsesRequest {
  const object = asObject(body);
  const parsed = validate(object);
  refuseUnserved(parsed);
  if (parsed.input === undefined && parsed.previous_response_id == null)
    throw errors.invalidRequest(
      "Missing required parameter: 'input'.",
      'input',
      'missing_required_parameter',
    );
  const inputItems = inputAsItems(parsed.input, options.itemIdSuffix);
  const earlier =
    parsed.previous_response_id == null ? [] : options.earlierItems(parsed.previous_response_id);
  const messages: Record<string, unknown>[] = [];
  // Instructions apply to this request only: OpenAI does not carry them over from a previous response.
  if (parsed.instructions != null && parsed.instructions !== '')
    messages.push({ role: 'system', content: parsed.instructions });
  messages.push(...chatMessagesOf(earlier, 'previous_response_id'), ...chatMessagesOf(inputItems));
  const nativeFeatures = responsesNativeFeaturesOf(parsed, inputItems);
  // Input made only of items chat has no shape for (a computer_call_output answering an upstream's
  // call): the chat translation gets an empty user turn so that it parses. It never runs: the request
  // lists those items as features, which only a native /v1/responses serves, and that gets the body.
  if (messages.length === 0 && inputItems.some((item) => !itemSchemaOf(item.type)))
    messages.push({ role: 'user', content: '' });
  if (messages.length === 0)
    throw errors.invalidRequest("Invalid 'input': the request has no input items.", 'input', 'empty_array');

  const logprobs = (parsed.include ?? []).includes('message.output_text.logprobs');
  const chat: Record<string, unknown> = {};
  // Vendor extras (top_k, seed, chat_template_kwargs …) travel to the chat body as sent.
  for (const key in object)
    if (!translatedFields.has(key) && object[key] !== undefined) setOwnField(chat, key, object[key]);
  Object.assign(chat, {
    model: parsed.model,
    messages,
    ...(parsed.stream != null ? { stream: parsed.stream } : {}),
    ...(parsed.temperature != null ? { temperature: parsed.temperature } : {}),
    ...(parsed.top_p != null ? { top_p: parsed.top_p } : {}),
    ...(parsed.max_output_tokens != null ? { max_tokens: parsed.max_output_tokens } : {}),
    ...(parsed.service_tier != null ? { service_tier: parsed.service_tier } : {}),
    ...(parsed.user != null ? { user: parsed.user } : {}),
    ...(parsed.safety_identifier != null ? { safety_identifier: parsed.safety_identifier } : {}),
    ...(parsed.prompt_cache_key != null ? { prompt_cache_key: parsed.prompt_cache_key } : {}),
    ...(parsed.reasoning?.effort != null ? { reasoning_effort: parsed.reasoning.effort } : {}),
    ...(parsed.text?.verbosity != null ? { verbosity: parsed.text.verbosity } : {}),
    ...(logprobs ? { logprobs: true, top_logprobs: parsed.top_logprobs ?? 0 } : {}),
  });
  const tools = chatTools(parsed.tools);
  if (tools) {
    chat.tools = tools;
    const choice = chatToolChoice(parsed.tool_choice);
    if (choice !== undefined) chat.tool_choice = choice;
    if (parsed.parallel_tool_calls != null) chat.parallel_tool_calls = parsed.parallel_tool_calls;
  } else if (
    (parsed.tools ?? []).length === 0 &&
    parsed.tool_choice != null &&
    parsed.tool_choice !== 'auto' &&
    parsed.tool_choice !== 'none' &&
    builtInToolChoice(parsed.tool_choice) === null
  )
    throw errors.invalidRequest(
      "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
      'tool_choice',
      'invalid_value',
    );
  const responseFormat = chatResponseFormat(parsed.text?.format);
  if (responseFormat !== undefined) chat.response_format = responseFormat;

  const request = parseChatCompletionRequest(chat);
  if (nativeFeatures.length > 0)
    request.generation.features = [...(request.generation.features ?? []), ...nativeFeatures];
  // Built only if an engine asks for it (openai-upstream with `responsesApi`), once for all its tries:
  // the copy of the whole expanded conversation is wasted on every other engine.
  let responsesBody: Record<string, unknown> | undefined;
  request.generation.responsesBody = () =>
    (responsesBody ??= upstreamResponsesBody(object, parsed.input, earlier));
  return {
    ...request,
    echo: {
      instructions: parsed.instructions ?? null,
      tools: parsed.tools ?? [],
      toolChoice: parsed.tool_choice ?? 'auto',
      parallelToolCalls: parsed.parallel_tool_calls ?? true,
      text: {
        format: parsed.text?.format ?? { type: 'text' },
        verbosity: parsed.text?.verbosity ?? 'medium',
      },
      temperature: parsed.temperature ?? 1,
      topP: parsed.top_p ?? 1,
      maxOutputTokens: parsed.max_output_tokens ?? null,
      metadata: parsed.metadata ?? {},
      user: parsed.user ?? null,
      store: parsed.store ?? true,
      previousResponseId: parsed.previous_response_id ?? null,
      truncation: parsed.truncation ?? 'disabled',
      topLogprobs: parsed.top_logprobs ?? 0,
      reasoning: parsed.reasoning ?? { effort: null, summary: null },
      safetyIdentifier: parsed.safety_identifier ?? null,
      promptCacheKey: parsed.prompt_cache_key ?? null,
    },
    inputItems,
  };
}
