import type { TokenUsage } from '../core/stream-parts.js';
import type { PricingConfig } from './metering-config.js';
import { chargeForTokensUsd } from './token-rates.js';

/**
 * What a client pays for a response: the model's $ per 1M input, cached-input and output tokens, times
 * the tier's multiplier (the latency premium).
 */
export class PriceBook {
  constructor(private readonly pricing: PricingConfig) {}

  priceUsd(model: string, tier: string, usage: TokenUsage): number {
    const rates = this.pricing.models[model] ?? this.pricing.default;
    const multiplier = (this.pricing.tierMultipliers as Record<string, number>)[tier] ?? 1;
    return chargeForTokensUsd(usage, rates) * multiplier;
  }
}
