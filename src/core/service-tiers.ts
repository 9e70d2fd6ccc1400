/**
 * The service tiers, once for every stage. A client asks for a `ServiceTier` (OpenAI's `service_tier`
 * values plus Gravity's `batch`); Gravity schedules, routes, prices and reports by `ServiceBand`, the four
 * tiers it keeps apart. `auto` resolves to a key's default tier before anything runs; `scale` runs as
 * `default`.
 */
export const serviceTiers = ['auto', 'default', 'flex', 'priority', 'scale', 'batch'] as const;
export type ServiceTier = (typeof serviceTiers)[number];

/** The bands, in rank order: priority is served first, batch only in spare capacity. */
export const serviceBands = ['priority', 'default', 'flex', 'batch'] as const;
export type ServiceBand = (typeof serviceBands)[number];

/** The tiers a key may be granted: every tier but `auto`, which is not a tier but "the key's default". */
export const grantableTiers = ['priority', 'default', 'flex', 'batch', 'scale'] as const;
export type GrantableTier = (typeof grantableTiers)[number];

/**
 * What a new key may use when its creator names no tiers: everything but `priority`, which costs more and
 * jumps queues, so it must be granted on purpose.
 */
export const tiersGrantedByDefault: readonly GrantableTier[] = ['default', 'flex', 'batch'];

/** A band's rank: 0 for priority … 3 for batch (an engine's priority queue orders by it). */
export const bandRank: Readonly<Record<ServiceBand, number>> = { priority: 0, default: 1, flex: 2, batch: 3 };

export function serviceBand(tier: ServiceTier): ServiceBand {
  return tier === 'priority' || tier === 'flex' || tier === 'batch' ? tier : 'default';
}
