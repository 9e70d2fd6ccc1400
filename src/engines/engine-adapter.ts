import type { ServiceTier } from '../core/service-tiers.js';
import type { StreamPart } from '../core/stream-parts.js';

/**
 * The contract between Gravity and an inference engine (in-process llama.cpp, an OpenAI-compatible
 * upstream, an emulated replica). Versioned so that adapters written outside this repository can say
 * which contract they implement.
 *
 * v2: what only some engines have (modelled power, vLLM-style work counters, a start-log description)
 * moved from the adapter's top level into `extensions`, declared by the engine's definition
 * (engine-definition.ts). What the gateway calls is unchanged from v1.
 */
export const engineSpecificationVersion = 'gravity.engine.v2';

/**
 * A chat message as engines that template prompts themselves read it: content parts joined into text,
 * tool calls and results kept. Upstreams get the client's messages as sent (`carried`), not these.
 */
export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  /** The text content (text parts joined; empty for `content: null`). */
  content: string;
  name?: string | undefined;
  /** An assistant message's tool calls, arguments as the JSON text the model wrote. */
  toolCalls?: ToolCall[] | undefined;
  /** A tool message answers this call. */
  toolCallId?: string | undefined;
}

export interface ToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** A function the model may call (`tools[].function`). */
export interface ToolDefinition {
  name: string;
  description?: string | undefined;
  /** JSON Schema of the arguments object. */
  parameters?: Record<string, unknown> | undefined;
}

export type ToolChoice = 'none' | 'auto' | 'required' | { name: string };

export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; name: string; schema: Record<string, unknown>; strict: boolean };

/**
 * What a request asks of generation beyond plain text, normalised for engines that run the model
 * themselves. Defaults mean "not asked for": no tools, text format, one choice, no penalties.
 */
export interface GenerationOptions {
  tools: ToolDefinition[];
  toolChoice: ToolChoice;
  parallelToolCalls: boolean;
  responseFormat: ResponseFormat;
  /** Return log probabilities of the chosen tokens, and the `topLogprobs` most likely at each step. */
  logprobs: boolean;
  topLogprobs: number;
  /** Choices to generate. */
  n: number;
  presencePenalty: number;
  frequencyPenalty: number;
  /** Token id (as a decimal string) → bias added to its logit, in [-100, 100]. */
  logitBias: Record<string, number>;
  /** Sampling extras engines commonly accept (vLLM, llama.cpp server); null when not set. */
  topK: number | null;
  minP: number | null;
  repetitionPenalty: number | null;
}

export const defaultGenerationOptions: Readonly<GenerationOptions> = Object.freeze<GenerationOptions>({
  tools: [],
  toolChoice: 'auto',
  parallelToolCalls: true,
  responseFormat: { type: 'text' },
  logprobs: false,
  topLogprobs: 0,
  n: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  logitBias: {},
  topK: null,
  minP: null,
  repetitionPenalty: null,
});

/**
 * `/v1/embeddings`: each input (text, or token ids) is embedded on its own, and nothing is generated.
 * Engines run it as prefill-only work and answer with `embeddings` parts (core/stream-parts.ts).
 */
export interface EmbeddingInput {
  kind: 'embedding';
  inputs: ReadonlyArray<string | readonly number[]>;
  /** How the client wants vectors written; an upstream receives it as sent (in `carried`). */
  encodingFormat: 'float' | 'base64';
  /** The vector length asked for (`dimensions`, a request feature); null: the model's own. */
  dimensions: number | null;
}

/** One generation as the pipeline hands it to an engine, already validated and normalised. */
export interface GenerationRequest {
  /** Gravity's request id, for logs and upstream correlation. */
  requestId: string;
  /**
   * W3C trace context of the engine call: an upstream request carries them as its `traceparent` and
   * `tracestate` headers (src/telemetry/README.md). Null or absent: none.
   */
  traceparent?: string | null | undefined;
  tracestate?: string | null | undefined;
  /** The model id as the engine knows it (after alias resolution). */
  model: string;
  input:
    | { kind: 'chat'; messages: ChatMessage[] }
    /**
     * `prompt` is the text Gravity measures; `prompts` the prompts as sent when they are not one string
     * (an array of strings, token ids, or arrays of token ids), each its own choice.
     */
    | { kind: 'completion'; prompt: string; prompts?: ReadonlyArray<string | readonly number[]> | undefined }
    | EmbeddingInput;
  /** Upper bound on completion tokens; null means "until the context is full or the model stops". */
  maxTokens: number | null;
  temperature: number;
  topP: number;
  seed: number | null;
  stop: string[];
  user: string | null;
  /** The tier the client asked for; engines that order their queue by priority read it. */
  serviceTier?: ServiceTier;
  /** Tools, formats, logprobs, n, penalties …; absent: the defaults (defaultGenerationOptions). */
  options?: GenerationOptions | undefined;
  /**
   * Request features beyond plain text generation, by the parameter that asks for them (`tools`,
   * `response_format`, `image_url`, a vendor extra such as `top_k` …): request-features.ts. An engine
   * that serves only some (`servedFeatures`) refuses the others with a 400 naming them.
   */
  features?: readonly string[] | undefined;
  /**
   * The client's body as it came, less the fields Gravity owns (model, stream, stream_options,
   * service_tier): what an upstream server receives, so tools, content parts, response formats and vendor
   * extras reach it unchanged. Absent for requests built by Gravity itself.
   */
  carried?: Readonly<Record<string, unknown>> | undefined;
  /**
   * Set for `/v1/responses` requests: the Responses body for an upstream that serves that API itself
   * (openai-upstream's `responsesApi`), earlier turns already expanded into `input` and nothing stored
   * upstream. A function, built on its first call: only an engine that sends it pays for copying the
   * conversation. Other engines read `input` (and `carried`, the request translated onto chat). An
   * engine that sends it answers with `upstream-chunk` parts marked `protocol: 'responses'` (the
   * upstream's Responses events, relayed by src/responses/response-relay.ts).
   */
  responsesBody?: (() => Readonly<Record<string, unknown>>) | undefined;
}

export interface EngineModelInfo {
  id: string;
  contextTokens: number | null;
  ownedBy: string;
  /**
   * When the model came to be, in Unix seconds, as `/v1/models` reports it: a GGUF file's modification
   * time, an upstream's own `created`, or when Gravity configured the replica. Absent: not known.
   */
  created?: number | undefined;
}

/** Load figures that schedulers and routers read; cheap to call. */
export interface EngineLoad {
  /** Requests the engine runs at once; `slotsBusy` never exceeds it. */
  slotsTotal: number;
  slotsBusy: number;
  waiting: number;
  /**
   * Of `slotsTotal`, the slots that serve only embeddings (llama-cpp's embedding contexts); absent: none.
   * The gateway's scheduler leaves them out of its seats (gravity-server.ts).
   */
  embeddingSlots?: number;
  /** Fraction of the engine's KV cache in use, in [0, 1]; absent or null where the engine cannot tell. */
  kvUsedFraction?: number | null;
}

/**
 * Power figures of an engine that models its own device (the emulated engine): metering turns them into
 * the replica's energy counter instead of guessing utilisation from busy slots.
 */
export interface ModelledPower {
  readonly idleWatts: number;
  /** Device energy above idle since the engine was created, in joules. Never decreases. */
  dynamicEnergyJoules(): number;
}

/**
 * Running totals an engine keeps about its own work, named after vLLM's metrics so Gravity can expose an
 * engine it runs itself the way vLLM would (`vllm:prompt_tokens_total` …).
 */
export interface EngineCounters {
  /** Prompt tokens of requests whose prefill finished (cached ones included, as vLLM counts them). */
  promptTokens: number;
  generationTokens: number;
  preemptions: number;
  /** Prompt tokens looked up in the prefix cache, and of those, found there. */
  prefixCacheQueriedTokens: number;
  prefixCacheHitTokens: number;
}

/**
 * What some engines offer beyond generating text. Each member is present exactly when the engine's
 * definition declares the matching capability (EngineCapabilities); the engine contract suite checks that.
 */
export interface EngineExtensions {
  /** The engine models its device's power (see ModelledPower). */
  readonly modelledPower?: ModelledPower;
  /** The engine counts its own work (see EngineCounters); read at scrape time, never per token. */
  readonly counters?: () => EngineCounters;
  /**
   * One line for the start log saying what this replica is when its config alone does not make it
   * evident (an emulated replica's modelled hardware, KV cache and limits).
   */
  readonly description?: string;
}

export interface EngineAdapter {
  readonly specificationVersion: typeof engineSpecificationVersion;
  /** The engine's name in config (`engines.<id>`). */
  readonly id: string;
  /** The registered type name, e.g. `llama-cpp`. */
  readonly type: string;

  /** Loads models or checks reachability. Must be awaited before `generate`. */
  start(): Promise<void>;
  /** Frees everything; in-flight generations end with an error. */
  close(): Promise<void>;

  models(): EngineModelInfo[];
  load(): EngineLoad;
  /**
   * Optional active health check (routing calls it on an interval): resolves when the engine answers,
   * throws when it does not. Engines in Gravity's own process need none.
   */
  probe?(signal: AbortSignal): Promise<void>;

  /**
   * Runs one generation. The first part is `response-start`: validation errors (e.g. the prompt does not
   * fit the context) are thrown before it, so the gateway can still answer with a plain HTTP error.
   * Aborting `signal` must stop the work and free the engine's resources within a few tokens; the
   * iterator then throws the signal's reason. `finish` is the last part; its usage says its `source`, and
   * the `tokens` of the text-deltas add up to its `completionTokens`.
   */
  generate(request: GenerationRequest, signal: AbortSignal): AsyncIterable<StreamPart>;

  /** Capabilities beyond generation; absent on engines that have none. */
  readonly extensions?: EngineExtensions;

  /**
   * The request features (request-features.ts) this engine can serve; absent: all of them, as an
   * upstream server that receives the client's body as sent (and answers for itself) does. Routing sends
   * a request only to replicas that serve every feature it uses.
   */
  readonly servedFeatures?: ReadonlySet<string> | undefined;

  /**
   * Features this engine refuses although `servedFeatures` lets them in (exact names or `<family>.*`):
   * how an engine that serves every chat feature, vendor extras included, still refuses what only a
   * native `/v1/responses` serves (`responsesNativeFeatures`). One rule reads both lists:
   * request-features.ts `servesFeature`.
   */
  readonly unservedFeatures?: ReadonlySet<string> | undefined;
}
