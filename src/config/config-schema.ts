import { z } from 'zod';
import { spendPeriods, tenantNamePattern } from '../admission/api-key.js';
import { defaults } from '../core/defaults.js';
import { hardwareProfileNames } from '../metering/energy/hardware-power-profiles.js';
import { engineFlavours } from '../performance-model/calibration.js';
import { modelProfileNames } from '../performance-model/model-profiles.js';
import { routingConfigSchema } from '../routing/routing-config.js';
import { queueOrderingPolicyNames } from '../scheduling/queue-ordering.js';
import { schedulingSettingsShape } from '../scheduling/scheduling-config.js';

/** How a replica's energy and cost are measured or modelled, and how its requests' work is weighed. */
const engineMeteringSchema = z
  .strictObject({
    energy: z
      .strictObject({
        /** `auto`: NVML for GPU engines when nvidia-smi answers, RAPL for CPU engines when readable, else the power model. */
        source: z.enum(['auto', 'power-model', 'rapl', 'nvml']).default('auto'),
        /** Declared hardware for the power model (see src/metering/energy/hardware-power-profiles.ts). */
        hardware: z.enum(hardwareProfileNames).optional(),
        /** How many of `hardware` the replica uses (GPUs, or CPU cores). */
        count: z.number().int().min(1).optional(),
        idleWatts: z.number().min(0).optional(),
        maxWatts: z.number().min(0).optional(),
        gpuIndices: z.array(z.number().int().min(0)).min(1).default([0]),
        /** Concurrent requests at which the replica is fully utilised, for the power model. */
        saturationRequests: z.number().int().min(1).optional(),
      })
      .prefault({}),
    /** Hourly hardware cost amortised over what the replica served, or a paid API's per-token prices. */
    cost: z
      .union([
        z.strictObject({ hourlyUsd: z.number().min(0) }),
        z.strictObject({
          inputPerMillionUsd: z.number().min(0),
          cachedInputPerMillionUsd: z.number().min(0).optional(),
          outputPerMillionUsd: z.number().min(0),
        }),
      ])
      .optional(),
    /** Relative work of one prefill token and one decode token, for splitting energy and cost. */
    work: z
      .strictObject({
        prefillTokenWeight: z.number().min(0).default(defaults.metering.prefillTokenWeight),
        decodeTokenWeight: z.number().min(0).default(defaults.metering.decodeTokenWeight),
      })
      .prefault({}),
  })
  .prefault({});

const priceSchema = z.strictObject({
  inputPerMillionUsd: z.number().min(0),
  cachedInputPerMillionUsd: z.number().min(0).optional(),
  outputPerMillionUsd: z.number().min(0),
});

/**
 * The YAML configuration, validated once at start. Objects are strict: an unknown key is an error that
 * names its path (a typo must not silently fall back to a default).
 */
const llamaCppEngineSchema = z.strictObject({
  type: z.literal('llama-cpp'),
  /** A GGUF file path, or the name of a model Gravity generates itself. */
  model: z.union([
    z.strictObject({ path: z.string().min(1) }),
    z.strictObject({ generated: z.enum(['gravity-tiny', 'gravity-tiny-random']) }),
  ]),
  contextTokens: z.number().int().min(16).default(defaults.llamaCpp.contextTokens),
  slots: z.number().int().min(1).max(256).default(defaults.llamaCpp.slots),
  threads: z.number().int().min(1).max(256).default(defaults.llamaCpp.threads),
  batchSize: z.number().int().min(1).default(defaults.llamaCpp.batchSize),
  metering: engineMeteringSchema,
});

const openAIUpstreamEngineSchema = z.strictObject({
  type: z.literal('openai-upstream'),
  baseUrl: z.url({ protocol: /^https?$/ }),
  /** Name of the environment variable holding the upstream's API key (keys never live in config files). */
  apiKeyEnv: z.string().min(1).optional(),
  connectTimeoutMs: z.number().int().min(1).default(defaults.upstream.connectTimeoutMs),
  maxConcurrentRequests: z.number().int().min(1).default(defaults.upstream.maxConcurrentRequests),
  metering: engineMeteringSchema,
});

/**
 * One replica emulated by the performance model (src/performance-model/): it answers with synthetic text
 * at the speed, memory and power the declared hardware and model would have. Whether the model fits the
 * hardware is checked when the engine is created.
 */
const emulatedEngineSchema = z.strictObject({
  type: z.literal('emulated'),
  hardware: z.enum(hardwareProfileNames),
  /** Devices per replica: the tensor-parallel degree. */
  devices: z.number().int().min(1).max(64).default(defaults.emulated.devices),
  /** A model profile name (src/performance-model/model-profiles.ts), or a GGUF file whose shape is read. */
  model: z.union([z.enum(modelProfileNames), z.strictObject({ gguf: z.string().min(1) })]),
  /** Weight precision of a named profile (a GGUF file's own precision is used as stored). */
  weightDtype: z.enum(['bf16', 'fp8', 'int4']).optional(),
  kvDtype: z.enum(['bf16', 'fp8']).optional(),
  /** Which engine's per-step host overhead to model (vllm-v1 on GPUs by default). */
  flavour: z.enum(engineFlavours).optional(),
  /** vLLM's scheduler limits; defaults follow vLLM's per-GPU defaults. */
  maxNumSeqs: z.number().int().min(1).optional(),
  maxNumBatchedTokens: z.number().int().min(1).optional(),
  prefixCaching: z.boolean().default(defaults.emulated.prefixCaching),
  /** Context window; defaults to the model's. */
  contextTokens: z.number().int().min(16).optional(),
  /** Which waiting request is admitted next: arrival order, or service tier first. */
  ordering: z.enum(queueOrderingPolicyNames).default(defaults.emulated.ordering),
  metering: engineMeteringSchema,
});

export const engineConfigSchema = z.discriminatedUnion('type', [
  llamaCppEngineSchema,
  openAIUpstreamEngineSchema,
  emulatedEngineSchema,
]);

const modelConfigSchema = z.strictObject({
  /** Key of the entry in `engines` that serves the model. Give this or `engines`. */
  engine: z.string().min(1).optional(),
  /** Several engines (replicas) serving the model; `routing.policy` picks one per request. */
  engines: z.array(z.string().min(1)).min(1).optional(),
  /** The model name the upstream expects; defaults to the Gravity model id. Upstream engines only. */
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
export type EngineConfig = z.infer<typeof engineConfigSchema>;
export type ModelConfig = z.infer<typeof modelConfigSchema>;
export type EmulatedEngineConfig = z.infer<typeof emulatedEngineSchema>;

/** The engines that serve a model, whichever of `engine` and `engines` the config used. */
export function servingEngineIds(model: ModelConfig): string[] {
  return model.engines ?? (model.engine === undefined ? [] : [model.engine]);
}
export type EngineMeteringConfig = z.infer<typeof engineMeteringSchema>;
export type PricingConfig = GravityConfig['pricing'];
