import { z } from 'zod';
import { defaults } from './defaults.js';

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
});

const openAIUpstreamEngineSchema = z.strictObject({
  type: z.literal('openai-upstream'),
  baseUrl: z.url({ protocol: /^https?$/ }),
  /** Name of the environment variable holding the upstream's API key (keys never live in config files). */
  apiKeyEnv: z.string().min(1).optional(),
  connectTimeoutMs: z.number().int().min(1).default(defaults.upstream.connectTimeoutMs),
  maxConcurrentRequests: z.number().int().min(1).default(defaults.upstream.maxConcurrentRequests),
});

export const engineConfigSchema = z.discriminatedUnion('type', [
  llamaCppEngineSchema,
  openAIUpstreamEngineSchema,
]);

const modelConfigSchema = z.strictObject({
  /** Key of an entry in `engines`. */
  engine: z.string().min(1),
  /** The model name the upstream expects; defaults to the Gravity model id. Upstream engines only. */
  upstreamModel: z.string().min(1).optional(),
  /** Context window, for upstream models whose window Gravity cannot read. */
  contextTokens: z.number().int().min(1).optional(),
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
  engines: z.record(z.string().regex(/^[a-z0-9][a-z0-9._-]*$/i), engineConfigSchema),
  /** Model id as clients send it → the engine that serves it. */
  models: z.record(z.string().min(1), modelConfigSchema),
});

export type GravityConfig = z.infer<typeof configSchema>;
export type EngineConfig = z.infer<typeof engineConfigSchema>;
export type ModelConfig = z.infer<typeof modelConfigSchema>;
