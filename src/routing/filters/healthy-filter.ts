import { z } from 'zod';
import type { FilterDefinition } from '../routing-plugin.js';

/** Drops replicas that health checks or outlier detection have ejected (`healthy: false`). */
export const healthyFilter = {
  type: 'healthy',
  params: z.strictObject({}).prefault({}),
  create: () => ({
    type: 'healthy',
    accepts: (_request, replica) => replica.healthy !== false,
    rejection: () => 'every replica serving the model is unhealthy or ejected; retry shortly',
  }),
} satisfies FilterDefinition<Record<string, never>>;
