import { type Dispatcher, Pool } from 'undici';
import { errors, GravityError, type OpenAIErrorType, upstreamErrorFields } from '../../core/errors.js';
import { estimateRequestTokens, promptText } from '../../core/prompt-size.js';
import {
  firstUnservedFeature,
  responsesNativeFeatures,
  unservedFeatureError,
} from '../../core/request-features.js';
import {
  type EmbeddingVector,
  type FinishReason,
  finishReasons,
  type StreamPart,
  type TokenUsage,
  type UpstreamChunkPart,
  type UpstreamEvent,
  type WireChunkChoice,
} from '../../core/stream-parts.js';
import {
  type EmbeddingInput,
  type EngineAdapter,
  type EngineLoad,
  type EngineModelInfo,
  engineSpecificationVersion,
  type GenerationRequest,
} from '../engine-adapter.js';
import { SlotPool } from '../slot-pool.js';
import { ResponsesEventRelay } from './responses-event-relay.js';
import { SseEventParser } from './sse-event-parser.js';
import {
  maxModelListBytes,
  parseUpstreamModelList,
  type UpstreamModelFacts,
} from './upstream-model-catalog.js';
import { type ExchangeSignal, UpstreamStallGuard, type UpstreamTimeouts } from './upstream-stall-guard.js';
import { validatedUpstreamUsage } from './upstream-usage.js';

/** How long start-up waits for an upstream's `GET /models` before serving without what it would say. */
const modelDiscoveryTimeoutMs = 2000;

export interface OpenAIUpstreamEngineOptions {
  id: string;
  /** e.g. `http://127.0.0.1:8000/v1` (vLLM, SGLang, TGI, llama.cpp server, Ollama's `/v1`). */
  baseUrl: string;
  apiKey: string | null;
  /** Gravity model id → the upstream's model name. */
  models: Array<{ id: string; upstreamModel: string; contextTokens: number | null }>;
  /** Time allowed until the upstream answers with headers. */
  connectTimeoutMs: number;
  /** Concurrent requests Gravity sends this upstream; the rest wait in Gravity. */
  maxConcurrentRequests: number;
  /** Bounds on an exchange without progress: until the first token, then between reads of the body. */
  timeouts: UpstreamTimeouts;
  /** The upstream serves `/v1/responses`: Responses requests go there rather than to its chat endpoint. */
  responsesApi?: boolean | undefined;
}

/**
 * Upstream chunks are parsed leniently: servers differ in which optional fields they send (TGI omits
 * `usage`, Ollama sends `system_fingerprint`, vLLM adds `stop_reason`), and a missing optional field must
 * not fail a response that is otherwise fine.
 */
interface UpstreamChunk {
  choices?: WireChunkChoice[];
  // What an upstream sends is not trusted: the figures are checked before use (validatedUpstreamUsage),
  // the error's fields coerced (upstreamErrorFields).
  usage?: {
    prompt_tokens?: unknown;
    completion_tokens?: unknown;
    prompt_tokens_details?: { cached_tokens?: unknown } | null;
    completion_tokens_details?: { reasoning_tokens?: unknown } | null;
  } | null;
  error?: unknown;
  [extra: string]: unknown;
}

/** Whether a chunk's choice carries generated output (text, reasoning, a refusal, a tool-call delta). */
function carriesOutput(choice: WireChunkChoice): boolean {
  if (typeof choice.text === 'string' && choice.text.length > 0) return true;
  const delta = choice.delta;
  if (!delta) return false;
  for (const key in delta) {
    if (key === 'role') continue;
    const value = delta[key];
    if (typeof value === 'string' ? value.length > 0 : Array.isArray(value) ? value.length > 0 : false)
      return true;
  }
  return false;
}

const knownFinishReasons = new Set<string>(finishReasons);

/** Choice 0's text when the choice carries nothing else (no logprobs, no finish, no other delta field). */
function plainContent(choice: WireChunkChoice): string | undefined {
  if ((choice.index ?? 0) !== 0 || choice.finish_reason != null || choice.logprobs != null) return undefined;
  if (typeof choice.text === 'string') return choice.delta === undefined ? choice.text : undefined;
  const delta = choice.delta;
  if (!delta) return undefined;
  let content: string | undefined;
  for (const key in delta) {
    const value = delta[key];
    if (key === 'content' && typeof value === 'string') content = value;
    else if (value != null) return undefined;
  }
  return content;
}

/**
 * Any OpenAI-compatible server as an engine. Gravity always streams from the upstream (asking for the
 * usage chunk), so it sees the first token when the upstream produces it and can meter every response
 * the same way; a non-streaming client gets the assembled result.
 */
export class OpenAIUpstreamEngine implements EngineAdapter {
  readonly specificationVersion = engineSpecificationVersion;
  readonly type = 'openai-upstream';
  readonly id: string;
  /**
   * No allow-list: the upstream gets the client's body and answers every chat feature and vendor extra
   * for itself. Without `responsesApi` a Responses request reaches it translated onto chat, which has no
   * shape for built-in tools and the like: those it refuses (request-features.ts).
   */
  readonly unservedFeatures: ReadonlySet<string> | undefined;
  private readonly options: OpenAIUpstreamEngineOptions;
  /** Keep-alive connections to the upstream, at most one per concurrent request. */
  private readonly pool: Pool;
  /** The base URL's path, e.g. `/v1`, prefixed to every route. */
  private readonly basePath: string;
  private readonly requestHeaders: Record<string, string>;
  private readonly slots: SlotPool<number>;
  /** What the upstream's own `/models` said, by its model name (learned at start and on each probe). */
  private upstreamFacts = new Map<string, UpstreamModelFacts>();
  /** `created` for models the upstream does not date: when this engine was built. */
  private readonly builtSeconds = Math.floor(Date.now() / 1000);

  constructor(options: OpenAIUpstreamEngineOptions) {
    this.id = options.id;
    this.options = options;
    this.unservedFeatures = options.responsesApi ? undefined : responsesNativeFeatures;
    const baseUrl = new URL(options.baseUrl);
    this.basePath = baseUrl.pathname.replace(/\/+$/, '');
    // undici's Pool directly, not fetch: no WHATWG stream layers per chunk, which the overhead bench
    // showed on the per-request path.
    this.pool = new Pool(baseUrl.origin, {
      connections: options.maxConcurrentRequests,
      keepAliveTimeout: 30_000,
    });
    this.requestHeaders = {
      'content-type': 'application/json',
      accept: 'text/event-stream',
      ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
    };
    this.slots = new SlotPool(Array.from({ length: options.maxConcurrentRequests }, (_, index) => index));
  }

  async start(): Promise<void> {
    // One short look at the upstream's models (context windows for routing, `created`). Reachability is
    // not required: an upstream that starts after Gravity is normal in a deployment, and each health
    // probe looks again. Bounded well below the request timeout, so that a blackholed upstream delays
    // Gravity's readiness by at most `modelDiscoveryTimeoutMs`.
    await this.probe(
      AbortSignal.timeout(Math.min(this.options.connectTimeoutMs, modelDiscoveryTimeoutMs)),
    ).catch(() => {});
  }

  /** The configured context window wins over the upstream's own figure: the operator may want less. */
  models(): EngineModelInfo[] {
    return this.options.models.map((model) => {
      const facts = this.upstreamFacts.get(model.upstreamModel);
      return {
        id: model.id,
        contextTokens: model.contextTokens ?? facts?.contextTokens ?? null,
        ownedBy: this.id,
        created: facts?.created ?? this.builtSeconds,
      };
    });
  }

  load(): EngineLoad {
    return { slotsTotal: this.slots.size, slotsBusy: this.slots.busy, waiting: this.slots.waiting };
  }

  async *generate(request: GenerationRequest, signal: AbortSignal): AsyncGenerator<StreamPart> {
    const target = this.options.models.find((model) => model.id === request.model);
    if (!target) throw errors.modelNotFound(request.model);
    const unserved = firstUnservedFeature(request.features, this);
    if (unserved !== null) throw unservedFeatureError(unserved, `engine '${this.id}' (${this.type})`);
    const input = request.input;
    const responsesBody = this.options.responsesApi ? request.responsesBody : undefined;
    // Each exchange runs holding one of the upstream's slots (Gravity's bound on concurrent requests to
    // it), bounded in time by one stall guard for every route (chat, completions, embeddings, Responses):
    // its signal aborts the exchange when the client leaves or the upstream stalls. Failures that are
    // not Gravity's own errors (a reset connection, a body that breaks off) become
    // `upstream_unreachable`; a client that left gets its abort reason, a stall `upstream_timeout`.
    // (Inline, not a wrapping generator: every relayed part passes here, and each generator level costs
    // per part.)
    let slot: number | undefined;
    let guard: UpstreamStallGuard | undefined;
    try {
      const queuedAtMs = performance.now();
      slot = await this.slots.acquire(signal);
      const queueWaitMs = performance.now() - queuedAtMs;
      guard = new UpstreamStallGuard(this.id, this.options.timeouts, signal);
      yield* input.kind === 'embedding'
        ? this.embed(request, input, target.upstreamModel, guard, queueWaitMs)
        : responsesBody
          ? this.generateResponse(request, responsesBody, target.upstreamModel, guard, queueWaitMs)
          : this.generateCompletion(request, target.upstreamModel, guard, queueWaitMs);
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      const timedOut = guard?.timedOut;
      if (timedOut) throw timedOut;
      if (error instanceof GravityError) throw error;
      throw errors.upstreamUnreachable(this.id, (error as Error).message);
    } finally {
      guard?.stop();
      if (slot !== undefined) this.slots.release(slot);
    }
  }

  /** Chat and completions: the upstream's stream relayed chunk by chunk (relay-rewrite.ts). */
  private async *generateCompletion(
    request: GenerationRequest,
    upstreamModel: string,
    guard: UpstreamStallGuard,
    queueWaitMs: number,
  ): AsyncGenerator<StreamPart> {
    const signal = guard.signal;
    const isChat = request.input.kind === 'chat';
    const body = upstreamBody(request, upstreamModel);
    const response = await this.send(
      isChat ? '/chat/completions' : '/completions',
      body,
      signal,
      withTraceContext(this.requestHeaders, request),
    );
    yield { type: 'response-start', promptTokens: null, cachedPromptTokens: null, queueWaitMs };

    let finishReason: FinishReason = 'stop';
    let choicesFinished = false;
    let reportedUsage: UpstreamChunk['usage'] = null;
    let contentChunks = 0;
    let done = false;
    // Each chunk goes to the client as the upstream sent it (relay-rewrite.ts rewrites the fields
    // Gravity owns); it is parsed only to meter it: output present, finish reason, usage, errors.
    // One object carries every relayed event to relayedParts, which reads it at once: no allocation per
    // event beyond the event itself on this per-token path.
    const relayed: RelayedEvent = { event: { json: '', chunk: {} }, tokens: 0 };
    const read = (data: string): RelayedEvent | null => {
      if (done) return null;
      if (data === '[DONE]') {
        done = true;
        return null;
      }
      let chunk: UpstreamChunk;
      try {
        chunk = JSON.parse(data) as UpstreamChunk;
      } catch {
        return null; // Tolerate keep-alive junk; a broken stream shows up as a missing [DONE] below.
      }
      if (chunk === null || typeof chunk !== 'object') return null;
      if (chunk.error) {
        throw errors.upstream({
          status: 502,
          message: `upstream '${this.id}': ${upstreamErrorFields(chunk.error).message ?? 'error'}`,
        });
      }
      if (chunk.usage) reportedUsage = chunk.usage;
      const choices = chunk.choices;
      // The usage chunk Gravity asked for is not relayed: Gravity sends its own, with metered figures.
      if (!Array.isArray(choices) || choices.length === 0) return null;
      let output = false;
      for (const choice of choices) {
        if (!output && carriesOutput(choice)) output = true;
        const reason = choice.finish_reason;
        if (typeof reason === 'string') {
          choicesFinished = true;
          if ((choice.index ?? 0) === 0)
            finishReason = knownFinishReasons.has(reason) ? (reason as FinishReason) : 'stop';
        }
      }
      if (output) contentChunks++;
      const event = {
        json: data,
        chunk,
        plainText: choices.length === 1 ? plainContent(choices[0] as WireChunkChoice) : undefined,
      };
      relayed.event = event;
      relayed.tokens = output ? 1 : 0;
      return relayed;
    };
    yield* relayedParts(this.id, response.body, read, undefined, guard);
    if (signal.aborted) throw signal.reason;
    if (!done)
      throw errors.upstream({ status: 502, message: `upstream '${this.id}' ended the stream early` });

    const usage = usageFrom(reportedUsage, request, contentChunks);
    // Deltas count one token per content chunk; an upstream that packs several tokens into a chunk
    // reports more in its usage, and an empty delta reports the rest so the deltas add up to it.
    if (usage.completionTokens > contentChunks)
      yield { type: 'text-delta', text: '', tokens: usage.completionTokens - contentChunks };
    yield { type: 'finish', finishReason, usage, choicesFinished };
  }

  /**
   * Embeddings: the client's body relayed to the upstream's `/embeddings` (model rewritten), the answer
   * read whole and its vectors passed on as sent (base64 strings stay strings), usage from the upstream
   * or counted when it sends none. Upstream errors map as for chat (upstreamHttpError).
   */
  private async *embed(
    request: GenerationRequest,
    input: EmbeddingInput,
    upstreamModel: string,
    guard: UpstreamStallGuard,
    queueWaitMs: number,
  ): AsyncGenerator<StreamPart> {
    const signal = guard.signal;
    const body = request.carried
      ? { ...request.carried, model: upstreamModel }
      : {
          model: upstreamModel,
          input: input.inputs,
          encoding_format: input.encodingFormat,
          ...(input.dimensions === null ? {} : { dimensions: input.dimensions }),
          ...(request.user === null ? {} : { user: request.user }),
        };
    const response = await this.send(
      '/embeddings',
      body,
      signal,
      withTraceContext(jsonHeaders(this.requestHeaders), request),
    );
    // Read whole and checked before the start: an unusable answer is still a plain 502.
    const answerText = await readBoundedText(
      response.body,
      maxEmbeddingsAnswerBytes(input.inputs.length),
      guard,
    );
    guard.stop();
    if (!answerText.complete)
      throw errors.upstream({
        status: 502,
        message: `upstream '${this.id}' sent an embeddings answer larger than ${maxEmbeddingsAnswerBytes(input.inputs.length)} bytes for ${input.inputs.length} input(s).`,
      });
    const answer = parseEmbeddingsAnswer(this.id, answerText.text, input.inputs.length);
    yield { type: 'response-start', promptTokens: answer.promptTokens, cachedPromptTokens: 0, queueWaitMs };
    yield { type: 'embeddings', data: answer.data, tokens: 0 };
    yield {
      type: 'finish',
      finishReason: 'stop',
      usage:
        answer.promptTokens === null
          ? {
              promptTokens: estimateRequestTokens(request),
              cachedPromptTokens: 0,
              completionTokens: 0,
              source: 'counted',
            }
          : {
              promptTokens: answer.promptTokens,
              cachedPromptTokens: 0,
              completionTokens: 0,
              source: 'upstream',
            },
    };
  }

  /**
   * A Responses request to an upstream that serves `/v1/responses`: its events relayed as it sent them
   * (`upstream-chunk` parts with `protocol: 'responses'`, the events of one read in one part), metered
   * by responses-event-relay.ts; usage from its terminal `response.completed` / `response.incomplete`.
   */
  private async *generateResponse(
    request: GenerationRequest,
    responsesBody: () => Readonly<Record<string, unknown>>,
    upstreamModel: string,
    guard: UpstreamStallGuard,
    queueWaitMs: number,
  ): AsyncGenerator<StreamPart> {
    const signal = guard.signal;
    const body = { ...responsesBody(), model: upstreamModel, stream: true };
    const response = await this.send(
      '/responses',
      body,
      signal,
      withTraceContext(this.requestHeaders, request),
    );
    yield { type: 'response-start', promptTokens: null, cachedPromptTokens: null, queueWaitMs };
    const relay = new ResponsesEventRelay(this.id);
    yield* relayedParts(this.id, response.body, (data) => relay.read(data), 'responses', guard);
    if (signal.aborted) throw signal.reason;
    if (!relay.done)
      throw errors.upstream({ status: 502, message: `upstream '${this.id}' ended the stream early` });
    const usage = relay.reportedUsage() ?? {
      promptTokens: estimateRequestTokens(request),
      cachedPromptTokens: 0,
      completionTokens: relay.outputEvents,
      source: 'counted' as const,
    };
    // The deltas add up to the upstream's count: an empty relayed part stands for the rest.
    if (usage.completionTokens > relay.outputEvents)
      yield {
        type: 'upstream-chunk',
        protocol: 'responses',
        events: [],
        tokens: usage.completionTokens - relay.outputEvents,
      };
    yield { type: 'finish', finishReason: relay.finishReason, usage };
  }

  private async send(
    route: string,
    body: unknown,
    signal: ExchangeSignal,
    headers: Record<string, string> = this.requestHeaders,
  ): Promise<Dispatcher.ResponseData> {
    let response: Dispatcher.ResponseData;
    try {
      response = await this.pool.request({
        method: 'POST',
        path: `${this.basePath}${route}`,
        headers,
        body: JSON.stringify(body),
        signal,
        // Time allowed until the upstream's response headers. The body is bounded by the exchange's stall
        // guard instead of undici's bodyTimeout, which cannot tell a first token from a keep-alive.
        headersTimeout: this.options.connectTimeoutMs,
        bodyTimeout: 0,
      });
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      const code = (error as { code?: string }).code;
      if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT')
        throw errors.upstreamTimeout(this.id, `did not answer within ${this.options.connectTimeoutMs} ms`);
      throw errors.upstreamUnreachable(this.id, code ?? (error as Error).message);
    }
    if (response.statusCode >= 200 && response.statusCode < 300) return response;
    throw await upstreamHttpError(this.id, response);
  }

  /** Health check: the upstream's `GET /models` answers 2xx; what it says about its models is kept. */
  async probe(signal: AbortSignal): Promise<void> {
    const response = await this.pool.request({
      method: 'GET',
      path: `${this.basePath}/models`,
      headers: this.requestHeaders,
      signal,
    });
    if (response.statusCode < 200 || response.statusCode >= 300) {
      await response.body.dump();
      throw new Error(`GET /models answered ${response.statusCode}`);
    }
    const length = Number(response.headers['content-length'] ?? 0);
    if (length > maxModelListBytes) {
      await response.body.dump();
      return;
    }
    // A server that answers with something other than a model list is still up: only the facts are lost.
    const listed = parseUpstreamModelList(await readBoundedJson(response.body, maxModelListBytes));
    if (listed.size > 0) this.upstreamFacts = listed;
  }

  async close(): Promise<void> {
    await this.pool.close().catch(() => {});
  }
}

/**
 * One upstream event as relayed, and the completion tokens it stands for. Read by relayedParts as soon as
 * `read` returns it, so a reader may hand back the same object each time.
 */
interface RelayedEvent {
  event: UpstreamEvent;
  tokens: number;
}

/**
 * An upstream's event stream as relayed parts: the events of one read travel as one part and leave in
 * one write (a fast upstream sends a whole answer in a few reads). `read` meters one event's data and
 * returns it as relayed, or null for one that is not (keep-alives, the usage chunk Gravity replaces);
 * it throws for an error event, and what came before it in the same read still goes out first. The body
 * is read to its end even after the last event (a body read to its end returns the connection to the
 * pool); leaving early (client gone, upstream error, a stall `guard` caught) destroys it, which tells
 * the upstream to stop. Each read is reported to `guard`, and each wait on the consumer is not counted
 * against the upstream.
 */
async function* relayedParts(
  engineId: string,
  stream: Dispatcher.ResponseData['body'],
  read: (data: string) => RelayedEvent | null,
  protocol: UpstreamChunkPart['protocol'],
  guard: UpstreamStallGuard,
): AsyncGenerator<UpstreamChunkPart> {
  const parser = new SseEventParser(`upstream '${engineId}'`);
  let part: UpstreamChunkPart | null = null;
  const add = (data: string): void => {
    const relayed = read(data);
    if (relayed === null) return;
    if (part !== null) {
      part.events.push(relayed.event);
      part.tokens += relayed.tokens;
    } else
      part =
        protocol === undefined
          ? { type: 'upstream-chunk', events: [relayed.event], tokens: relayed.tokens }
          : { type: 'upstream-chunk', protocol, events: [relayed.event], tokens: relayed.tokens };
  };
  try {
    for await (const bytes of stream) {
      let failure: { error: unknown } | null = null;
      try {
        for (const data of parser.push(bytes as Uint8Array)) add(data);
      } catch (error) {
        failure = { error };
      }
      // `add` sets `part`: the cast keeps TypeScript from narrowing it to null here.
      const taken = part as UpstreamChunkPart | null;
      part = null;
      if (taken) {
        guard.onRead(taken.tokens > 0);
        guard.holdForConsumer();
        yield taken;
        guard.resumeFromConsumer();
      } else guard.onRead(false);
      if (failure) throw failure.error;
    }
    guard.stop();
    for (const data of parser.end()) add(data);
    const taken: UpstreamChunkPart | null = part;
    part = null;
    if (taken) yield taken;
  } finally {
    if (!stream.readableEnded && !stream.destroyed) stream.destroy();
  }
}

/**
 * An upstream body read as text up to `maxBytes`: `complete` is false when it was longer, and the rest
 * was not read (the connection is dropped). Never holds more than `maxBytes` of an upstream's answer.
 */
async function readBoundedText(
  body: Dispatcher.ResponseData['body'],
  maxBytes: number,
  guard?: UpstreamStallGuard,
): Promise<{ text: string; complete: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    // A whole answer, not a stream: its first bytes stand for the first token.
    guard?.onRead(true);
    if (size + chunk.length > maxBytes) {
      chunks.push(chunk.subarray(0, maxBytes - size));
      body.destroy();
      return { text: Buffer.concat(chunks).toString('utf8'), complete: false };
    }
    size += chunk.length;
    chunks.push(chunk);
  }
  return { text: Buffer.concat(chunks).toString('utf8'), complete: true };
}

/** The body parsed as JSON, or null when it is not JSON or grows past `maxBytes` (then it is dropped). */
async function readBoundedJson(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<unknown> {
  const { text, complete } = await readBoundedText(body, maxBytes);
  if (!complete) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** An error body is read up to this: its message and code are in the first bytes, if anywhere. */
const maxErrorBodyBytes = 64 * 1024;

/**
 * The most an embeddings answer may take: room for the widest vectors in use (16,384 dimensions) as JSON
 * numbers of ~24 characters, per input, under an overall ceiling; more is not an embeddings answer.
 */
function maxEmbeddingsAnswerBytes(inputs: number): number {
  return Math.min(256 * 1024 * 1024, 1024 * 1024 + inputs * 16_384 * 24);
}

/** The fields of an upstream's error object that reach the client. */
interface UpstreamErrorFields {
  message?: unknown;
  code?: unknown;
  type?: unknown;
  param?: unknown;
}

/**
 * An upstream's HTTP error as the client's answer. The client's own mistakes (400, 404, 409, 413, 422)
 * and rate limits keep their status and the upstream's error body (message, type, param, code; a code
 * that is not a string becomes one), so a client sees what it would have seen talking to the upstream.
 * Authentication failures and 5xx are Gravity's upstream problem, not the client's: they become 502.
 */
async function upstreamHttpError(engineId: string, response: Dispatcher.ResponseData): Promise<GravityError> {
  // Bounded: a 50 MB error page must not be held, nor echoed (the message is cut to 500 characters).
  const { text } = await readBoundedText(response.body, maxErrorBodyBytes).catch(() => ({ text: '' }));
  let message = text.slice(0, 500);
  let code: string | null = null;
  let type: string | null = null;
  let param: string | null = null;
  try {
    const parsed = JSON.parse(text) as {
      error?: UpstreamErrorFields | string;
      message?: unknown;
      detail?: unknown;
    } & UpstreamErrorFields;
    // OpenAI's shape wraps the fields in `error`; vLLM before 0.10.1 sent them at the top level
    // (`{"object":"error","message":…,"type":…,"code":400}`), TGI sends `error` as a string.
    const fields =
      typeof parsed.error === 'object' && parsed.error
        ? parsed.error
        : typeof parsed.message === 'string'
          ? parsed
          : null;
    if (fields) {
      const coerced = upstreamErrorFields(fields);
      if (coerced.message !== null) message = coerced.message;
      ({ code, type, param } = coerced);
    } else if (typeof parsed.error === 'string') message = parsed.error;
    else if (parsed.detail !== undefined) message = JSON.stringify(parsed.detail).slice(0, 500);
  } catch {}
  const status = response.statusCode;
  const passThrough = [400, 404, 409, 413, 422, 429].includes(status);
  const retryAfterHeader = response.headers['retry-after'];
  const retryAfter = Array.isArray(retryAfterHeader) ? retryAfterHeader[0] : retryAfterHeader;
  if (passThrough)
    return new GravityError({
      status,
      type: (type ?? (status === 429 ? 'rate_limit_error' : 'invalid_request_error')) as OpenAIErrorType,
      code: code ?? (status === 429 ? 'rate_limit_exceeded' : 'upstream_rejected'),
      param,
      message: message || `upstream '${engineId}' answered ${status} with no body`,
      ...(retryAfter ? { headers: { 'retry-after': retryAfter } } : {}),
    });
  return new GravityError({
    status: 502,
    type: 'server_error',
    code: 'upstream_error',
    message: `upstream '${engineId}' answered ${status}: ${message || 'no body'}`,
  });
}

/**
 * What the upstream receives: the client's body as it came (tools, messages as sent, response_format,
 * vendor extras), with the fields Gravity owns set by Gravity: the upstream's model name, a stream with
 * its usage chunk (so every response is metered the same way), and the token bound when the client's
 * body had none but Gravity set one (the completions default).
 */
function upstreamBody(request: GenerationRequest, upstreamModel: string): Record<string, unknown> {
  const carried = request.carried;
  if (carried) {
    const hasBound = carried.max_tokens != null || carried.max_completion_tokens != null;
    return {
      ...carried,
      model: upstreamModel,
      stream: true,
      // The client's stream options (OpenAI's include_obfuscation, vLLM's continuous_usage_stats) travel;
      // the usage chunk is always asked for, so every response is metered from the upstream's counts.
      stream_options: { ...streamOptionsOf(carried.stream_options), include_usage: true },
      ...(hasBound || request.maxTokens === null ? {} : { max_tokens: request.maxTokens }),
    };
  }
  // A request Gravity built itself (the simulator's live twin, benchmarks): its normalised fields.
  return {
    model: upstreamModel,
    ...(request.input.kind === 'chat'
      ? {
          messages: request.input.messages.map((message) => ({
            role: message.role,
            content: message.content,
          })),
        }
      : { prompt: promptText(request.input) }),
    stream: true,
    stream_options: { include_usage: true },
    temperature: request.temperature,
    top_p: request.topP,
    ...(request.maxTokens === null ? {} : { max_tokens: request.maxTokens }),
    ...(request.seed === null ? {} : { seed: request.seed }),
    ...(request.stop.length === 0 ? {} : { stop: request.stop }),
    ...(request.user === null ? {} : { user: request.user }),
  };
}

function streamOptionsOf(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

/**
 * Usage from the upstream's usage chunk, or counted by Gravity when the upstream sent none or sent
 * figures that do not hold up (validatedUpstreamUsage).
 */
function usageFrom(
  reported: UpstreamChunk['usage'],
  request: GenerationRequest,
  contentChunks: number,
): TokenUsage {
  const upstreamUsage = reported
    ? validatedUpstreamUsage({
        promptTokens: reported.prompt_tokens,
        cachedPromptTokens: reported.prompt_tokens_details?.cached_tokens,
        completionTokens: reported.completion_tokens,
        reasoningTokens: reported.completion_tokens_details?.reasoning_tokens,
      })
    : null;
  if (upstreamUsage) return upstreamUsage;
  // Without the upstream's tokenizer Gravity can only estimate: one token per content chunk (servers
  // stream one token per chunk) and ~4 characters per prompt token. `source: counted` says so.
  return {
    promptTokens: estimateRequestTokens(request),
    cachedPromptTokens: 0,
    completionTokens: contentChunks,
    source: 'counted',
  };
}

/**
 * The request's trace context as the upstream's `traceparent` and `tracestate` headers, so that an
 * upstream that traces (vLLM, SGLang with OpenTelemetry on) continues the same trace. The shared headers
 * object as is when there is none: no copy per request.
 */
function withTraceContext(
  headers: Record<string, string>,
  request: GenerationRequest,
): Record<string, string> {
  const traceparent = request.traceparent;
  if (traceparent === null || traceparent === undefined) return headers;
  const tracestate = request.tracestate;
  return tracestate ? { ...headers, traceparent, tracestate } : { ...headers, traceparent };
}

/** The upstream's headers for a request answered with one JSON body rather than a stream. */
function jsonHeaders(headers: Record<string, string>): Record<string, string> {
  return { ...headers, accept: 'application/json' };
}

/**
 * An upstream's embeddings answer, read leniently (servers differ: llama.cpp's server omits `object`,
 * some omit `index` or `usage`), but every input must have a vector, as numbers or a base64 string:
 * anything else is the upstream's failure (502), not a response to pass on.
 */
function parseEmbeddingsAnswer(
  engineId: string,
  text: string,
  inputs: number,
): { data: EmbeddingVector[]; promptTokens: number | null } {
  const broken = (why: string) =>
    errors.upstream({
      status: 502,
      message: `upstream '${engineId}' sent an unusable embeddings answer: ${why}`,
    });
  let answer: { data?: unknown; usage?: { prompt_tokens?: unknown } | null };
  try {
    answer = JSON.parse(text) as typeof answer;
  } catch {
    throw broken('not JSON');
  }
  if (answer === null || typeof answer !== 'object' || !Array.isArray(answer.data))
    throw broken('no data array');
  if (answer.data.length !== inputs)
    throw broken(`${answer.data.length} vectors for ${inputs} input${inputs === 1 ? '' : 's'}`);
  const data = answer.data.map((item: unknown, position): EmbeddingVector => {
    const entry = (item ?? {}) as { index?: unknown; embedding?: unknown };
    const embedding = entry.embedding;
    if (
      !(
        typeof embedding === 'string' ||
        (Array.isArray(embedding) && embedding.every((value) => typeof value === 'number'))
      )
    )
      throw broken(`data[${position}] has no embedding`);
    return { index: typeof entry.index === 'number' ? entry.index : position, embedding };
  });
  // Validated like a chat usage chunk: a figure that does not hold up is counted by Gravity instead.
  const usage = answer.usage
    ? validatedUpstreamUsage({ promptTokens: answer.usage.prompt_tokens, completionTokens: 0 })
    : null;
  return { data, promptTokens: usage ? usage.promptTokens : null };
}
