import { z } from 'zod';
import type { PickerDefinition } from '../routing-plugin.js';

/** Uniformly at random, blind to scores: what a plain Kubernetes Service does. */
export const randomPicker = {
  type: 'random',
  params: z.strictObject({}).prefault({}),
  create: (_params, state) => ({
    type: 'random',
    pick: (candidates, count) => candidates[Math.floor(state.random() * count)] as number,
  }),
} satisfies PickerDefinition<Record<string, never>>;
