import { z } from 'zod';
import { spendPeriods, tenantNamePattern } from '../admission/api-key.js';
import { defaults } from '../core/defaults.js';
import { engineConfigSchema } from '../engines/engine-registry.js';
import { routingConfigSchema } from '../routing/routing-config.js';
import { schedulingSettingsShape } from '../scheduling/scheduling-config.js';

const priceSchema = z.strictObject({
  inputPerMillionUsd: z.number().min(0),
  cachedInputPerMillionUsd: z.number().min(0).optional(),
  outputPerMillionUsd: z.number().min(0),
});

const modelConfigSchema = z.strictObject({
  /** Key of the entry in `engines` that serves the model. Give this or `engines`. */
  engine: z.string().min(1).optional(),
  /** Several engines (replicas) serving the model; `routing.policy` picks one per request. */
  engines: z.array(z.string().min(1)).min(1).optional(),
  /** The model name the upstream expects; defaults to the Gravity model id. For engine types that take upstream model names (openai-upstream). */
  upstreamModel: z.string().min(1).optional(),
  /** Context window, for upstream models whose window Gravity cannot read. */
  contextTokens: z.number().int().min(1).optional(),
});

function tierSchema(tierDefaults: { ttftMs: number; tpotMs: number; maxQueueWaitMs: number }) {
  return z
    .strictObject({
      ttftMs: z.number().positive().default(tierDefaults.ttftMs),
      tpotMs: z.number().positive().default(tierDefaults.tpotMs),
      maxQueueWaitMs: z.number().positive().default(tierDefaults.maxQueueWaitMs),
    })
    .prefault({});
}

/** A tenant's limits (docs/admission.md); an absent figure is no limit. */
const tenantLimitsSchema = z.strictObject({
  rpm: z.number().int().min(1).optional(),
  tpm: z.number().int().min(1).optional(),
  concurrency: z.number().int().min(1).optional(),
  spendUsd: z.number().min(0).optional(),
  period: z.enum(spendPeriods).default('month'),
});

/**
 * The YAML configuration, validated once at start. Objects are strict: an unknown key is an error that
 * names its path (a typo must not silently fall back to a default).
 */
export const configSchema = z.strictObject({
  server: z
    .strictObject({
      host: z.string().min(1).default(defaults.host),
      port: z.number().int().min(0).max(65_535).default(defaults.port),
      bodyLimitBytes: z.number().int().min(1024).default(defaults.bodyLimitBytes),
      shutdownGraceMs: z.number().int().min(0).default(defaults.shutdownGraceMs),
      logLevel: z
        .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
        .default(defaults.logLevel),
    })
    .prefault({}),
  /** Where Gravity keeps generated models (and, later, its ledger). */
  dataDir: z.string().min(1).default(defaults.dataDir),
  metering: z
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
      /** Grid carbon intensity for gCO2e: set your region's figure. */
      gridIntensityGramsPerKwh: z.number().min(0).default(defaults.metering.gridIntensityGramsPerKwh),
    })
    .prefault({}),
  /** What clients pay: $ per 1M tokens per model, scaled by the tier's multiplier (the latency premium). */
  pricing: z
    .strictObject({
      default: priceSchema.default(defaults.pricing.default),
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
    .prefault({}),
  /** Engine replicas by name; each entry's `type` picks its schema from the registered engine definitions. */
  engines: z.record(z.string().regex(/^[a-z0-9][a-z0-9._-]*$/i), engineConfigSchema),
  /** Model id as clients send it → the engine (or engines) that serve it. */
  models: z.record(z.string().min(1), modelConfigSchema),
  /** Latency targets and queue bounds per service tier (docs/scheduling.md). */
  tiers: z
    .strictObject({
      priority: tierSchema(defaults.tiers.priority),
      default: tierSchema(defaults.tiers.default),
      flex: tierSchema(defaults.tiers.flex),
      batch: tierSchema(defaults.tiers.batch),
    })
    .prefault({}),
  /** The gateway's queue in front of each engine replica: ordering, fairness, saturation. */
  scheduling: z
    .strictObject({
      enabled: z.boolean().default(defaults.scheduling.enabled),
      ...schedulingSettingsShape,
    })
    .prefault({}),
  /** The Batch API (/v1/files, /v1/batches): JSONL files of requests run at the batch tier. */
  batch: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Where uploaded and result files and `batches.sqlite` live; defaults to `<dataDir>`. */
      directory: z.string().min(1).optional(),
      maxConcurrentLines: z.number().int().min(1).max(1024).default(defaults.batch.maxConcurrentLines),
      /** Largest file `POST /v1/files` accepts (its own limit: `server.bodyLimitBytes` is for JSON). */
      fileLimitBytes: z.number().int().min(1024).default(defaults.batch.fileLimitBytes),
      maxLinesPerBatch: z.number().int().min(1).default(defaults.batch.maxLinesPerBatch),
    })
    .prefault({}),
  /** How a request picks one of its model's replicas: profiles, labels, residency, health (docs/routing.md). */
  routing: routingConfigSchema.prefault({}),
  /** API keys (docs/admission.md). With no key ever created, Gravity is open, on loopback only. */
  auth: z
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
    .prefault({}),
  /** Limits per tenant, on top of each key's own; `anonymous` limits open mode. */
  tenants: z.record(z.string().regex(tenantNamePattern), tenantLimitsSchema).default({}),
});

export type GravityConfig = z.infer<typeof configSchema>;
export type ModelConfig = z.infer<typeof modelConfigSchema>;
export type PricingConfig = GravityConfig['pricing'];
