import { z } from 'zod';
import type { PickerDefinition } from '../routing-plugin.js';

/** Scores closer than this are a tie (float sums of equal inputs can differ in the last bits). */
const tieEpsilon = 1e-12;

/**
 * The candidate with the highest weighted score; ties are broken uniformly at random (reservoir sampling
 * over the tied candidates), so equal replicas share load instead of the first one taking every tie.
 */
export const maxScorePicker = {
  type: 'max-score',
  params: z.strictObject({}).prefault({}),
  create: (_params, state) => ({
    type: 'max-score',
    pick(candidates, count, totals) {
      let best = 0;
      let bestScore = Number.NEGATIVE_INFINITY;
      let ties = 0;
      for (let k = 0; k < count; k++) {
        const score = totals[k] as number;
        if (score > bestScore + tieEpsilon) {
          best = k;
          bestScore = score;
          ties = 1;
        } else if (score >= bestScore - tieEpsilon && state.random() * ++ties < 1) best = k;
      }
      return candidates[best] as number;
    },
  }),
} satisfies PickerDefinition<Record<string, never>>;
