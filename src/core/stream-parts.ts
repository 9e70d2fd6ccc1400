/**
 * What every engine emits for one generation, whatever its protocol: a tagged union of parts that the
 * API layer encodes (SSE or JSON) and metering consumes. Parts arrive in this order:
 *   response-start → text-delta* → finish
 * An engine signals failure by throwing a GravityError from its iterator instead of a part.
 */
export type FinishReason = 'stop' | 'length';

export interface TokenUsage {
  promptTokens: number;
  /** Prompt tokens served from the engine's prefix cache (OpenAI's `cached_tokens`). */
  cachedPromptTokens: number;
  completionTokens: number;
  /**
   * Where the counts came from: reported by the engine that ran the model, reported by an upstream's
   * usage chunk, or counted by Gravity because the upstream sent none.
   */
  source: 'engine' | 'upstream' | 'counted';
}

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
  /** Text for the client. `tokens` is how many completion tokens the text stands for. */
  | { type: 'text-delta'; text: string; tokens: number }
  | { type: 'finish'; finishReason: FinishReason; usage: TokenUsage };
