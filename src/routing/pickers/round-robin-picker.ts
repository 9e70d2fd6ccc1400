import { z } from 'zod';
import type { PickerDefinition } from '../routing-plugin.js';

/** Every candidate in turn, blind to scores: the baseline load-aware routing is measured against. */
export const roundRobinPicker = {
  type: 'round-robin',
  params: z.strictObject({}).prefault({}),
  create: () => {
    let next = 0;
    return {
      type: 'round-robin',
      pick(candidates, count) {
        const k = next % count;
        next = k + 1;
        return candidates[k] as number;
      },
    };
  },
} satisfies PickerDefinition<Record<string, never>>;
