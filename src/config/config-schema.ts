import { z } from 'zod';
import { authConfigSchema, stateConfigSchema, tenantsConfigSchema } from '../admission/admission-config.js';
import { batchConfigSchema } from '../batch/batch-config.js';
import { defaults } from '../core/defaults.js';
import { engineConfigSchema } from '../engines/engine-registry.js';
import { eppConfigSchema } from '../epp/epp-config.js';
import {
  ledgerConfigSchema,
  meteringConfigSchema,
  pricingConfigSchema,
} from '../metering/metering-config.js';
import { responsesConfigSchema } from '../responses/responses-config.js';
import { routingConfigSchema } from '../routing/routing-config.js';
import { schedulingSettingsShape } from '../scheduling/scheduling-config.js';
import { telemetryConfigSchema } from '../telemetry/telemetry-config.js';

const modelConfigSchema = z.strictObject({
  /** Key of the entry in `engines` that serves the model. Give this or `engines`. */
  engine: z.string().min(1).optional(),
  /** Several engines (replicas) serving the model; `routing.policy` picks one per request. */
  engines: z.array(z.string().min(1)).min(1).optional(),
  /** The model name the upstream expects; defaults to the Gravity model id. For engine types that take upstream model names (openai-upstream). */
  upstreamModel: z.string().min(1).optional(),
  /** Context window of an upstream model; absent: read from the upstream's own `GET /models` (vLLM's `max_model_len` …). */
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
      /** A response waiting this long for a client that reads nothing ends as a client disconnect (499). */
      writeStallTimeoutMs: z.number().int().min(1).default(defaults.writeStallTimeoutMs),
      logLevel: z
        .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
        .default(defaults.logLevel),
      /** Time allowed for a request's headers to arrive, from its first byte (or the connection's start). */
      headersTimeoutMs: z.number().int().min(1).default(defaults.http.headersTimeoutMs),
      /** Time allowed for a request's whole body to arrive once its headers are in; 408 after. */
      bodyTimeoutMs: z.number().int().min(1).default(defaults.http.bodyTimeoutMs),
      /** The same for file uploads (`POST /v1/files`), which are larger. */
      uploadBodyTimeoutMs: z.number().int().min(1).default(defaults.http.uploadBodyTimeoutMs),
      /** A connection with no bytes either way for this long is closed; 0: no such bound (see the docs). */
      idleTimeoutMs: z.number().int().min(0).default(defaults.http.idleTimeoutMs),
      /** Connections open at once; further ones are closed as they arrive. */
      maxConnections: z.number().int().min(1).default(defaults.http.maxConnections),
    })
    .prefault({}),
  /** `GET /metrics` (docs/metrics.md). */
  metrics: z
    .strictObject({
      /** true: `/metrics` needs an admin key from every client, loopback included (once keys exist). */
      requireAdminKey: z.boolean().default(defaults.metrics.requireAdminKey),
      /** Serve `/metrics` on this port instead (no key asked there), and not on the API's; 0: any free port. */
      port: z.number().int().min(0).max(65_535).optional(),
      /** The address of `metrics.port`: loopback unless a scraper elsewhere needs it. */
      host: z.string().min(1).default(defaults.host),
      /** Tenants with their own `tenant` label value, by first appearance; the rest share `(other)`. */
      maxTenantLabels: z.number().int().min(0).default(defaults.metrics.maxTenantLabels),
    })
    .prefault({}),
  /** Where Gravity keeps generated models (and, later, its ledger). */
  dataDir: z.string().min(1).default(defaults.dataDir),
  metering: meteringConfigSchema,
  /** Which store keeps the usage records: SQLite beside one gateway, or PostgreSQL shared by replicas. */
  ledger: ledgerConfigSchema,
  /** What clients pay: $ per 1M tokens per model, scaled by the tier's multiplier (the latency premium). */
  pricing: pricingConfigSchema,
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
  batch: batchConfigSchema,
  /** `/v1/responses`: where stored responses live and how long they are kept (docs/openai-compatibility.md). */
  responses: responsesConfigSchema,
  /** How a request picks one of its model's replicas: profiles, labels, residency, health (docs/routing.md). */
  routing: routingConfigSchema.prefault({}),
  /** API keys (docs/admission.md). With no key ever created, Gravity is open, on loopback only. */
  auth: authConfigSchema,
  /** Limits per tenant, on top of each key's own; `anonymous` limits open mode. */
  tenants: tenantsConfigSchema,
  /** Where limits, budgets and keys live: this process, or a Redis every replica shares. */
  state: stateConfigSchema,
  /** The Endpoint Picker: Envoy's ext_proc service picking model servers (docs/kubernetes.md). */
  epp: eppConfigSchema,
  /** OpenTelemetry traces of each request over OTLP; off unless `telemetry.otlp` is set (src/telemetry/). */
  telemetry: telemetryConfigSchema,
});

export type GravityConfig = z.infer<typeof configSchema>;
export type ModelConfig = z.infer<typeof modelConfigSchema>;
