import path from 'node:path';
import type { EngineDefinition } from '../engine-definition.js';
import { type LlamaCppEngineConfig, llamaCppConfigSchema } from './llama-cpp-config.js';
import { ensureTinyModel, type TinyModelKind } from './tiny-model.js';

/** Which tiny model Gravity generates for each name config may give. */
const generatedKinds: Record<
  Extract<LlamaCppEngineConfig['model'], { generated: string }>['generated'],
  TinyModelKind
> = {
  'gravity-tiny': 'alphabet',
  'gravity-tiny-random': 'random',
};

/** The in-process engine: one GGUF model run by llama.cpp on this host's CPU or GPU. */
export const llamaCppEngineDefinition = {
  type: 'llama-cpp',
  configSchema: llamaCppConfigSchema,
  capabilities: {
    servesSeveralModels: false,
    upstreamModelNames: false,
    modelledPower: false,
    workCounters: false,
  },
  hardware: (config) =>
    config.device === 'cuda'
      ? {
          processor: 'gpu',
          onThisHost: true,
          // The GPU's model is not known from config: the declared power model assumes the catalogue's
          // most common one (metering.energy.hardware overrides), fully busy when every slot is.
          powerModel: { hardware: 'h100-sxm', count: 1, saturationRequests: config.slots },
        }
      : {
          processor: 'cpu',
          onThisHost: true,
          // Each thread keeps about one core busy; a single-threaded engine is fully busy with one sequence.
          powerModel: { hardware: 'cpu-core', count: config.threads, saturationRequests: 1 },
        },
  applyTuning(config, tuning) {
    if (tuning.threads !== undefined) config.threads = tuning.threads;
    if (tuning.slots !== undefined) config.slots = tuning.slots;
    if (tuning.contextTokens !== undefined) config.contextTokens = tuning.contextTokens;
  },
  async create({ id, config, models, dataDir }) {
    const modelPath =
      'path' in config.model
        ? config.model.path
        : await ensureTinyModel(generatedKinds[config.model.generated], path.join(dataDir, 'models'));
    // Loaded on demand: node-llama-cpp is large, and a gateway in front of upstreams never needs it.
    const { LlamaCppEngine } = await import('./llama-cpp-engine.js');
    return new LlamaCppEngine({
      id,
      modelId: models[0]?.id ?? id,
      modelPath,
      contextTokens: config.contextTokens,
      slots: config.slots,
      threads: config.threads,
      batchSize: config.batchSize,
      embeddingContexts: config.embeddingContexts,
      device: config.device,
    });
  },
} satisfies EngineDefinition<typeof llamaCppConfigSchema>;
