import { beforeAll, describe, expect, it } from 'vitest';
import { hardwareProfile } from '../../performance-model/hardware-profiles.js';
import { runScenario } from '../run-scenario.js';
import { type Scenario, scenarioSchema } from '../scenario-schema.js';
import { type CapacityPlan, checkSlo, type PlanCandidate, planCapacity } from './capacity-planner.js';

/**
 * The planner against the real simulator: a few hundred llama-3.1-8b requests at 40 req/s, split between
 * a tight priority tier and a default tier, so each probe takes tens of milliseconds.
 */
function planScenario(plan: Record<string, unknown>, model = 'llama-3.1-8b'): Scenario {
  return scenarioSchema.parse({
    name: 'plan-test',
    seed: 7,
    fleet: { hardware: 'h100-sxm', model },
    workload: {
      arrivals: { process: 'poisson', ratePerSecond: 40 },
      requests: 600,
      mix: [
        {
          name: 'chat',
          tier: 'priority',
          input: { lognormal: { mean: 400, cv: 1 }, min: 8, max: 4096 },
          output: { lognormal: { mean: 200, cv: 1 }, min: 2, max: 1024 },
        },
        {
          name: 'bulk',
          tier: 'default',
          input: { lognormal: { mean: 1000, cv: 1 }, min: 8, max: 4096 },
          output: { lognormal: { mean: 300, cv: 1 }, min: 2, max: 1024 },
        },
      ],
    },
    slo: { priority: { ttftMs: 200, tpotMs: 30 }, attainment: 0.9 },
    plan,
  });
}

describe('planCapacity with the fleet simulator', () => {
  const scenario = planScenario({ hardware: ['a100-80gb', 'h100-sxm'], maxReplicas: 16 });
  let plan: CapacityPlan;
  beforeAll(() => {
    plan = planCapacity(scenario);
  });

  /** The fewest replicas meeting the SLOs by trying every count from 1: what the search must agree with. */
  function linearScan(candidate: PlanCandidate): number | null {
    for (let replicas = 1; replicas <= 16; replicas++)
      if (checkSlo(runScenario(scenario, { ...candidate, replicas }), scenario).meetsSlo) return replicas;
    return null;
  }

  it('returns the cheapest fleet that meets every tier’s SLO', () => {
    expect(plan.infeasible).toEqual([]);
    expect(plan.feasible).toHaveLength(2);
    const cheapestByScan = plan.feasible
      .map((outcome) => ({
        hardware: outcome.candidate.hardware,
        usdPerHour:
          hardwareProfile(outcome.candidate.hardware)!.hourlyUsd *
          outcome.candidate.devices *
          linearScan(outcome.candidate)!,
      }))
      .sort((a, b) => a.usdPerHour - b.usdPerHour)[0]!;
    const cheapest = plan.feasible[0]!;
    expect(cheapest.candidate.hardware).toBe(cheapestByScan.hardware);
    expect(cheapest.usdPerHour).toBeCloseTo(cheapestByScan.usdPerHour, 9);
    for (const tier of checkSlo(cheapest.result, scenario).tiers)
      expect(tier.attainment).toBeGreaterThanOrEqual(0.9);
  });

  it('finds the minimal replica count: one replica fewer misses the SLOs', () => {
    // The workload is sized so that at least one shape needs several replicas, or this proves little.
    expect(plan.feasible.some((outcome) => outcome.replicas > 1)).toBe(true);
    for (const outcome of plan.feasible) {
      expect(outcome.replicas, outcome.candidate.hardware).toBe(linearScan(outcome.candidate));
      if (outcome.replicas === 1) continue;
      const smaller = runScenario(scenario, { ...outcome.candidate, replicas: outcome.replicas - 1 });
      expect(checkSlo(smaller, scenario).meetsSlo, outcome.candidate.hardware).toBe(false);
    }
  });

  it('reports a model that does not fit the hardware', () => {
    const seventy = planScenario(
      { hardware: ['l4', 'h100-sxm'], devices: [1], maxReplicas: 2 },
      'llama-3.1-70b',
    );
    const outcome = planCapacity(seventy);
    const l4 = outcome.infeasible.find((candidate) => candidate.candidate.hardware === 'l4')!;
    expect(l4.status).toBe('does-not-fit');
    expect(l4.reason).toMatch(/^does not fit: llama-3.1-70b .* does not fit 1× l4/);
    expect(outcome.feasible).toEqual([]);
  });

  it('reports the tier and target a fleet misses at the replica limit', () => {
    const outcome = planCapacity(planScenario({ hardware: ['l4'], devices: [2], maxReplicas: 4 }));
    expect(outcome.feasible).toEqual([]);
    expect(outcome.infeasible[0]!.status).toBe('misses-slo');
    expect(outcome.infeasible[0]!.reason).toMatch(/^misses priority (TTFT|TPOT).* at 4 replicas/);
  });
});
