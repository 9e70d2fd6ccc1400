import { z } from 'zod';
import { replicaLoad, type ScorerDefinition } from '../routing-plugin.js';
import { Scratch } from './scratch.js';

const paramsSchema = z
  .strictObject({
    /**
     * Bounded load (consistent hashing with bounded loads, as SGLang's router and llm-d weigh prefix
     * against load): a replica holding more than `factor` × the candidates' mean load plus
     * `slackRequests` gets no affinity credit, so a hot prefix spills to another replica (which then
     * caches it too) instead of piling onto one. Null turns the bound off: prefix-only routing.
     */
    loadBound: z
      .strictObject({
        factor: z.number().min(1).default(1.25),
        slackRequests: z.number().min(0).default(4),
      })
      .nullable()
      .default({ factor: 1.25, slackRequests: 4 }),
  })
  .prefault({});

/**
 * Prefix-cache affinity: the share of the prompt's leading blocks the router recently sent to each
 * replica (PrefixIndex), in [0, 1]. The index is the router's memory of its own decisions, not the
 * engines' caches, so it works for any engine, upstream ones included.
 */
export const prefixAffinityScorer = {
  type: 'prefix-affinity',
  params: paramsSchema,
  create: (params, state) => {
    const matched = new Scratch();
    const ids: string[] = [];
    return {
      type: 'prefix-affinity',
      usesPromptBlocks: true,
      score(request, replicas, candidates, count, scores, nowMs) {
        const hashes = request.promptBlockHashes;
        if (!hashes || hashes.length === 0) {
          for (let k = 0; k < count; k++) scores[k] = 0;
          return;
        }
        ids.length = count;
        for (let k = 0; k < count; k++) ids[k] = replicas[candidates[k] as number]!.id;
        const blocks = matched.get(count);
        state.prefixIndex.matchLeadingBlocks(hashes, ids, count, blocks, nowMs);
        let capRequests = Number.POSITIVE_INFINITY;
        if (params.loadBound) {
          let total = 0;
          for (let k = 0; k < count; k++) total += replicaLoad(replicas[candidates[k] as number]!);
          capRequests = params.loadBound.factor * (total / count) + params.loadBound.slackRequests;
        }
        for (let k = 0; k < count; k++) {
          const overloaded = replicaLoad(replicas[candidates[k] as number]!) > capRequests;
          scores[k] = overloaded ? 0 : (blocks[k] as number) / hashes.length;
        }
      },
    };
  },
} satisfies ScorerDefinition<z.infer<typeof paramsSchema>>;
