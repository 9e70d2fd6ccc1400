import type { ReplicaSchedulerSettings } from './replica-scheduler.js';
import type { SchedulingSettings } from './scheduling-config.js';
import {
  type FairnessPolicy,
  fairnessPolicies,
  type OrderingPolicy,
  orderingPolicies,
  type SaturationPolicy,
  saturationPolicies,
} from './scheduling-policies.js';

/**
 * The scheduler's settings from validated `scheduling:` settings (Gravity's config or a scenario's) and
 * tier targets; `slots` is what the replica runs at once.
 */
export function schedulerSettings(
  scheduling: SchedulingSettings,
  tiers: ReplicaSchedulerSettings['tiers'],
  slots: number,
): ReplicaSchedulerSettings {
  return {
    slots,
    tiers,
    tierBands: scheduling.tierBands,
    ordering: orderingPolicies[scheduling.ordering] as OrderingPolicy,
    fairness: fairnessPolicies[scheduling.fairness] as FairnessPolicy,
    saturation: saturationPolicies[scheduling.saturation] as SaturationPolicy,
    batchReserveFraction: scheduling.batchReserveFraction,
    priorityReserveFraction: scheduling.priorityReserveFraction,
    inputTokenWeight: scheduling.inputTokenWeight,
    outputTokenWeight: scheduling.outputTokenWeight,
  };
}
