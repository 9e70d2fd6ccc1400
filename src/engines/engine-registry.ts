import path from 'node:path';
import { type EngineConfig, type GravityConfig, servingEngineIds } from '../config/config-schema.js';
import { ConfigError } from '../core/config-error.js';
import { ReplicaSpecError } from '../performance-model/replica-spec.js';
import { queueOrderingPolicies } from '../scheduling/queue-ordering.js';
import { EmulatedEngine } from './emulated/emulated-engine.js';
import { emulatedReplicaSpec, loadEmulatedModel } from './emulated/emulated-replica-spec.js';
import type { EngineAdapter } from './engine-adapter.js';
import { ensureTinyModel, type TinyModelKind } from './llama-cpp/tiny-model.js';
import { OpenAIUpstreamEngine } from './openai-upstream/openai-upstream-engine.js';

const generatedKinds: Record<string, TinyModelKind> = {
  'gravity-tiny': 'alphabet',
  'gravity-tiny-random': 'random',
};

type EngineFactory<Config extends EngineConfig> = (options: {
  id: string;
  config: Config;
  /** Model ids that config maps to this engine. */
  models: Array<{ id: string; upstreamModel: string | undefined; contextTokens: number | undefined }>;
  dataDir: string;
  env: NodeJS.ProcessEnv;
}) => Promise<EngineAdapter>;

/** Engine factories by the `type` name used in config. A new engine type registers here. */
const engineFactories: {
  [Type in EngineConfig['type']]: EngineFactory<Extract<EngineConfig, { type: Type }>>;
} = {
  'llama-cpp': async ({ id, config, models, dataDir }) => {
    const modelPath =
      'path' in config.model
        ? config.model.path
        : await ensureTinyModel(
            generatedKinds[config.model.generated] as TinyModelKind,
            path.join(dataDir, 'models'),
          );
    // Loaded on demand: node-llama-cpp is large, and a gateway in front of upstreams never needs it.
    const { LlamaCppEngine } = await import('./llama-cpp/llama-cpp-engine.js');
    return new LlamaCppEngine({
      id,
      modelId: models[0]?.id ?? id,
      modelPath,
      contextTokens: config.contextTokens,
      slots: config.slots,
      threads: config.threads,
      batchSize: config.batchSize,
    });
  },
  'openai-upstream': async ({ id, config, models, env }) =>
    new OpenAIUpstreamEngine({
      id,
      baseUrl: config.baseUrl,
      apiKey: config.apiKeyEnv ? (env[config.apiKeyEnv] ?? null) : null,
      models: models.map((model) => ({
        id: model.id,
        upstreamModel: model.upstreamModel ?? model.id,
        contextTokens: model.contextTokens ?? null,
      })),
      connectTimeoutMs: config.connectTimeoutMs,
      maxConcurrentRequests: config.maxConcurrentRequests,
    }),
  emulated: async ({ id, config, models }) => {
    let model: Awaited<ReturnType<typeof loadEmulatedModel>>;
    try {
      model = await loadEmulatedModel(config);
    } catch (error) {
      throw new ConfigError(
        [`engines.${id}.model.gguf: ${(error as Error).message}`],
        'checked at engine start',
      );
    }
    let spec: ReturnType<typeof emulatedReplicaSpec>;
    try {
      spec = emulatedReplicaSpec(config, model);
    } catch (error) {
      // Said like a configuration error: the fix is in the config (more devices, smaller model).
      if (error instanceof ReplicaSpecError)
        throw new ConfigError([`engines.${id}: ${error.message}`], 'checked at engine start');
      throw error;
    }
    return new EmulatedEngine({
      id,
      modelId: models[0]?.id ?? id,
      spec,
      ordering: queueOrderingPolicies[config.ordering] ?? queueOrderingPolicies.fcfs!,
      contextTokens: config.contextTokens ?? models[0]?.contextTokens ?? model.contextTokens,
    });
  },
};

export async function createEngines(
  config: GravityConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<EngineAdapter[]> {
  const engines: EngineAdapter[] = [];
  for (const [id, engineConfig] of Object.entries(config.engines)) {
    const models = Object.entries(config.models)
      .filter(([, model]) => servingEngineIds(model).includes(id))
      .map(([modelId, model]) => ({
        id: modelId,
        upstreamModel: model.upstreamModel,
        contextTokens: model.contextTokens,
      }));
    const factory = engineFactories[engineConfig.type] as EngineFactory<EngineConfig>;
    engines.push(await factory({ id, config: engineConfig, models, dataDir: config.dataDir, env }));
  }
  return engines;
}
