import { z } from 'zod';
import type { FilterDefinition } from '../routing-plugin.js';

/**
 * Drops replicas whose context window cannot hold the prompt plus the completion asked for. Soft: the
 * prompt's size is routing's estimate (~4 characters per token), so when no replica fits by it the
 * request still goes to one and the engine answers with its exact context_length_exceeded.
 */
export const contextFitsFilter = {
  type: 'context-fits',
  params: z.strictObject({}).prefault({}),
  create: () => ({
    type: 'context-fits',
    soft: true,
    accepts: (request, replica) =>
      replica.contextTokens === null ||
      replica.contextTokens === undefined ||
      request.promptTokens + (request.maxTokens ?? 0) <= replica.contextTokens,
    rejection: (request) =>
      `no replica has a context window for ${request.promptTokens} prompt tokens plus ${request.maxTokens ?? 0} completion tokens`,
  }),
} satisfies FilterDefinition<Record<string, never>>;
