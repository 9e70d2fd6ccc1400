import { z } from 'zod';
import type { ScorerDefinition } from '../routing-plugin.js';

/** Free KV cache scores higher: 1 − used fraction; `unknownScore` where the replica cannot tell. */
export const kvCacheScorer = {
  type: 'kv-cache',
  params: z.strictObject({ unknownScore: z.number().min(0).max(1).default(0.5) }).prefault({}),
  create: (params) => ({
    type: 'kv-cache',
    score(_request, replicas, candidates, count, scores) {
      for (let k = 0; k < count; k++) {
        const used = replicas[candidates[k] as number]!.kvUsedFraction;
        scores[k] = used === null ? params.unknownScore : Math.min(1, Math.max(0, 1 - used));
      }
    },
  }),
} satisfies ScorerDefinition<{ unknownScore: number }>;
