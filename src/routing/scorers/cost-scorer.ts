import { z } from 'zod';
import { invertedMinMax, type ScorerDefinition } from '../routing-plugin.js';
import { Scratch } from './scratch.js';

/**
 * Cheaper replicas score higher (label `costPerMillionTokensUsd`, min–max over the candidates). A replica
 * without the label counts as the most expensive: what it costs is unknown.
 */
export const costScorer = {
  type: 'cost',
  params: z.strictObject({}).prefault({}),
  create: () => labelScorer('cost', (labels) => labels?.costPerMillionTokensUsd),
} satisfies ScorerDefinition<Record<string, never>>;

/**
 * Less energy per token scores higher (label `energyJoulesPerToken`); unlabelled replicas count as the
 * hungriest.
 */
export const energyScorer = {
  type: 'energy',
  params: z.strictObject({}).prefault({}),
  create: () => labelScorer('energy', (labels) => labels?.energyJoulesPerToken),
} satisfies ScorerDefinition<Record<string, never>>;

function labelScorer(
  type: string,
  read: (labels: import('../routing-policy.js').ReplicaLabels | undefined) => number | undefined,
) {
  const scratch = new Scratch();
  return {
    type,
    score(
      _request: unknown,
      replicas: readonly import('../routing-policy.js').ReplicaLoadView[],
      candidates: Int32Array,
      count: number,
      scores: Float64Array,
    ) {
      const values = scratch.get(count);
      let max = 0;
      for (let k = 0; k < count; k++) {
        const value = read(replicas[candidates[k] as number]!.labels);
        values[k] = value ?? Number.NaN;
        if (value !== undefined && value > max) max = value;
      }
      for (let k = 0; k < count; k++) if (Number.isNaN(values[k])) values[k] = max;
      invertedMinMax(values, count, scores);
    },
  };
}
