import { z } from 'zod';
import { defaults } from '../core/defaults.js';

/**
 * Metering's slices of Gravity's config (docs/configuration.md): the ledger and its intervals
 * (`metering:`) and what clients pay (`pricing:`). They live with the stage that reads them; config/
 * composes them into the whole file.
 */

export const priceSchema = z.strictObject({
  inputPerMillionUsd: z.number().min(0),
  cachedInputPerMillionUsd: z.number().min(0).optional(),
  outputPerMillionUsd: z.number().min(0),
  /** `/v1/embeddings`: $ per 1M input tokens (an embedding has no output); absent: `pricing.default`'s. */
  embeddingInputPerMillionUsd: z.number().min(0).optional(),
});

/** `pricing.default`: a model's price where it has none, so its embedding price is always set. */
const defaultPriceSchema = priceSchema.extend({
  embeddingInputPerMillionUsd: z
    .number()
    .min(0)
    .default(defaults.pricing.default.embeddingInputPerMillionUsd),
});

/** The `metering` section: the ledger, its commit window, intervals and grid carbon intensity. */
export const meteringConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** SQLite ledger file; defaults to `<dataDir>/ledger.sqlite`. */
    ledgerPath: z.string().min(1).optional(),
    /**
     * Records ending within this window share one ledger commit; each response's last bytes wait for
     * its commit, so this bounds the latency metering adds to the end of a response.
     */
    commitWindowMs: z.number().min(0).max(100).default(defaults.metering.commitWindowMs),
    /** How often replicas' energy and cost intervals close. */
    intervalMs: z.number().int().min(10).default(defaults.metering.intervalMs),
    /**
     * `/v1/usage` summaries running or waiting at once (each scans its range of the ledger on a reader
     * thread, one after another); one more gets a 503 with Retry-After.
     */
    maxPendingUsageQueries: z.number().int().min(1).default(defaults.metering.maxPendingUsageQueries),
    /** Grid carbon intensity for gCO2e: set your region's figure. */
    gridIntensityGramsPerKwh: z.number().min(0).default(defaults.metering.gridIntensityGramsPerKwh),
  })
  .prefault({});

/**
 * The `ledger` section: which store keeps usage records. SQLite (the default) is one file beside one
 * gateway (`metering.ledgerPath`); PostgreSQL is shared by every replica of a fleet (docs/scale-out.md).
 */
export const ledgerConfigSchema = z
  .strictObject({
    store: z.enum(['sqlite', 'postgres']).default('sqlite'),
    /** `postgres://user:password@host:5432/db` (GRAVITY_LEDGER_URL); required with `store: postgres`. */
    url: z.string().min(1).optional(),
    /**
     * Apply the ledger schema's pending migrations at start (under a lock: replicas starting together
     * apply each once). false: a replica whose database is behind refuses to start; `gravity migrate`.
     */
    migrate: z.boolean().default(true),
    /** Drop whole days of records older than this many days (PostgreSQL: one partition a day). */
    retentionDays: z.number().int().min(1).optional(),
  })
  .prefault({})
  .superRefine((ledger, context) => {
    if (ledger.store === 'postgres' && ledger.url === undefined)
      context.addIssue({
        code: 'custom',
        path: ['url'],
        message: 'store: postgres needs a url (or GRAVITY_LEDGER_URL)',
      });
    if (ledger.store === 'sqlite' && ledger.url !== undefined)
      context.addIssue({ code: 'custom', path: ['url'], message: 'a url is for store: postgres' });
    if (ledger.store === 'sqlite' && ledger.retentionDays !== undefined)
      context.addIssue({
        code: 'custom',
        path: ['retentionDays'],
        message: 'retentionDays is for store: postgres (a SQLite ledger keeps everything)',
      });
  });

export type LedgerConfig = z.infer<typeof ledgerConfigSchema>;

/** The `pricing` section: $ per 1M tokens per model, scaled by the tier's multiplier. */
export const pricingConfigSchema = z
  .strictObject({
    default: defaultPriceSchema.default(defaults.pricing.default),
    models: z.record(z.string(), priceSchema).default({}),
    tierMultipliers: z
      .strictObject({
        priority: z.number().min(0).default(defaults.pricing.tierMultipliers.priority),
        default: z.number().min(0).default(defaults.pricing.tierMultipliers.default),
        flex: z.number().min(0).default(defaults.pricing.tierMultipliers.flex),
        batch: z.number().min(0).default(defaults.pricing.tierMultipliers.batch),
        scale: z.number().min(0).default(defaults.pricing.tierMultipliers.scale),
      })
      .prefault({}),
  })
  .prefault({});

export type MeteringConfig = z.output<typeof meteringConfigSchema>;
export type PricingConfig = z.output<typeof pricingConfigSchema>;
