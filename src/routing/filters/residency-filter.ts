import { z } from 'zod';
import type { FilterDefinition, ResidencyPolicy } from '../routing-plugin.js';

/**
 * A tenant's data-residency policy (`routing.residency.<tenant>`): only replicas labelled with an allowed
 * region and provider may serve it. A replica without the label a policy restricts is not allowed (an
 * unlabelled replica could be anywhere). Tenants without a policy pass everything.
 */
export const residencyFilter = {
  type: 'residency',
  params: z.strictObject({}).prefault({}),
  create: (_params, state) => {
    const policyOf = (tenant: string | null | undefined): ResidencyPolicy | undefined =>
      state.residency.get(tenant ?? 'anonymous');
    return {
      type: 'residency',
      accepts: (request, replica) => {
        if (state.residency.size === 0) return true;
        const policy = policyOf(request.tenant);
        if (!policy) return true;
        const labels = replica.labels;
        if (policy.regions && !(labels?.region !== undefined && policy.regions.includes(labels.region)))
          return false;
        if (
          policy.providers &&
          !(labels?.provider !== undefined && policy.providers.includes(labels.provider))
        )
          return false;
        return true;
      },
      rejection: (request) => {
        const tenant = request.tenant ?? 'anonymous';
        return `the data-residency policy routing.residency.${tenant} (${describeResidency(policyOf(tenant))}) allows none of the replicas serving this model`;
      },
    };
  },
} satisfies FilterDefinition<Record<string, never>>;

export function describeResidency(policy: ResidencyPolicy | undefined): string {
  if (!policy) return 'no policy';
  const parts: string[] = [];
  if (policy.regions) parts.push(`regions: ${policy.regions.join(', ') || 'none'}`);
  if (policy.providers) parts.push(`providers: ${policy.providers.join(', ') || 'none'}`);
  return parts.join('; ') || 'anything';
}
