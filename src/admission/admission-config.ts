import { z } from 'zod';
import { defaults } from '../core/defaults.js';
import { spendPeriods, tenantNamePattern } from './api-key.js';

/** Admission's slices of Gravity's config: `auth` (keys, open mode) and `tenants` (limits per tenant). */

/** A tenant's limits (docs/admission.md); an absent figure is no limit. */
const tenantLimitsSchema = z.strictObject({
  rpm: z.number().int().min(1).optional(),
  tpm: z.number().int().min(1).optional(),
  concurrency: z.number().int().min(1).optional(),
  spendUsd: z.number().min(0).optional(),
  period: z.enum(spendPeriods).default('month'),
});

/** Limits per tenant, on top of each key's own; `anonymous` limits open mode. */
export const tenantsConfigSchema = z
  .record(z.string().regex(tenantNamePattern), tenantLimitsSchema)
  .default({});

/** API keys (docs/admission.md). With no key ever created, Gravity is open, on loopback only. */
export const authConfigSchema = z
  .strictObject({
    /** Refuse requests without a valid key even while no key exists. */
    required: z.boolean().default(false),
    /** Serve openly (no keys) on a non-loopback host: refused at start unless set. */
    allowOpen: z.boolean().default(false),
    /** The key store; defaults to `<dataDir>/keys.sqlite`. */
    keysPath: z.string().min(1).optional(),
    /** How long a key read from the store is trusted: revocations take effect within this. */
    keyCacheMs: z.number().int().min(0).default(defaults.auth.keyCacheMs),
    /** Completion tokens a request without max_tokens reserves against a tokens-per-minute limit. */
    unboundedCompletionReserveTokens: z
      .number()
      .int()
      .min(0)
      .default(defaults.auth.unboundedCompletionReserveTokens),
  })
  .prefault({});

export type AuthConfig = z.output<typeof authConfigSchema>;
