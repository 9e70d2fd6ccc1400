import { z } from 'zod';
import { defaults } from '../../core/defaults.js';
import { defineEngineConfigSchema } from '../engine-definition.js';

/** A GGUF model run in Gravity's own process by llama.cpp, on the CPU or an NVIDIA GPU. */
export const llamaCppConfigSchema = defineEngineConfigSchema('llama-cpp', {
  /** A GGUF file path, or the name of a model Gravity generates itself. */
  model: z.union([
    z.strictObject({ path: z.string().min(1) }),
    z.strictObject({ generated: z.enum(['gravity-tiny', 'gravity-tiny-random']) }),
  ]),
  contextTokens: z.number().int().min(16).default(defaults.llamaCpp.contextTokens),
  slots: z.number().int().min(1).max(256).default(defaults.llamaCpp.slots),
  threads: z.number().int().min(1).max(256).default(defaults.llamaCpp.threads),
  batchSize: z.number().int().min(1).default(defaults.llamaCpp.batchSize),
  /**
   * Embedding contexts for `/v1/embeddings` (each embeds one input at a time, created on first use);
   * 0 says this engine serves no embeddings, so routing keeps embeddings requests off it.
   */
  embeddingContexts: z.number().int().min(0).max(64).default(defaults.llamaCpp.embeddingContexts),
  /**
   * Where the model runs. `cuda`: every layer on the GPU, through a node-llama-cpp CUDA build (its
   * prebuilt package, or one built from its bundled source with `node-llama-cpp source build --gpu
   * cuda`); Gravity never builds or downloads one at start, so a missing build fails the start.
   */
  device: z.enum(['cpu', 'cuda']).default('cpu'),
});

export type LlamaCppEngineConfig = z.infer<typeof llamaCppConfigSchema>;
