import { z } from 'zod';
import { invertedMinMax, replicaLoad, type ScorerDefinition } from '../routing-plugin.js';
import { Scratch } from './scratch.js';

/**
 * Fewer requests in the replica (waiting + running) scores higher, min–max normalised over the
 * candidates: the least loaded gets 1, the most loaded 0, and all get 1 when loads are equal.
 */
export const queueDepthScorer = {
  type: 'queue-depth',
  params: z.strictObject({}).prefault({}),
  create: () => {
    const scratch = new Scratch();
    return {
      type: 'queue-depth',
      score(_request, replicas, candidates, count, scores) {
        const loads = scratch.get(count);
        for (let k = 0; k < count; k++) loads[k] = replicaLoad(replicas[candidates[k] as number]!);
        invertedMinMax(loads, count, scores);
      },
    };
  },
} satisfies ScorerDefinition<Record<string, never>>;
