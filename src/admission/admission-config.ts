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

/**
 * The `state` section: where limits, budgets and keys live. `memory` (the default) keeps them in this
 * process, as one gateway needs; `redis` shares them with every replica using the same Redis, so limits
 * hold across the fleet instead of multiplying by its size (docs/admission.md#shared-state).
 */
export const stateConfigSchema = z
  .strictObject({
    store: z.enum(['memory', 'redis']).default('memory'),
    /** `redis://:password@host:6379/0` (GRAVITY_STATE_URL); required with `store: redis`. */
    url: z.string().min(1).optional(),
    /**
     * What admission does when Redis cannot answer within `timeoutMs`: `open` admits without limits
     * (logged), `closed` refuses with a 503. Open by default: an outage of the limit store should not be
     * an outage of inference (Envoy's rate-limit filter makes the same choice).
     */
    onUnavailable: z.enum(['open', 'closed']).default('open'),
    /** How long an admission waits for Redis before treating it as unavailable. */
    timeoutMs: z.number().int().min(1).default(250),
    /**
     * How long a concurrency slot (and a budget reservation) outlives the replica holding it: live
     * replicas renew theirs, so only a crashed replica's slots expire, after at most this long.
     */
    leaseMs: z.number().int().min(100).default(30_000),
    /**
     * How often a replica exchanges VTC fairness counters and replica ejections with the others through
     * Redis, off the request path: a peer's ejection applies here within about two intervals.
     */
    syncIntervalMs: z.number().int().min(20).max(60_000).default(250),
  })
  .prefault({})
  .superRefine((state, context) => {
    if (state.store === 'redis' && state.url === undefined)
      context.addIssue({
        code: 'custom',
        path: ['url'],
        message: 'store: redis needs a url (or GRAVITY_STATE_URL)',
      });
    if (state.store === 'memory' && state.url !== undefined)
      context.addIssue({ code: 'custom', path: ['url'], message: 'a url is for store: redis' });
  });

export type StateConfig = z.output<typeof stateConfigSchema>;
