import path from 'node:path';
import type { EngineConfig, GravityConfig } from '../config/config-schema.js';
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
};

export async function createEngines(
  config: GravityConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<EngineAdapter[]> {
  const engines: EngineAdapter[] = [];
  for (const [id, engineConfig] of Object.entries(config.engines)) {
    const models = Object.entries(config.models)
      .filter(([, model]) => model.engine === id)
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
