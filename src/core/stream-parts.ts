/**
 * What every engine emits for one generation, whatever its protocol: a tagged union of parts that the
 * API layer encodes (SSE or JSON) and metering consumes. Parts arrive in this order:
 *   response-start → (text-delta | choice-delta | upstream-chunk | embeddings)* → finish
 * An engine signals failure by throwing a GravityError from its iterator instead of a part.
 *
 * Three kinds of content part, from the cheapest to the most general:
 * - `text-delta`: text of choice 0 and nothing else, the per-token hot path of plain chat;
 * - `choice-delta`: one choice's chunk in OpenAI's wire shape (tool-call deltas, logprobs, several
 *   choices), built by an engine that runs the model itself;
 * - `upstream-chunk`: an upstream server's chunks from one read, relayed as the bytes it sent with
 *   only the fields Gravity owns (id, model, service_tier) rewritten; with `protocol: 'responses'`,
 *   an upstream's Responses API events instead (a `/v1/responses` request relayed to an upstream's own
 *   `/v1/responses`), which only the Responses renderers receive.
 * An embeddings request (`/v1/embeddings`) answers with `embeddings` parts instead: vectors, no tokens
 * generated (prefill-only work), and a finish whose usage has `completionTokens: 0`.
 * Every content part says how many completion tokens it stands for: a part with `tokens > 0` is a token
 * arrival (first-token time, inter-token gaps), one with 0 (a role-only opener) is passed on uncounted.
 */
export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'function_call';

export const finishReasons: readonly FinishReason[] = [
  'stop',
  'length',
  'tool_calls',
  'content_filter',
  'function_call',
];

export interface TokenUsage {
  promptTokens: number;
  /** Prompt tokens served from the engine's prefix cache (OpenAI's `cached_tokens`). */
  cachedPromptTokens: number;
  completionTokens: number;
  /** Of the completion tokens, those spent reasoning (OpenAI's `reasoning_tokens`), where known. */
  reasoningTokens?: number;
  /**
   * Where the counts came from: reported by the engine that ran the model, reported by an upstream's
   * usage chunk, or counted by Gravity because the upstream sent none.
   */
  source: 'engine' | 'upstream' | 'counted';
}

/**
 * One choice of a chunk as OpenAI sends it: `delta` for chat (content, tool_calls, refusal,
 * reasoning_content …), `text` for completions. Kept in wire shape (snake_case) because it is written to
 * the wire as is.
 */
export interface WireChunkChoice {
  index: number;
  delta?: Record<string, unknown>;
  text?: string;
  logprobs?: unknown;
  finish_reason: string | null;
  [extra: string]: unknown;
}

export type TextDeltaPart = { type: 'text-delta'; text: string; tokens: number };
export type ChoiceDeltaPart = { type: 'choice-delta'; choice: WireChunkChoice; tokens: number };
/** One upstream event: its data exactly as received, and parsed. */
export interface UpstreamEvent {
  json: string;
  /**
   * What assembling a whole (non-streamed) response reads: a chat or completions chunk, or for
   * `protocol: 'responses'` the Responses event (`type`, `response`, `item` …).
   */
  chunk: {
    choices?: WireChunkChoice[];
    system_fingerprint?: unknown;
    created?: unknown;
    [extra: string]: unknown;
  };
  /**
   * Set when the chunk is nothing but choice 0's content (the usual token chunk): assembling a whole
   * response then appends it without walking the chunk.
   */
  plainText?: string | undefined;
}
export type UpstreamChunkPart = {
  type: 'upstream-chunk';
  /**
   * Absent for chat and completions chunks (the per-token hot path reads no extra field); `responses`
   * when the events are an upstream's Responses API events, relayed by src/responses/response-relay.ts.
   * Such a part may have no events: it then only stands for tokens the upstream's usage reported
   * beyond its delta events.
   */
  protocol?: 'responses';
  /**
   * The events of one read from the upstream, in order: they arrived together, so they travel as one
   * part and leave in one write (a fast upstream sends a whole answer in a few reads).
   */
  events: UpstreamEvent[];
  tokens: number;
};

/**
 * The Responses events (`protocol: 'responses'`) whose `response` is the finished Response object: the
 * engine reads the upstream's usage from them, the Responses relay holds them until the ledger commit.
 */
export const terminalResponseEvents: ReadonlySet<string> = new Set([
  'response.completed',
  'response.incomplete',
]);

/**
 * One input's vector: numbers as the engine computed them, or a base64 string relayed from an upstream
 * exactly as it sent it (little-endian float32, OpenAI's `encoding_format: base64`).
 */
export interface EmbeddingVector {
  /** Position of the input in the request's `input` array. */
  index: number;
  embedding: Float32Array | readonly number[] | string;
}
/**
 * Vectors of some of a request's inputs (an engine may send them in several parts, in any order of
 * `index`). `tokens` is always 0: an embedding generates no completion tokens.
 */
export type EmbeddingsPart = { type: 'embeddings'; data: EmbeddingVector[]; tokens: 0 };
export type ContentPart = TextDeltaPart | ChoiceDeltaPart | UpstreamChunkPart | EmbeddingsPart;

export type FinishPart = {
  type: 'finish';
  /** Choice 0's reason; the ledger's `finish_reason`. */
  finishReason: FinishReason;
  usage: TokenUsage;
  /**
   * The content parts already carried each choice's `finish_reason` (relayed upstream chunks, several
   * choices): the renderer then adds no finish chunk of its own, only usage and `[DONE]`.
   */
  choicesFinished?: boolean;
};

export type StreamPart =
  /**
   * The engine accepted the request: validation passed and a slot or upstream answer is secured.
   * Counts are null where the engine learns them only at the end (upstreams report usage last).
   * `queueWaitMs` is how long the request waited for a free slot inside the engine.
   */
  | {
      type: 'response-start';
      promptTokens: number | null;
      cachedPromptTokens: number | null;
      queueWaitMs: number;
    }
  | ContentPart
  | FinishPart;
