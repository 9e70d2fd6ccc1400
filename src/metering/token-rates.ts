import type { Endpoint } from '../core/request-context.js';
import type { TokenUsage } from '../core/stream-parts.js';

/**
 * Dollars per million input, cached-input and output tokens; cached input falls back to input. An
 * embedding's input tokens have their own rate, which falls back to input too.
 */
export interface PerMillionTokenRates {
  inputPerMillionUsd: number;
  cachedInputPerMillionUsd?: number | undefined;
  outputPerMillionUsd: number;
  embeddingInputPerMillionUsd?: number | undefined;
}

/**
 * What `usage` costs at `rates` on `endpoint`: an embedding pays its input tokens at the embedding rate
 * (it has no output); anything else pays uncached input, cached input and output tokens each at their
 * rate. The price book and per-token engine costs both charge through here.
 */
export function chargeForTokensUsd(
  usage: TokenUsage,
  rates: PerMillionTokenRates,
  endpoint: Endpoint,
): number {
  if (endpoint === 'embeddings')
    return (usage.promptTokens * (rates.embeddingInputPerMillionUsd ?? rates.inputPerMillionUsd)) / 1e6;
  const uncachedInputTokens = usage.promptTokens - usage.cachedPromptTokens;
  const cachedInputRate = rates.cachedInputPerMillionUsd ?? rates.inputPerMillionUsd;
  return (
    (uncachedInputTokens * rates.inputPerMillionUsd +
      usage.cachedPromptTokens * cachedInputRate +
      usage.completionTokens * rates.outputPerMillionUsd) /
    1e6
  );
}
