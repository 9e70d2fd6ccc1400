import type { Endpoint } from '../core/request-context.js';
import type { TokenUsage } from '../core/stream-parts.js';
import type { PricingConfig } from './metering-config.js';
import { chargeForTokensUsd } from './token-rates.js';

/**
 * What a client pays for a response: the model's $ per 1M input, cached-input and output tokens, times
 * the tier's multiplier (the latency premium). An embeddings response pays its input tokens at the
 * model's embedding price: `embeddingInputPerMillionUsd` of the model's entry, else of `pricing.default`
 * (embedding work is prefill only, so it is priced apart from a chat prompt's tokens).
 */
export class PriceBook {
  constructor(private readonly pricing: PricingConfig) {}

  priceUsd(model: string, tier: string, usage: TokenUsage, endpoint: Endpoint): number {
    const rates = this.pricing.models[model] ?? this.pricing.default;
    const multiplier = (this.pricing.tierMultipliers as Record<string, number>)[tier] ?? 1;
    const embeddingInputPerMillionUsd =
      rates.embeddingInputPerMillionUsd ?? this.pricing.default.embeddingInputPerMillionUsd;
    return chargeForTokensUsd(usage, { ...rates, embeddingInputPerMillionUsd }, endpoint) * multiplier;
  }
}
