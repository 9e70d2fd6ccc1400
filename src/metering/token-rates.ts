import type { TokenUsage } from '../core/stream-parts.js';

/** Dollars per million input, cached-input and output tokens; cached input falls back to input. */
export interface PerMillionTokenRates {
  inputPerMillionUsd: number;
  cachedInputPerMillionUsd?: number | undefined;
  outputPerMillionUsd: number;
}

/** What `usage` costs at `rates`: uncached input, cached input and output tokens each at their rate. */
export function chargeForTokensUsd(usage: TokenUsage, rates: PerMillionTokenRates): number {
  const uncachedInputTokens = usage.promptTokens - usage.cachedPromptTokens;
  const cachedInputRate = rates.cachedInputPerMillionUsd ?? rates.inputPerMillionUsd;
  return (
    (uncachedInputTokens * rates.inputPerMillionUsd +
      usage.cachedPromptTokens * cachedInputRate +
      usage.completionTokens * rates.outputPerMillionUsd) /
    1e6
  );
}
