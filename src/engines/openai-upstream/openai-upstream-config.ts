import { z } from 'zod';
import { defaults } from '../../core/defaults.js';
import { defineEngineConfigSchema } from '../engine-definition.js';

/** Any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp server, Ollama, a paid API, another Gravity). */
export const openAIUpstreamConfigSchema = defineEngineConfigSchema('openai-upstream', {
  baseUrl: z.url({ protocol: /^https?$/ }),
  /** Name of the environment variable holding the upstream's API key (keys never live in config files). */
  apiKeyEnv: z.string().min(1).optional(),
  connectTimeoutMs: z.number().int().min(1).default(defaults.upstream.connectTimeoutMs),
  maxConcurrentRequests: z.number().int().min(1).default(defaults.upstream.maxConcurrentRequests),
});

export type OpenAIUpstreamEngineConfig = z.infer<typeof openAIUpstreamConfigSchema>;
