import { z } from 'zod';
import type { ScorerDefinition } from '../routing-plugin.js';

/**
 * Lower recent latency scores higher: the EWMA of each replica's TTFT and inter-token latency
 * (ReplicaStatistics), as best / own for each, mixed by `ttftWeight`. A replica with no samples yet gets
 * 1, so new replicas are tried rather than starved.
 */
export const latencyScorer = {
  type: 'latency',
  params: z.strictObject({ ttftWeight: z.number().min(0).max(1).default(0.5) }).prefault({}),
  create: (params, state) => ({
    type: 'latency',
    score(_request, replicas, candidates, count, scores) {
      let bestTtft = Number.POSITIVE_INFINITY;
      let bestItl = Number.POSITIVE_INFINITY;
      for (let k = 0; k < count; k++) {
        const latency = state.statistics.latency(replicas[candidates[k] as number]!.id);
        if (latency?.ttftMs != null) bestTtft = Math.min(bestTtft, latency.ttftMs);
        if (latency?.interTokenMs != null) bestItl = Math.min(bestItl, latency.interTokenMs);
      }
      for (let k = 0; k < count; k++) {
        const latency = state.statistics.latency(replicas[candidates[k] as number]!.id);
        const ttft =
          latency?.ttftMs == null || latency.ttftMs <= 0 ? 1 : Math.min(1, bestTtft / latency.ttftMs);
        const itl =
          latency?.interTokenMs == null || latency.interTokenMs <= 0
            ? 1
            : Math.min(1, bestItl / latency.interTokenMs);
        scores[k] = params.ttftWeight * ttft + (1 - params.ttftWeight) * itl;
      }
    },
  }),
} satisfies ScorerDefinition<{ ttftWeight: number }>;
