import { z } from 'zod';
import { featureParameter, firstUnservedFeature } from '../../core/request-features.js';
import type { FilterDefinition } from '../routing-plugin.js';

/**
 * Drops replicas whose engine cannot serve a feature the request uses (tools, response_format, image
 * inputs, a vendor extra, a Responses built-in tool …: core/request-features.ts, one rule for the
 * allow- and deny-lists). Hard: a replica that cannot serve the request
 * would only answer it with a 400. A request no replica can serve is refused with a 400 naming the
 * parameter and the engines.
 */
export const servesFeaturesFilter = {
  type: 'serves-features',
  params: z.strictObject({}).prefault({}),
  create: () => ({
    type: 'serves-features',
    accepts: (request, replica) => firstUnservedFeature(request.features, replica) === null,
    rejection: (request) =>
      `no replica serves ${(request.features ?? []).map((feature) => `'${featureParameter(feature)}'`).join(', ')}`,
  }),
} satisfies FilterDefinition<Record<string, never>>;
