import type { PricingConfig } from '../config/config-schema.js';
import type { TokenUsage } from '../core/stream-parts.js';

const perMillion = 1e-6;

/**
 * What a client pays for a response: the model's $ per 1M input, cached-input and output tokens, times
 * the tier's multiplier (the latency premium). Cached input falls back to the input price.
 */
export class PriceBook {
  constructor(private readonly pricing: PricingConfig) {}

  priceUsd(model: string, tier: string, usage: TokenUsage): number {
    const price = this.pricing.models[model] ?? this.pricing.default;
    const multipliers = this.pricing.tierMultipliers as Record<string, number>;
    const multiplier = multipliers[tier] ?? 1;
    const uncachedInput = usage.promptTokens - usage.cachedPromptTokens;
    const cachedPrice = price.cachedInputPerMillionUsd ?? price.inputPerMillionUsd;
    return (
      (uncachedInput * price.inputPerMillionUsd +
        usage.cachedPromptTokens * cachedPrice +
        usage.completionTokens * price.outputPerMillionUsd) *
      perMillion *
      multiplier
    );
  }
}
