import { describe, expect, it } from 'vitest';
import { PrefixIndex } from './prefix-index.js';
import { ReplicaHealth } from './replica-health.js';
import { RetryBudget } from './retry-budget.js';
import { routingConfigSchema } from './routing-config.js';
import type { ReplicaLoadView, RoutedRequestView } from './routing-policy.js';
import { createRoutingPolicy, createRoutingState } from './routing-profile.js';
import { RoutingRejection } from './routing-rejection.js';

function replica(id: string, load: number, extra: Partial<ReplicaLoadView> = {}): ReplicaLoadView {
  return { id, waitingRequests: 0, runningRequests: load, kvUsedFraction: 0.5, ...extra };
}
const request = (extra: Partial<RoutedRequestView> = {}): RoutedRequestView => ({
  promptTokens: 100,
  priority: 1,
  ...extra,
});
/** A deterministic uniform stream. */
function seeded(seed = 1) {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return state / 2_147_483_648;
  };
}

describe('routing profiles', () => {
  it('round-robin visits every replica in turn', () => {
    const policy = createRoutingPolicy('round-robin', { random: seeded() });
    const replicas = [replica('a', 0), replica('b', 9), replica('c', 3)];
    expect(Array.from({ length: 6 }, () => policy.pick(replicas, request(), 0))).toEqual([0, 1, 2, 0, 1, 2]);
  });

  it('least-loaded picks the emptiest replica and spreads ties', () => {
    const policy = createRoutingPolicy('least-loaded', { random: seeded() });
    expect(policy.pick([replica('a', 5), replica('b', 1), replica('c', 3)], request(), 0)).toBe(1);
    const seen = new Set<number>();
    for (let round = 0; round < 50; round++)
      seen.add(policy.pick([replica('a', 2), replica('b', 2)], request(), 0));
    expect([...seen].sort()).toEqual([0, 1]);
  });

  it('prefix-load sends a shared prefix back to the replica that served it', () => {
    const policy = createRoutingPolicy('prefix-load', { random: seeded() });
    const replicas = [replica('a', 1), replica('b', 1), replica('c', 1)];
    const prefix = Array.from({ length: 40 }, (_, block) => 1000 + block);
    const first = policy.pick(replicas, request({ promptBlockHashes: [...prefix, 1] }), 0);
    for (let question = 2; question < 8; question++)
      expect(policy.pick(replicas, request({ promptBlockHashes: [...prefix, question] }), 10)).toBe(first);
  });

  it('prefix-load spills a hot prefix once its replica is past the load bound; prefix-only does not', () => {
    const prefix = Array.from({ length: 40 }, (_, block) => 5000 + block);
    for (const [name, spills] of [
      ['prefix-load', true],
      ['prefix-only', false],
    ] as const) {
      const policy = createRoutingPolicy(name, { random: seeded() });
      const warm = [replica('a', 0), replica('b', 0)];
      const home = policy.pick(warm, request({ promptBlockHashes: prefix }), 0);
      const overloaded = [replica('a', home === 0 ? 30 : 2), replica('b', home === 1 ? 30 : 2)];
      const next = policy.pick(overloaded, request({ promptBlockHashes: prefix }), 1);
      expect(next !== home, name).toBe(spills);
    }
  });

  it('explains a decision with each scorer’s value, the chosen replica first', () => {
    const policy = createRoutingPolicy('prefix-load', { random: seeded() });
    const decision = policy.decide(
      [replica('a', 4), replica('b', 0)],
      request({ promptBlockHashes: [1, 2, 3] }),
      0,
      { dryRun: true },
    );
    expect(decision.profile).toBe('prefix-load');
    expect(decision.top[0]).toEqual({
      replica: 'b',
      score: 1,
      scorers: { 'prefix-affinity': 0, 'queue-depth': 1 },
    });
    expect(decision.top[1]?.replica).toBe('a');
  });

  it('cost-energy prefers the cheap, frugal replica', () => {
    const policy = createRoutingPolicy('cost-energy', { random: seeded() });
    const replicas = [
      replica('pricey', 0, { labels: { costPerMillionTokensUsd: 2, energyJoulesPerToken: 3 } }),
      replica('cheap', 0, { labels: { costPerMillionTokensUsd: 0.5, energyJoulesPerToken: 1 } }),
    ];
    expect(policy.pick(replicas, request(), 0)).toBe(1);
  });

  it('the latency scorer favours the replica with the lower recent TTFT', () => {
    const policy = createRoutingPolicy('latency', { random: seeded() });
    policy.observe({ replica: 'slow', ttftMs: 900, interTokenMs: 40 }, 0);
    policy.observe({ replica: 'fast', ttftMs: 90, interTokenMs: 10 }, 0);
    expect(policy.pick([replica('slow', 1), replica('fast', 1)], request(), 0)).toBe(1);
  });
});

describe('filters', () => {
  const labelled = [
    replica('eu-1', 5, { labels: { region: 'eu-west', provider: 'own' } }),
    replica('us-1', 0, { labels: { region: 'us-east', provider: 'own' } }),
    replica('unlabelled', 0),
  ];

  it('keeps a residency-restricted tenant on allowed replicas, however loaded', () => {
    const policy = createRoutingPolicy('least-loaded', {
      random: seeded(),
      residency: { acme: { regions: ['eu-west'] } },
    });
    for (let round = 0; round < 20; round++)
      expect(policy.pick(labelled, request({ tenant: 'acme' }), 0)).toBe(0);
    expect(policy.pick(labelled, request({ tenant: 'other' }), 0)).not.toBe(0);
  });

  it('rejects naming the policy when residency allows no replica', () => {
    const policy = createRoutingPolicy('least-loaded', {
      random: seeded(),
      residency: { acme: { regions: ['ap-south'], providers: ['own'] } },
    });
    expect(() => policy.pick(labelled, request({ tenant: 'acme' }), 0)).toThrowError(RoutingRejection);
    expect(() => policy.pick(labelled, request({ tenant: 'acme' }), 0)).toThrow(
      'routing.residency.acme (regions: ap-south; providers: own)',
    );
  });

  it('drops unhealthy replicas, and says so when none is left', () => {
    const policy = createRoutingPolicy('least-loaded', { random: seeded() });
    expect(policy.pick([replica('a', 0, { healthy: false }), replica('b', 9)], request(), 0)).toBe(1);
    expect(() => policy.pick([replica('a', 0, { healthy: false })], request(), 0)).toThrow(/unhealthy/);
  });

  it('prefers a replica whose context fits, but lets the engine judge when none does', () => {
    const policy = createRoutingPolicy('least-loaded', { random: seeded() });
    const replicas = [
      replica('small', 0, { contextTokens: 1000 }),
      replica('large', 9, { contextTokens: 8000 }),
    ];
    expect(policy.pick(replicas, request({ promptTokens: 3000 }), 0)).toBe(1);
    expect(policy.pick(replicas, request({ promptTokens: 30_000 }), 0)).toBe(0);
  });
});

describe('prefix index', () => {
  it('matches leading blocks per replica, forgets them after the TTL and beyond its capacity', () => {
    const index = new PrefixIndex({ capacityBlocks: 6, ttlMs: 1000 });
    index.record([1, 2, 3, 4], 'a', 0);
    index.record([1, 2, 9], 'b', 0);
    const matched = new Float64Array(2);
    index.matchLeadingBlocks([1, 2, 3, 7], ['a', 'b'], 2, matched, 10);
    expect(Array.from(matched)).toEqual([3, 2]);
    index.matchLeadingBlocks([1, 2, 3], ['a', 'b'], 2, matched, 2000);
    expect(Array.from(matched)).toEqual([0, 0]);
    index.record([20, 21, 22], 'c', 0);
    expect(index.size).toBe(6);
  });
});

describe('health, retries and signals', () => {
  it('ejects after consecutive failures, half-opens after the back-off, and doubles it on relapse', () => {
    const health = new ReplicaHealth({ consecutiveFailures: 2, ejectionMs: 100, maxEjectionMs: 1000 });
    health.onFailure('a', 0, 'boom');
    expect(health.isAvailable('a', 0)).toBe(true);
    health.onFailure('a', 0, 'boom');
    expect(health.isAvailable('a', 50)).toBe(false);
    expect(health.isAvailable('a', 100)).toBe(true); // half-open: one probe request
    health.onAttempt('a');
    expect(health.isAvailable('a', 100)).toBe(false);
    health.onFailure('a', 100, 'still down');
    expect(health.isAvailable('a', 250)).toBe(false); // 200 ms now
    expect(health.isAvailable('a', 300)).toBe(true);
    health.onAttempt('a');
    health.onSuccess('a');
    expect(health.isAvailable('a', 300)).toBe(true);
    health.onProbe('a', 400, 'connection refused');
    expect(health.isAvailable('a', 10_000)).toBe(false);
    health.onProbe('a', 10_000, null);
    expect(health.isAvailable('a', 10_000)).toBe(true);
  });

  it('a retry budget allows its minimum, then a share of requests', () => {
    const budget = new RetryBudget(0.1, 0.2); // at least 2 retries per 10 s
    for (let request = 0; request < 50; request++) budget.onRequest(1000);
    const granted = Array.from({ length: 10 }, () => budget.tryRetry(1000)).filter(Boolean).length;
    expect(granted).toBe(5);
  });
});

describe('routing config', () => {
  it('names the path of an unknown scorer and an unknown profile', () => {
    const result = routingConfigSchema.safeParse({
      policy: 'fastest',
      profiles: { mine: { scorers: [{ type: 'prefix-affinty', weight: 2 }] } },
    });
    expect(result.success).toBe(false);
    const problems = result.error?.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`) ?? [];
    expect(problems).toContain(
      "profiles.mine.scorers.0: unknown scorer 'prefix-affinty' (known: queue-depth, kv-cache, latency, prefix-affinity, prefix-hash, cost, energy)",
    );
    expect(problems.some((problem) => problem.startsWith("policy: unknown routing profile 'fastest'"))).toBe(
      true,
    );
  });

  it('shares learnt state between the profiles of one router', () => {
    const state = createRoutingState({ random: seeded() });
    const a = createRoutingPolicy('prefix-load', { random: seeded(), state });
    const b = createRoutingPolicy('latency', { random: seeded(), state });
    a.pick([replica('x', 0), replica('y', 0)], request({ promptBlockHashes: [1, 2] }), 0);
    expect(state.prefixIndex.size).toBe(2);
    b.observe({ replica: 'x', ttftMs: 5, interTokenMs: 1 }, 0);
    expect(state.statistics.latency('x')?.samples).toBe(1);
  });
});
