import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../src/core/seeded-random.js';
import { type ServiceBand, serviceBands } from '../src/core/service-tiers.js';
import { filterPlugins, scorerPlugins } from '../src/routing/plugin-registry.js';
import {
  type FleetSetup,
  runLive,
  runSimulated,
  type TraceOutcome,
  type TraceReplica,
  type TraceRequest,
} from './support/fleet-trace.js';

/**
 * One fleet core, two clocks. A recorded trace of events goes through the live gateway's driver and the
 * fleet simulator's driver; both must take the same decisions — which replica, when each request leaves
 * its queue, who is shed or refused, which attempts are retried and where — because both run the same
 * FleetCore (src/fleet/). And no routing plugin may be inert on either clock: each filter and scorer
 * changes a decision when its signal differs, live and simulated alike.
 */

/** Runs the trace on both clocks, checks they agree, and returns the decisions. */
async function onBothClocks(setup: FleetSetup, trace: TraceRequest[]): Promise<string[]> {
  const live = await runLive(setup, trace);
  const simulated = runSimulated(setup, trace);
  expect(simulated).toEqual(live);
  return live;
}

/** Where the request was last routed to. */
function placed(decisions: readonly string[], id: string): string {
  const routed = decisions.filter((line) => line.includes(` routed ${id} → `));
  const last = routed.at(-1);
  if (!last) throw new Error(`${id} was never routed:\n${decisions.join('\n')}`);
  return (/→ (\S+)/.exec(last) as RegExpExecArray)[1] as string;
}

const replicas = (...specs: Array<Partial<TraceReplica> & { id: string }>): TraceReplica[] =>
  specs.map((spec) => ({ contextTokens: 8192, ...spec }));

function request(
  id: string,
  atMs: number,
  options: Partial<Omit<TraceRequest, 'id' | 'atMs'>> = {},
): TraceRequest {
  return {
    id,
    atMs,
    tenant: 'acme',
    band: 'default',
    prompt: `${id}: a question of its own`,
    maxTokens: 4,
    outcomes: [{ kind: 'answer', ttftMs: 30, gapMs: 10 }],
    ...options,
  };
}

/** A long prompt whose first blocks are shared by every request of the group. */
function groupPrompt(group: string, suffix: string): string {
  return `${`system prompt of group ${group}. `.repeat(20)}${suffix}`;
}

/**
 * A scorer of a replica label (cost, energy) alone in a profile: the probe goes to the replica with the
 * lower figure, whichever of the two that is, on both clocks.
 */
async function followsLabel(scorer: string, label: string, low: number, high: number): Promise<void> {
  for (const [better, worse] of [
    ['a', 'b'],
    ['b', 'a'],
  ] as const) {
    const decisions = await onBothClocks(
      {
        replicas: replicas({ id: 'a' }, { id: 'b' }),
        routing: {
          policy: 'by-label',
          profiles: { 'by-label': { scorers: [{ type: scorer }] } },
          replicas: { [better]: { [label]: low }, [worse]: { [label]: high } },
        },
        scheduling: null,
        seed: 1,
      },
      [request('probe', 0)],
    );
    expect(placed(decisions, 'probe')).toBe(better);
  }
}

describe('one fleet core on two clocks', () => {
  it('takes the same decisions live and simulated for a recorded trace: routing, queue order, shedding, expiry, retries', async () => {
    // Times are drawn from wide ranges so that no two events of different requests fall on the same
    // millisecond: at a tie each driver has its own order (the simulator runs engine events before
    // arrivals, timers run in creation order), and a tie-free trace compares decisions, not tie rules.
    const random = new SeededRandom(11);
    const draw = (from: number, span: number) => from + Math.floor(random.uniform() * span);
    const trace: TraceRequest[] = [];
    let atMs = 0;
    for (let index = 0; index < 60; index++) {
      atMs += draw(5_000, 60_000);
      const band = serviceBands[Math.floor(random.uniform() * 4)] as ServiceBand;
      const outcomes: TraceOutcome[] =
        index % 9 === 4 ? [{ kind: 'fail', afterMs: draw(11_000, 30_000) }] : [];
      outcomes.push({ kind: 'answer', ttftMs: draw(13_000, 90_000), gapMs: draw(3_000, 17_000) });
      trace.push(
        request(`r${index}`, atMs, {
          tenant: random.uniform() < 0.7 ? 'acme' : 'globex',
          band,
          prompt: groupPrompt(`g${index % 4}`, `question ${index}`),
          maxTokens: draw(2, 12),
          outcomes,
        }),
      );
    }
    const decisions = await onBothClocks(
      {
        replicas: replicas({ id: 'a' }, { id: 'b' }, { id: 'c' }),
        routing: {
          policy: 'prefix-load',
          tierProfiles: { priority: 'latency', batch: 'least-loaded' },
          health: { consecutiveFailures: 2, ejectionMs: 500_000, maxEjectionMs: 5_000_000 },
          retries: { maxAttempts: 3, minRetriesPerSecond: 100 },
        },
        scheduling: {
          slots: 2,
          tiers: {
            priority: { ttftMs: 500_000, tpotMs: 50_000, maxQueueWaitMs: 60_000_000 },
            default: { ttftMs: 2_000_000, tpotMs: 100_000, maxQueueWaitMs: 40_000 },
            flex: { ttftMs: 120_000, tpotMs: 200_000, maxQueueWaitMs: 120_000_000 },
          },
        },
        seed: 5,
      },
      trace,
    );
    // The trace exercised every kind of decision, so agreeing on it means something.
    const count = (pattern: RegExp) => decisions.filter((line) => pattern.test(line)).length;
    expect(count(/ routed /)).toBeGreaterThanOrEqual(trace.length);
    expect(count(/ refused .*: shed/)).toBeGreaterThan(0);
    expect(count(/ refused .*: expired/)).toBeGreaterThan(0);
    expect(count(/ retried /)).toBeGreaterThan(0);
    // Some requests waited in a queue: dispatched later than routed.
    const routedAt = new Map<string, number>();
    let queued = 0;
    for (const line of decisions) {
      const [time, kind, id] = line.split(' ');
      if (kind === 'routed') routedAt.set(id as string, Number(time));
      if (kind === 'dispatched' && Number(time) > (routedAt.get(id as string) ?? 0)) queued++;
    }
    expect(queued).toBeGreaterThan(0);
  });

  /**
   * Each registered filter and scorer, alone in a profile (filters beside a load scorer that would
   * choose otherwise), with its signal pointing one way and then the other: the decision follows the
   * signal on both clocks.
   */
  const pluginCases: Record<string, () => Promise<void>> = {
    'queue-depth': async () => {
      const decisions = await onBothClocks(
        {
          replicas: replicas({ id: 'a' }, { id: 'b' }),
          routing: { policy: 'least-loaded' },
          scheduling: null,
          seed: 1,
        },
        [request('long', 0, { maxTokens: 50 }), request('second', 10)],
      );
      // While `long` runs its replica is the loaded one: the next request goes to the other.
      expect(placed(decisions, 'second')).not.toBe(placed(decisions, 'long'));
    },
    'kv-cache': async () => {
      for (const [full, empty] of [
        ['a', 'b'],
        ['b', 'a'],
      ] as const) {
        const decisions = await onBothClocks(
          {
            replicas: replicas({ id: full, kvUsedFraction: 0.9 }, { id: empty, kvUsedFraction: 0.1 }),
            routing: { policy: 'kv', profiles: { kv: { scorers: [{ type: 'kv-cache' }] } } },
            scheduling: null,
            seed: 1,
          },
          [request('probe', 0)],
        );
        expect(placed(decisions, 'probe')).toBe(empty);
      }
    },
    latency: async () => {
      for (const fastFirst of [true, false]) {
        const slow: TraceOutcome = { kind: 'answer', ttftMs: 400, gapMs: 40 };
        const fast: TraceOutcome = { kind: 'answer', ttftMs: 20, gapMs: 5 };
        const decisions = await onBothClocks(
          {
            replicas: replicas({ id: 'a' }, { id: 'b' }),
            // Load spreads the two warm-up requests; latency, weighted higher, decides once learnt.
            routing: {
              policy: 'fast',
              profiles: {
                fast: {
                  scorers: [
                    { type: 'queue-depth', weight: 1 },
                    { type: 'latency', weight: 2 },
                  ],
                },
              },
            },
            scheduling: null,
            seed: 2,
          },
          [
            request('first', 0, { outcomes: [fastFirst ? fast : slow] }),
            request('second', 1, { outcomes: [fastFirst ? slow : fast] }),
            request('probe', 5000),
          ],
        );
        const fastOne = placed(decisions, fastFirst ? 'first' : 'second');
        expect(placed(decisions, 'first')).not.toBe(placed(decisions, 'second'));
        expect(placed(decisions, 'probe')).toBe(fastOne);
      }
    },
    'prefix-affinity': async () => {
      const decisions = await onBothClocks(
        {
          replicas: replicas({ id: 'a' }, { id: 'b' }),
          routing: {
            policy: 'affinity',
            profiles: {
              affinity: {
                scorers: [
                  { type: 'prefix-affinity', weight: 2, params: { loadBound: null } },
                  { type: 'queue-depth', weight: 1 },
                ],
              },
            },
          },
          scheduling: null,
          seed: 3,
        },
        [
          request('warm', 0, { prompt: groupPrompt('p', 'first'), maxTokens: 40 }),
          // While `warm` runs its replica is loaded: the same prefix still goes there, another does not.
          request('same-prefix', 20, { prompt: groupPrompt('p', 'second') }),
          request('other-prefix', 40, { prompt: groupPrompt('q', 'third') }),
        ],
      );
      expect(placed(decisions, 'same-prefix')).toBe(placed(decisions, 'warm'));
      expect(placed(decisions, 'other-prefix')).not.toBe(placed(decisions, 'warm'));
    },
    'prefix-hash': async () => {
      const groups = ['p', 'q', 'r', 's', 't', 'u'];
      const decisions = await onBothClocks(
        {
          replicas: replicas({ id: 'a' }, { id: 'b' }),
          routing: {
            policy: 'hashed',
            profiles: {
              hashed: {
                scorers: [
                  { type: 'prefix-hash', weight: 3, params: { loadBound: null } },
                  { type: 'queue-depth', weight: 1 },
                ],
              },
            },
          },
          scheduling: null,
          seed: 3,
        },
        groups.flatMap((group, index) => [
          request(`warm-${group}`, index * 1000, { prompt: groupPrompt(group, 'first'), maxTokens: 40 }),
          // While `warm` runs its replica is loaded, yet the same prefix still hashes there.
          request(`again-${group}`, index * 1000 + 20, { prompt: groupPrompt(group, 'second') }),
        ]),
      );
      for (const group of groups)
        expect(placed(decisions, `again-${group}`)).toBe(placed(decisions, `warm-${group}`));
      // The hash points one way for some prefixes and the other way for others.
      expect(new Set(groups.map((group) => placed(decisions, `warm-${group}`))).size).toBe(2);
    },
    cost: () => followsLabel('cost', 'costPerMillionTokensUsd', 1, 5),
    energy: () => followsLabel('energy', 'energyJoulesPerToken', 0.5, 3),
    residency: async () => {
      for (const region of ['eu', 'us']) {
        const decisions = await onBothClocks(
          {
            replicas: replicas({ id: 'a' }, { id: 'b' }),
            routing: {
              policy: 'least-loaded',
              replicas: { a: { region: 'us' }, b: { region: 'eu' } },
              residency: { acme: { regions: [region] } },
            },
            scheduling: null,
            seed: 1,
          },
          // The allowed replica is busy with a long request: load alone would choose the other one.
          [request('busy', 0, { maxTokens: 50, tenant: 'globex' }), request('probe', 10)],
        );
        expect(placed(decisions, 'probe')).toBe(region === 'eu' ? 'b' : 'a');
      }
    },
    healthy: async () => {
      const decisions = await onBothClocks(
        {
          replicas: replicas({ id: 'a' }, { id: 'b' }),
          routing: {
            policy: 'least-loaded',
            health: { consecutiveFailures: 1, ejectionMs: 60_000 },
          },
          scheduling: null,
          seed: 4,
        },
        [
          request('fails', 0, {
            outcomes: [
              { kind: 'fail', afterMs: 5 },
              { kind: 'answer', ttftMs: 10, gapMs: 5 },
            ],
          }),
          // Long after: both replicas idle, but the one that failed is ejected.
          ...Array.from({ length: 4 }, (_, index) => request(`probe${index}`, 1000 + index * 500)),
        ],
      );
      const failed = (/retried fails away from (\S+)/.exec(decisions.join('\n')) as RegExpExecArray)[1];
      for (let index = 0; index < 4; index++) expect(placed(decisions, `probe${index}`)).not.toBe(failed);
    },
    'serves-features': async () => {
      for (const [withTools, textOnly] of [
        ['a', 'b'],
        ['b', 'a'],
      ] as const) {
        const decisions = await onBothClocks(
          {
            replicas: replicas(
              { id: withTools, servedFeatures: ['tools'] },
              { id: textOnly, servedFeatures: [] },
            ),
            routing: { policy: 'least-loaded' },
            scheduling: null,
            seed: 1,
          },
          [
            // The replica serving tools is busy: load alone would send the next tool request elsewhere.
            request('busy', 0, { maxTokens: 50, features: ['tools'] }),
            request('tools', 10, { features: ['tools'] }),
            request('plain', 15),
            request('audio', 20, { features: ['input_audio'] }),
          ],
        );
        expect(placed(decisions, 'busy')).toBe(withTools);
        expect(placed(decisions, 'tools')).toBe(withTools);
        expect(placed(decisions, 'plain')).toBe(textOnly);
        // Served nowhere: refused on both clocks.
        expect(decisions.some((line) => / refused audio: no-replica/.test(line))).toBe(true);
      }
    },
    'context-fits': async () => {
      for (const [small, large] of [
        ['a', 'b'],
        ['b', 'a'],
      ] as const) {
        const decisions = await onBothClocks(
          {
            replicas: replicas({ id: small, contextTokens: 1024 }, { id: large, contextTokens: 16_384 }),
            routing: { policy: 'least-loaded' },
            scheduling: null,
            seed: 1,
          },
          [
            // Whichever replica the first request keeps busy, the long prompt fits only the large one.
            request('busy', 0, { maxTokens: 50, prompt: 'short' }),
            request('long-prompt', 10, { prompt: 'x'.repeat(8000), maxTokens: 16 }),
          ],
        );
        expect(placed(decisions, 'busy')).toBeDefined();
        expect(placed(decisions, 'long-prompt')).toBe(large);
      }
    },
  };

  it('has a both-clocks case for every registered filter and scorer', () => {
    expect(Object.keys(pluginCases).sort()).toEqual(
      [...filterPlugins.keys(), ...scorerPlugins.keys()].sort(),
    );
  });

  for (const [plugin, run] of Object.entries(pluginCases))
    it(`${plugin}: the decision follows its signal, live and simulated`, run);
});
