import type { GravityConfig } from '../config/config-schema.js';
import type { Clock } from '../core/clock.js';
import type { EngineAdapter } from '../engines/engine-adapter.js';
import { LiveReplicaScheduler } from './live-replica-scheduler.js';
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

/**
 * The queue in front of one engine. It lets through as many requests as the engine runs at once (its
 * slots, or an emulated/vLLM replica's max_num_seqs), so the engine never queues internally and the
 * order of what waits is decided here.
 */
export function createLiveScheduler(config: GravityConfig, engine: EngineAdapter, clock: Clock) {
  const slots = config.scheduling.slotsPerReplica ?? Math.max(1, engine.load().slotsTotal);
  return new LiveReplicaScheduler(schedulerSettings(config.scheduling, config.tiers, slots), clock);
}
