import { describe, expect, it } from 'vitest';
import { ReplicaSpecError } from '../../performance-model/replica-spec.js';
import { simulationResultFixture, tierResultFixture } from '../report/simulation-result-fixture.js';
import { type Scenario, scenarioSchema } from '../scenario-schema.js';
import type { SimulationResult, SweepPoint } from '../simulation-result.js';
import { checkSlo, PlanError, planCapacity, type RunScenario } from './capacity-planner.js';
import { formatCapacityPlan } from './plan-report.js';

/**
 * The search against a synthetic fleet whose SLO attainment is a step in the replica count, so every
 * expectation is exact. The same planner against the real simulator is capacity-planner-simulation.test.ts.
 */

function scenario(plan: Record<string, unknown>, attainment = 0.9): Scenario {
  return scenarioSchema.parse({
    name: 'synthetic',
    fleet: { hardware: 'h100-sxm', model: 'llama-3.1-8b' },
    workload: { arrivals: { process: 'poisson', ratePerSecond: 10 }, requests: 100 },
    slo: { attainment },
    plan,
  });
}

interface SyntheticFleet {
  /** Replicas each hardware needs for its priority tier to reach 95% within SLO; absent: never. */
  needs: Record<string, number>;
  doesNotFit?: string[];
  /** Figures that break cost ties. */
  usdPerMillionOutputTokens?: Record<string, number>;
}

function syntheticFleet(fleet: SyntheticFleet) {
  const probes: SweepPoint[] = [];
  const run: RunScenario = (_scenario, point) => {
    probes.push(point);
    const hardware = point.hardware!;
    if (fleet.doesNotFit?.includes(hardware))
      throw new ReplicaSpecError(`llama-3.1-70b (141.2 GB of weights) does not fit 1× ${hardware} (24 GB)`);
    const needed = fleet.needs[hardware] ?? Number.POSITIVE_INFINITY;
    const meets = (point.replicas ?? 1) >= needed;
    const result: SimulationResult = simulationResultFixture({ point, tiers: ['priority', 'batch'] });
    result.tiers = [
      tierResultFixture('priority', 1, {
        sloAttainment: meets ? 0.95 : 0.4,
        slo: { ttftMs: 500, tpotMs: 50 },
        ttft: { ...result.overall.ttft, p90Ms: meets ? 300 : 2400 },
        tpot: { ...result.overall.tpot, p90Ms: 20 },
      }),
      // Always misses, but carries no requests: must not block a plan.
      tierResultFixture('batch', 1, { submitted: 0, completed: 0, sloAttainment: 0 }),
    ];
    result.fleet.usdPerMillionOutputTokens = fleet.usdPerMillionOutputTokens?.[hardware] ?? 1;
    return result;
  };
  return { run, probes };
}

describe('planCapacity', () => {
  it('finds the fewest replicas by doubling, then bisecting, never probing a count twice', () => {
    const fleet = syntheticFleet({ needs: { 'h100-sxm': 13 } });
    const plan = planCapacity(scenario({ hardware: ['h100-sxm'], maxReplicas: 64 }), {
      runScenario: fleet.run,
    });
    expect(plan.feasible).toHaveLength(1);
    expect(plan.feasible[0]!.replicas).toBe(13);
    expect(fleet.probes.map((point) => point.replicas)).toEqual([1, 2, 4, 8, 16, 12, 14, 13]);
    expect(plan.feasible[0]!.probes.find((probe) => probe.replicas === 12)!.meetsSlo).toBe(false);
  });

  it('passes the candidate as the sweep point of every probe', () => {
    const fleet = syntheticFleet({ needs: { l40s: 1 } });
    planCapacity(
      scenario({ hardware: ['l40s'], devices: [2], routing: ['round-robin'], ordering: ['priority'] }),
      { runScenario: fleet.run },
    );
    expect(fleet.probes).toEqual([
      { hardware: 'l40s', devices: 2, routing: 'round-robin', ordering: 'priority', replicas: 1 },
    ]);
  });

  it('ranks feasible candidates by the fleet’s hourly price, then by $ per 1M output tokens', () => {
    // h100 $2.50 × 2 = $5.00/h; a100 $1.50 × 4 = $6.00/h; l40s $1.00 × 5 = $5.00/h but dearer per token.
    const fleet = syntheticFleet({
      needs: { 'h100-sxm': 2, 'a100-80gb': 4, l40s: 5 },
      usdPerMillionOutputTokens: { 'h100-sxm': 0.2, 'a100-80gb': 0.1, l40s: 0.3 },
    });
    const plan = planCapacity(scenario({ hardware: ['a100-80gb', 'l40s', 'h100-sxm'] }), {
      runScenario: fleet.run,
    });
    expect(
      plan.feasible.map((outcome) => [outcome.candidate.hardware, outcome.replicas, outcome.usdPerHour]),
    ).toEqual([
      ['h100-sxm', 2, 5],
      ['l40s', 5, 5],
      ['a100-80gb', 4, 6],
    ]);
    expect(formatCapacityPlan(plan)).toContain('Cheapest: 2 replicas of 1× h100-sxm (2 GPUs)');
  });

  it('reports a candidate the model does not fit, without probing it further', () => {
    const fleet = syntheticFleet({ needs: { 'h100-sxm': 1 }, doesNotFit: ['l4'] });
    const plan = planCapacity(scenario({ hardware: ['l4', 'h100-sxm'] }), { runScenario: fleet.run });
    expect(plan.infeasible).toHaveLength(1);
    expect(plan.infeasible[0]!.status).toBe('does-not-fit');
    expect(plan.infeasible[0]!.reason).toMatch(/^does not fit: .*does not fit 1× l4/);
    expect(fleet.probes.filter((point) => point.hardware === 'l4')).toHaveLength(1);
  });

  it('reports which tier and target a candidate misses at the replica limit', () => {
    const fleet = syntheticFleet({ needs: {} });
    const plan = planCapacity(scenario({ hardware: ['l4'], maxReplicas: 6 }), { runScenario: fleet.run });
    expect(fleet.probes.map((point) => point.replicas)).toEqual([1, 2, 4, 6]);
    expect(plan.feasible).toEqual([]);
    expect(plan.infeasible[0]!.status).toBe('misses-slo');
    expect(plan.infeasible[0]!.reason).toMatch(
      /^misses priority TTFT at 6 replicas \(priority: 40\.0% within SLO/,
    );
    expect(plan.infeasible[0]!.reason).toContain('TTFT p90 2400 ms, target 500 ms');
    const text = formatCapacityPlan(plan);
    expect(text).toContain('No candidate meets the SLOs.');
    expect(text).toContain('misses priority TTFT at 6 replicas');
  });

  it('lets other errors through', () => {
    const failing: RunScenario = () => {
      throw new Error('simulator bug');
    };
    expect(() => planCapacity(scenario({ hardware: ['h100-sxm'] }), { runScenario: failing })).toThrow(
      'simulator bug',
    );
  });

  it('needs a plan section', () => {
    const withoutPlan = scenarioSchema.parse({
      name: 'no-plan',
      fleet: { hardware: 'h100-sxm', model: 'llama-3.1-8b' },
      workload: { arrivals: { process: 'poisson', ratePerSecond: 10 }, requests: 100 },
    });
    expect(() => planCapacity(withoutPlan)).toThrow(PlanError);
  });
});

describe('checkSlo', () => {
  const base = scenario({ hardware: ['h100-sxm'] });

  it('counts requests that never completed as misses', () => {
    const result = simulationResultFixture({ tiers: ['default'] });
    result.tiers[0] = tierResultFixture('default', 1, { submitted: 100, completed: 50, sloAttainment: 1 });
    const check = checkSlo(result, base);
    expect(check.tiers[0]!.attainment).toBe(0.5);
    expect(check.meetsSlo).toBe(false);
  });

  it('ignores tiers without requests and blames TPOT when only TPOT misses', () => {
    const result = simulationResultFixture({ tiers: ['priority', 'flex'] });
    result.tiers = [
      tierResultFixture('priority', 1, {
        sloAttainment: 0.5,
        slo: { ttftMs: 500, tpotMs: 50 },
        ttft: { ...result.overall.ttft, p90Ms: 100 },
        tpot: { ...result.overall.tpot, p90Ms: 80 },
      }),
      tierResultFixture('flex', 1, { submitted: 0, completed: 0, sloAttainment: 0 }),
    ];
    const check = checkSlo(result, base);
    expect(check.tiers.map((tier) => tier.tier)).toEqual(['priority']);
    expect(check.tiers[0]!.missed).toEqual(['TPOT']);
  });
});
