import { describe, expect, it } from 'vitest';
import { parseScenario } from './load-scenario.js';
import { runScenario } from './run-scenario.js';
import type { SimulationResult } from './simulation-result.js';
import { expandSweep } from './sweep.js';

function scenario(overrides: Record<string, unknown>) {
  return parseScenario(
    {
      name: 'test',
      seed: 3,
      fleet: { hardware: 'h100-sxm', model: 'llama-3.1-8b', replicas: 2 },
      workload: { arrivals: { process: 'poisson', ratePerSecond: 20 }, requests: 2000 },
      ...overrides,
    },
    'test',
  );
}

/** Results without the host timing, which differs run to run. */
function comparable(result: SimulationResult) {
  const { wallSeconds: _wall, simulatedRequestsPerSecond: _rate, ...rest } = result;
  return rest;
}

const sessionsWorkload = {
  arrivals: { process: 'poisson', ratePerSecond: 4 },
  requests: 1500,
  mix: [
    {
      name: 'agent',
      tier: 'priority',
      sharedPrefix: { groups: 4, tokens: 1500 },
      input: { lognormal: { mean: 100, cv: 1 }, min: 4, max: 500 },
      output: { lognormal: { mean: 120, cv: 1 }, min: 1, max: 600 },
      session: { turns: { uniform: [2, 5] }, thinkSeconds: { exponential: { mean: 1 } } },
    },
    {
      name: 'chat',
      tier: 'flex',
      input: { fixed: 300 },
      output: { uniform: [1, 300] },
    },
  ],
};

describe('fleet simulator', () => {
  it('gives the same results for the same seed, and different ones for another seed', () => {
    const first = runScenario(scenario({ workload: sessionsWorkload }));
    const second = runScenario(scenario({ workload: sessionsWorkload }));
    expect(comparable(second)).toEqual(comparable(first));
    const other = runScenario(scenario({ seed: 4, workload: sessionsWorkload }));
    expect(other.overall.ttft.meanMs).not.toEqual(first.overall.ttft.meanMs);
  });

  it('ends every request exactly once: Poisson, gamma, closed loop, sessions, trace of preemptions', () => {
    const cases = [
      scenario({}),
      scenario({ workload: { arrivals: { process: 'gamma', ratePerSecond: 30, cv: 3 }, requests: 1500 } }),
      scenario({ workload: { arrivals: { process: 'closed-loop', concurrency: 32 }, requests: 1500 } }),
      scenario({ workload: sessionsWorkload }),
      // A KV cache far too small for the load: requests are preempted and recomputed, none is lost.
      scenario({
        fleet: { hardware: 'l4', model: 'llama-3.1-8b', replicas: 1, weightDtype: 'fp8', maxNumSeqs: 128 },
        workload: {
          arrivals: { process: 'poisson', ratePerSecond: 50 },
          requests: 400,
          mix: [{ name: 'long', input: { fixed: 1500 }, output: { fixed: 800 } }],
        },
      }),
    ];
    for (const run of cases) {
      const result = runScenario(run);
      expect(result.overall.submitted).toBeGreaterThan(0);
      // Completed or refused by the gateway's scheduler (flex shed, queue bounds), never both or neither.
      expect(result.overall.completed + result.overall.rejected).toBe(result.overall.submitted);
      const perTier = result.tiers.reduce((sum, tier) => sum + tier.completed + tier.rejected, 0);
      expect(perTier).toBe(result.overall.submitted);
    }
    const preempting = runScenario(cases[4] as Parameters<typeof runScenario>[0]);
    expect(preempting.fleet.preemptions).toBeGreaterThan(0);
  });

  it('predicts the same timeline whether decode steps are taken one by one or as spans', () => {
    const multiStep = {
      hardware: 'a100-80gb',
      model: 'llama-3.1-8b',
      replicas: 2,
      flavour: 'vllm-0.6-multistep',
    };
    for (const run of [
      scenario({ workload: sessionsWorkload }),
      scenario({}),
      scenario({ fleet: multiStep }),
    ]) {
      const spans = runScenario(run, {}, { coalesceDecodeSteps: true });
      const steps = runScenario(run, {}, { coalesceDecodeSteps: false });
      expect(spans.overall.completed).toBe(steps.overall.completed);
      for (const key of ['ttft', 'tpot', 'e2e', 'queue', 'itl'] as const) {
        expect(spans.overall[key].meanMs).toBeCloseTo(steps.overall[key].meanMs as number, 2);
        expect(spans.overall[key].p99Ms).toBeCloseTo(steps.overall[key].p99Ms as number, 1);
      }
      expect(spans.durationSeconds).toBeCloseTo(steps.durationSeconds, 6);
      expect(spans.fleet.energyJoules).toBeCloseTo(steps.fleet.energyJoules, 3);
    }
  });

  it('counts the decode gap stretched by a whole-prompt prefill step (vLLM 0.5) in inter-token latency', () => {
    // One long answer decoding; a long prompt arrives mid-answer and is prefilled alone while it waits.
    const fleet = { hardware: 'h100-sxm', model: 'llama-3.1-8b', replicas: 1, flavour: 'vllm-0.5' };
    const mix = [{ name: 'fixed', input: { fixed: 4000 }, output: { fixed: 400 } }];
    const paused = runScenario(
      scenario({
        fleet,
        workload: { arrivals: { process: 'poisson', ratePerSecond: 1 }, requests: 20, mix },
      }),
    ).overall.itl;
    // A 4,000-token prefill takes tens of ms, several decode steps: the stretched gap stands out.
    expect(paused.maxMs as number).toBeGreaterThan(3 * (paused.p50Ms as number));
    // One gap per token after the first, pauses included (20 requests × 399 gaps).
    expect(paused.count).toBe(20 * 399);
  });

  it('matches M/D/1 queueing theory for one replica serving one request at a time', () => {
    const mix = [{ name: 'fixed', input: { fixed: 256 }, output: { fixed: 64 } }];
    const fleet = { hardware: 'h100-sxm', model: 'llama-3.1-8b', replicas: 1, maxNumSeqs: 1 };
    // The service time: a request alone on the replica.
    const alone = runScenario(
      scenario({
        fleet,
        workload: { arrivals: { process: 'poisson', ratePerSecond: 0.01 }, requests: 3, mix },
      }),
    );
    const serviceSeconds = (alone.overall.e2e.meanMs as number) / 1000;
    const utilisation = 0.7;
    const rate = utilisation / serviceSeconds;
    const loaded = runScenario(
      scenario({
        seed: 17,
        fleet,
        workload: { arrivals: { process: 'poisson', ratePerSecond: rate }, requests: 40_000, mix },
      }),
    );
    // Pollaczek–Khinchine for deterministic service: Wq = ρ·S / (2(1 − ρ)).
    const theoryMs = ((utilisation * serviceSeconds) / (2 * (1 - utilisation))) * 1000;
    const simulatedMs = loaded.overall.queue.meanMs as number;
    expect(Math.abs(simulatedMs - theoryMs) / theoryMs).toBeLessThan(0.05);
  });

  it('serves shared system prompts and later turns from the prefix cache', () => {
    const result = runScenario(scenario({ workload: sessionsWorkload }));
    expect(result.fleet.prefixHitRate).toBeGreaterThan(0.5);
    const priority = result.tiers.find((tier) => tier.tier === 'priority');
    expect(priority?.cachedInputTokens).toBeGreaterThan(0.5 * (priority?.inputTokens ?? 0));
    const noCache = runScenario(
      scenario({
        fleet: { hardware: 'h100-sxm', model: 'llama-3.1-8b', replicas: 2, prefixCaching: false },
        workload: sessionsWorkload,
      }),
    );
    expect(noCache.fleet.prefixHitRate).toBe(0);
    expect(noCache.overall.ttft.meanMs as number).toBeGreaterThan(result.overall.ttft.meanMs as number);
  });

  it('replays a JSONL trace with its tiers and shared blocks', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const path = await import('node:path');
    const folder = mkdtempSync(path.join(tmpdir(), 'gravity-trace-'));
    const tracePath = path.join(folder, 'trace.jsonl');
    const lines = Array.from({ length: 200 }, (_, index) =>
      JSON.stringify({
        timestamp: index * 50,
        input_length: 1100,
        output_length: 20,
        hash_ids: [7, 8, 1000 + index],
        tier: index % 2 === 0 ? 'priority' : 'batch',
      }),
    );
    writeFileSync(tracePath, `${lines.join('\n')}\n`);
    const result = runScenario(
      scenario({
        workload: { arrivals: { process: 'trace', path: tracePath } },
        fleet: { hardware: 'h100-sxm', model: 'llama-3.1-8b', replicas: 1 },
      }),
    );
    expect(result.overall.completed).toBe(200);
    expect(result.tiers.map((tier) => tier.tier).sort()).toEqual(['batch', 'priority']);
    // Two shared 512-token trace blocks = 64 KV blocks of each 68-block prompt hit after the first request.
    expect(result.fleet.prefixHitRate).toBeGreaterThan(0.8);
    expect(result.durationSeconds).toBeGreaterThan(9.9);
  });

  it("holds the priority tier's latency under overload when the engine queue orders by tier", () => {
    const overloaded = {
      fleet: { hardware: 'a100-80gb', model: 'llama-3.1-8b', replicas: 1, maxNumSeqs: 32 },
      workload: {
        arrivals: { process: 'poisson', ratePerSecond: 30 },
        requests: 3000,
        mix: [
          { name: 'vip', weight: 1, tier: 'priority', input: { fixed: 200 }, output: { fixed: 100 } },
          { name: 'bulk', weight: 3, tier: 'flex', input: { fixed: 200 }, output: { fixed: 100 } },
        ],
      },
    };
    // The engine's own queue order, with no gateway queue in front of it.
    const off = { mode: 'off' };
    const fcfs = runScenario(scenario({ ...overloaded, scheduling: off, policies: { ordering: 'fcfs' } }));
    const priority = runScenario(
      scenario({ ...overloaded, scheduling: off, policies: { ordering: 'priority' } }),
    );
    const p90 = (result: SimulationResult) =>
      result.tiers.find((tier) => tier.tier === 'priority')?.ttft.p90Ms as number;
    expect(p90(priority)).toBeLessThan(p90(fcfs) / 5);
  });

  it("runs the gateway's SLO scheduler: priority held under overload, flex shed, every request accounted for", () => {
    const overloaded = scenario({
      fleet: { hardware: 'a100-80gb', model: 'llama-3.1-8b', replicas: 1, maxNumSeqs: 16 },
      workload: {
        arrivals: { process: 'poisson', ratePerSecond: 30 },
        requests: 3000,
        mix: [
          { name: 'vip', weight: 1, tier: 'priority', input: { fixed: 200 }, output: { fixed: 100 } },
          { name: 'chat', weight: 2, tier: 'default', input: { fixed: 200 }, output: { fixed: 100 } },
          { name: 'bulk', weight: 2, tier: 'flex', input: { fixed: 200 }, output: { fixed: 100 } },
        ],
      },
      slo: { priority: { ttftMs: 500, tpotMs: 100 }, flex: { ttftMs: 5000, tpotMs: 200 } },
      sweep: { scheduler: ['fcfs', 'slo'] },
    });
    const [fcfs, slo] = expandSweep(overloaded).map((point) => runScenario(overloaded, point));
    const tier = (result: SimulationResult, name: string) =>
      result.tiers.find((candidate) => candidate.tier === name);
    for (const result of [fcfs, slo] as SimulationResult[])
      expect(result.overall.completed + result.overall.rejected).toBe(result.overall.submitted);
    expect(tier(slo as SimulationResult, 'flex')?.rejected).toBeGreaterThan(0);
    expect(tier(slo as SimulationResult, 'priority')?.rejected).toBe(0);
    expect(tier(slo as SimulationResult, 'priority')?.ttft.p90Ms as number).toBeLessThan(
      (tier(fcfs as SimulationResult, 'priority')?.ttft.p90Ms as number) / 5,
    );
    expect(slo?.fleet.scheduler).toBe('slo');
  });

  describe('request features and a mixed fleet', () => {
    const mixedFleet = {
      hardware: 'h100-sxm',
      model: 'llama-3.1-8b',
      groups: [
        { name: 'agents', replicas: 2, servedFeatures: ['tools', 'response_format'] },
        { name: 'chat', replicas: 2, servedFeatures: [] },
      ],
    };
    const agentWorkload = (features: Record<string, number>) => ({
      arrivals: { process: 'poisson', ratePerSecond: 20 },
      requests: 800,
      mix: [{ name: 'agent', input: { fixed: 200 }, output: { fixed: 50 }, features }],
    });

    it('routes tool requests only to the group serving tools; plain ones anywhere', () => {
      const routedTo = new Map<number, Set<string>>();
      const usesTools = new Map<number, boolean>();
      const result = runScenario(
        scenario({
          fleet: mixedFleet,
          routing: { policy: 'round-robin' },
          workload: agentWorkload({ tools: 0.5 }),
        }),
        {},
        {
          onDecision: (decision) => {
            if (decision.type !== 'routed') return;
            usesTools.set(decision.tag.id, decision.tag.features?.includes('tools') ?? false);
            const replicas = routedTo.get(decision.tag.id) ?? new Set<string>();
            replicas.add(decision.replica);
            routedTo.set(decision.tag.id, replicas);
          },
        },
      );
      const agents = new Set(['h100-sxm-0', 'h100-sxm-1']);
      const toolReplicas = new Set<string>();
      const plainReplicas = new Set<string>();
      for (const [id, replicas] of routedTo)
        for (const replica of replicas) (usesTools.get(id) ? toolReplicas : plainReplicas).add(replica);
      const toolRequests = [...usesTools.values()].filter(Boolean).length;
      // About half the requests use tools, drawn per request.
      expect(toolRequests).toBeGreaterThan(300);
      expect(toolRequests).toBeLessThan(500);
      expect(toolReplicas).toEqual(agents);
      expect(plainReplicas).toEqual(new Set([...agents, 'h100-sxm-2', 'h100-sxm-3']));
      expect(result.fleet.replicas).toBe(4);
      expect(result.overall.unserved).toBe(0);
      expect(result.overall.completed).toBe(800);
    });

    it('counts the requests no replica serves as unserved, and refuses them', () => {
      const result = runScenario(
        scenario({ fleet: mixedFleet, workload: agentWorkload({ tools: 0.3, logprobs: 0.25 }) }),
      );
      const { submitted, completed, rejected, unserved } = result.overall;
      expect(unserved).toBeGreaterThan(150);
      expect(unserved).toBeLessThan(250);
      expect(rejected).toBe(unserved);
      expect(completed + rejected).toBe(submitted);
      expect(result.tiers.find((tier) => tier.tier === 'default')?.unserved).toBe(unserved);
      // A fleet that serves everything (no servedFeatures) refuses none.
      const everything = runScenario(scenario({ workload: agentWorkload({ tools: 0.3, logprobs: 0.25 }) }));
      expect(everything.overall.unserved).toBe(0);
    });

    it('leaves a scenario without features exactly as it was', () => {
      const plain = runScenario(scenario({}));
      const withZeroShare = runScenario(
        scenario({
          workload: {
            arrivals: { process: 'poisson', ratePerSecond: 20 },
            requests: 2000,
            mix: [
              {
                name: 'chat',
                input: { lognormal: { mean: 202, cv: 1 }, min: 4, max: 4096 },
                output: { lognormal: { mean: 179, cv: 1 }, min: 1, max: 2048 },
                features: { tools: 0 },
              },
            ],
          },
        }),
      );
      expect(comparable(withZeroShare)).toEqual(comparable(plain));
    });

    it('refuses groups with what would vary the replica count', () => {
      expect(() => scenario({ fleet: mixedFleet, sweep: { replicas: [2, 4] } })).toThrow(/sweep.replicas/);
      expect(() => scenario({ fleet: { ...mixedFleet, servedFeatures: ['tools'] } })).toThrow(/per group/);
    });
  });
});

describe('gateways behind a load balancer', () => {
  const sharedPrefixSessions = {
    arrivals: { process: 'poisson', ratePerSecond: 6 },
    requests: 1500,
    mix: [
      {
        name: 'agent',
        sharedPrefix: { groups: 12, tokens: 2000 },
        input: { lognormal: { mean: 100, cv: 1 }, min: 4, max: 500 },
        output: { lognormal: { mean: 120, cv: 1 }, min: 1, max: 600 },
        session: { turns: { uniform: [2, 5] }, thinkSeconds: { exponential: { mean: 1 } } },
      },
    ],
  };
  const run = (policy: string, gateways: Record<string, unknown>) =>
    runScenario(
      scenario({
        fleet: { hardware: 'h100-sxm', model: 'llama-3.1-8b', replicas: 4 },
        routing: { policy },
        gateways,
        workload: sharedPrefixSessions,
      }),
    );

  it('splits the prefix view across gateways that each learn their own, and not across one shared view', () => {
    const one = run('prefix-load', {});
    const perGateway = run('prefix-load', { count: 4 });
    const shared = run('prefix-load', { count: 4, routingState: 'shared' });
    // Four indexes each see a quarter of the traffic: a prefix warm on one replica for one gateway is
    // sent elsewhere by the others, and the engines' caches hit less.
    expect(perGateway.fleet.prefixHitRate).toBeLessThan(one.fleet.prefixHitRate - 0.02);
    // One shared view is one router, whichever gateway reads it.
    expect(comparable(shared)).toEqual(comparable(one));
    expect(comparable(run('prefix-load', { count: 1 }))).toEqual(comparable(one));
  });

  it('takes the same decisions with prefix-hash whatever the number of gateways: nothing to share', () => {
    const one = run('prefix-hash', {});
    for (const gateways of [{ count: 3 }, { count: 8, balancer: 'random' }])
      expect(comparable(run('prefix-hash', gateways))).toEqual(comparable(one));
    expect(one.fleet.prefixHitRate).toBeGreaterThan(run('prefix-load', { count: 4 }).fleet.prefixHitRate);
  });

  it('spreads requests over gateways at random, reproducibly for a seed', () => {
    const first = run('prefix-load', { count: 4, balancer: 'random' });
    expect(comparable(run('prefix-load', { count: 4, balancer: 'random' }))).toEqual(comparable(first));
    expect(comparable(first)).not.toEqual(comparable(run('prefix-load', { count: 4 })));
  });
});
