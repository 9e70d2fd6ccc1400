import type { EngineDefinition } from '../engine-definition.js';
import { openAIUpstreamConfigSchema } from './openai-upstream-config.js';
import { OpenAIUpstreamEngine } from './openai-upstream-engine.js';

/** An OpenAI-compatible server elsewhere, serving any number of models under their own names. */
export const openAIUpstreamEngineDefinition = {
  type: 'openai-upstream',
  configSchema: openAIUpstreamConfigSchema,
  capabilities: {
    servesSeveralModels: true,
    upstreamModelNames: true,
    modelledPower: false,
    workCounters: false,
  },
  // A remote server cannot be measured from here: the power model assumes one H100 SXM, fully busy at 16
  // concurrent requests, unless `metering.energy` says otherwise.
  hardware: () => ({
    processor: 'gpu',
    onThisHost: false,
    powerModel: { hardware: 'h100-sxm', count: 1, saturationRequests: 16 },
  }),
  async create({ id, config, models, env }) {
    return new OpenAIUpstreamEngine({
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
      timeouts: { firstTokenTimeoutMs: config.firstTokenTimeoutMs, idleTimeoutMs: config.idleTimeoutMs },
      responsesApi: config.responsesApi,
    });
  },
} satisfies EngineDefinition<typeof openAIUpstreamConfigSchema>;
