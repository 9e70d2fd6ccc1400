import { z } from 'zod';
import { defaults } from '../core/defaults.js';
import { fairnessPolicies, orderingPolicies, saturationPolicies } from './scheduling-policies.js';

/**
 * The scheduler's policy settings, as Gravity's config (`scheduling:`) and a simulation scenario
 * (`scheduling:`) both write them: one schema, one set of defaults, so a scenario simulates the scheduler
 * `gravity serve` runs unless it says otherwise.
 */
export const schedulingSettingsShape = {
  /** Tiers as strict bands (priority first); false gives one first-come-first-served queue. */
  tierBands: z.boolean().default(defaults.scheduling.tierBands),
  ordering: z
    .enum(Object.keys(orderingPolicies) as [string, ...string[]])
    .default(defaults.scheduling.ordering),
  fairness: z
    .enum(Object.keys(fairnessPolicies) as [string, ...string[]])
    .default(defaults.scheduling.fairness),
  saturation: z
    .enum(Object.keys(saturationPolicies) as [string, ...string[]])
    .default(defaults.scheduling.saturation),
  batchReserveFraction: z.number().min(0).max(1).default(defaults.scheduling.batchReserveFraction),
  /** Share of slots only priority may take, so a priority arrival rarely waits for one. */
  priorityReserveFraction: z.number().min(0).max(1).default(defaults.scheduling.priorityReserveFraction),
  inputTokenWeight: z.number().min(0).default(defaults.scheduling.inputTokenWeight),
  outputTokenWeight: z.number().min(0).default(defaults.scheduling.outputTokenWeight),
  /** Requests each replica runs at once; default: what the engine reports (slots, max_num_seqs). */
  slotsPerReplica: z.number().int().min(1).optional(),
};

export type SchedulingSettings = z.infer<z.ZodObject<typeof schedulingSettingsShape>>;
