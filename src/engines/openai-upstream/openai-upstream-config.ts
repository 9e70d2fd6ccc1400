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
  /**
   * From sending a request until its first token (embeddings: the answer's first bytes); past it the
   * attempt fails with 504 `upstream_timeout` and is retried on another replica where there is one.
   */
  firstTokenTimeoutMs: z.number().int().min(1).default(defaults.upstream.firstTokenTimeoutMs),
  /** After the first token, the longest silence between reads of the body; past it the stream ends. */
  idleTimeoutMs: z.number().int().min(1).default(defaults.upstream.idleTimeoutMs),
  /**
   * The upstream serves `POST /v1/responses` itself (OpenAI, another Gravity): Responses requests go
   * there instead of being translated onto its chat endpoint. Gravity still stores the conversation: the
   * upstream gets earlier turns as input items and `store: false`.
   */
  responsesApi: z.boolean().default(false),
});

export type OpenAIUpstreamEngineConfig = z.infer<typeof openAIUpstreamConfigSchema>;
