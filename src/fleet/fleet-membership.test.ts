import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defaults } from '../core/defaults.js';
import { routingConfigSchema } from '../routing/routing-config.js';
import { schedulerSettings } from '../scheduling/scheduler-settings.js';
import { schedulingSettingsShape } from '../scheduling/scheduling-config.js';
import {
  type FleetAttempt,
  FleetCore,
  type FleetRefusal,
  type FleetReplicaOptions,
  fleetRequest,
  isRefusal,
} from './fleet-core.js';

// Replicas join and leave a running core (the Endpoint Picker's discovery): what routing sees, what
// happens to queued and running attempts, and that nothing kept under a removed replica's id survives.

const idle = { waitingRequests: 0, runningRequests: 0, kvUsedFraction: null };
const oneSlot = schedulerSettings(z.object(schedulingSettingsShape).parse({}), defaults.tiers, 1);

function replica(id: string): FleetReplicaOptions {
  return { id, models: [{ id: 'm', contextTokens: null }], signals: idle, scheduler: oneSlot };
}

function fleet(ids: string[]) {
  const refused: Array<{ tag: string; refusal: FleetRefusal }> = [];
  const removed: string[] = [];
  const core = new FleetCore<string>({
    replicas: ids.map(replica),
    routing: routingConfigSchema.parse({ policy: 'prefix-load' }),
    random: () => 0,
    explain: false,
    events: {
      onDispatch: () => {},
      onExpire: (attempt, refusal) => refused.push({ tag: attempt.request.tag, refusal }),
      onReplicaRemoved: (member) => removed.push(member.id),
    },
  });
  const submit = (tag: string, nowMs = 0, hashes: number[] | null = null) =>
    core.submit(
      fleetRequest({
        tag,
        model: 'm',
        tenant: 't',
        band: 'default',
        promptTokens: 10,
        maxTokens: null,
        promptBlockHashes: hashes,
      }),
      nowMs,
    );
  return { core, submit, refused, removed };
}

describe('fleet core membership', () => {
  it('routes to a replica added at run time and keeps its queue in step', () => {
    const { core, submit } = fleet(['a']);
    const first = submit('r1') as FleetAttempt<string>;
    expect(first.replica.id).toBe('a');
    const added = core.addReplica(replica('b'));
    expect(added.index).toBe(1);
    expect(core.pool('m')?.map((member) => member.id)).toEqual(['a', 'b']);
    // 'a' is busy (one slot): the next request goes to the newcomer and runs at once.
    const second = submit('r2') as FleetAttempt<string>;
    expect(second.replica.id).toBe('b');
    expect(second.state).toBe('running');
    expect(() => core.addReplica(replica('b'))).toThrow(/already/);
  });

  it('refuses the queued attempts of a retired replica, lets the running one end, then removes it', () => {
    const { core, submit, refused, removed } = fleet(['a']);
    const running = submit('running', 0, [1, 2]) as FleetAttempt<string>;
    const queued = submit('queued', 0) as FleetAttempt<string>;
    expect(queued.state).toBe('queued');
    expect(core.retireReplica('a', 1)).toBe(true);
    expect(core.retireReplica('a', 1)).toBe(false);
    // Out of routing at once; the queued request is told (503 live), not left waiting.
    expect(core.pool('m')).toEqual([]);
    expect(refused).toEqual([
      { tag: 'queued', refusal: expect.objectContaining({ kind: 'no-replica', filter: 'retired' }) },
    ]);
    expect(queued.state).toBe('done');
    const refusal = submit('late', 2);
    expect(isRefusal(refusal) && refusal.kind).toBe('no-replica');
    // Still a member while its attempt runs.
    expect(core.replicas.map((member) => member.id)).toEqual(['a']);
    expect(removed).toEqual([]);
    core.finish(running, 3, null);
    expect(removed).toEqual(['a']);
    expect(core.replicas).toEqual([]);
    expect(core.nextExpiryMs()).toBe(Number.POSITIVE_INFINITY);
  });

  it('forgets a removed replica: prefix index, latency figures, health; later indexes move down', () => {
    const { core, submit, refused } = fleet(['a', 'b', 'c']);
    const onA = submit('r1', 0, [7, 8]) as FleetAttempt<string>;
    const a = onA.replica.id;
    core.finish(onA, 5, null);
    core.fail(submit('r2', 6, [7, 8]) as FleetAttempt<string>, 7, {
      replicaFault: true,
      retryable: false,
      message: 'boom',
    });
    // Prefix affinity sent the second request with the same prompt to the same replica.
    expect(core.routingState.statistics.latency(a)).toBeDefined();
    expect(core.health.snapshot(8).map((entry) => entry.replica)).toContain(a);
    const matched = new Float64Array(1);
    core.routingState.prefixIndex.matchLeadingBlocks([7, 8], [a], 1, matched, 8);
    expect(matched[0]).toBe(2);

    expect(core.retireReplica(a, 9)).toBe(true);
    const left = ['a', 'b', 'c'].filter((id) => id !== a);
    expect(core.replicas.map((member) => [member.id, member.index])).toEqual(
      left.map((id, index) => [id, index]),
    );
    core.routingState.prefixIndex.matchLeadingBlocks([7, 8], [a], 1, matched, 9);
    expect(matched[0]).toBe(0);
    expect(core.routingState.statistics.latency(a)).toBeUndefined();
    expect(core.health.snapshot(9).map((entry) => entry.replica)).not.toContain(a);
    // Queue bounds still fire on the replicas that moved down.
    const attempts = ['r3', 'r4', 'r5'].map((tag) => submit(tag, 10) as FleetAttempt<string>);
    const queued = attempts.filter((attempt) => attempt.state === 'queued');
    expect(queued).toHaveLength(1);
    const boundMs = core.nextExpiryMs();
    expect(Number.isFinite(boundMs)).toBe(true);
    core.expire(boundMs);
    expect(refused.map((entry) => entry.tag)).toEqual([queued[0]?.request.tag]);
  });

  it('takes back a retiring replica that returns before its attempts ended', () => {
    const { core, submit, removed } = fleet(['a', 'b']);
    const running = submit('r1') as FleetAttempt<string>;
    const id = running.replica.id;
    const other = id === 'a' ? 'b' : 'a';
    core.retireReplica(id, 1);
    const back = core.addReplica(replica(id));
    expect(back).toBe(running.replica);
    expect(core.pool('m')?.map((member) => member.id)).toEqual([other, id]);
    core.finish(running, 2, null);
    expect(removed).toEqual([]);
    expect(core.replicas.map((member) => member.id)).toEqual(['a', 'b']);
  });
});
