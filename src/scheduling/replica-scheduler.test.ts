import { describe, expect, it } from 'vitest';
import type { ServiceBand } from '../core/service-tiers.js';
import {
  ReplicaScheduler,
  type ReplicaSchedulerSettings,
  type ScheduledRequest,
} from './replica-scheduler.js';
import {
  arrivalOrder,
  earliestDeadlineFirst,
  neverShed,
  noFairness,
  sloShedding,
  virtualTokenCounter,
} from './scheduling-policies.js';

const tiers = {
  priority: { ttftMs: 500, tpotMs: 50, maxQueueWaitMs: Number.POSITIVE_INFINITY },
  default: { ttftMs: 2000, tpotMs: 100, maxQueueWaitMs: 10_000 },
  flex: { ttftMs: 5000, tpotMs: 200, maxQueueWaitMs: 60_000 },
  batch: { ttftMs: 86_400_000, tpotMs: 1000, maxQueueWaitMs: Number.POSITIVE_INFINITY },
};

function scheduler(overrides: Partial<ReplicaSchedulerSettings> = {}) {
  const dispatched: string[] = [];
  const expired: string[] = [];
  const running = new Map<string, ScheduledRequest<string>>();
  const instance = new ReplicaScheduler<string>(
    {
      slots: 1,
      tiers,
      tierBands: true,
      ordering: earliestDeadlineFirst,
      fairness: virtualTokenCounter,
      saturation: sloShedding,
      batchReserveFraction: 0.25,
      priorityReserveFraction: 0,
      inputTokenWeight: 1,
      outputTokenWeight: 2,
      ...overrides,
    },
    {
      onDispatch: (request) => {
        dispatched.push(request.tag);
        running.set(request.tag, request);
      },
      onExpire: (request) => {
        expired.push(request.tag);
      },
    },
  );
  const submit = (tag: string, tier: ServiceBand, nowMs: number, tenant = 'acme', promptTokens = 10) =>
    instance.submit({ tag, tenant, tier, promptTokens }, nowMs);
  /** Finishes the running request `tag` after it produced `tokens` tokens. */
  const finish = (tag: string, nowMs: number, tokens = 10) => {
    const request = running.get(tag) as ScheduledRequest<string>;
    instance.onFirstToken(request, nowMs);
    instance.onTokens(request, tokens);
    running.delete(tag);
    instance.release(request, nowMs);
  };
  return { instance, dispatched, expired, submit, finish };
}

describe('replica scheduler', () => {
  it('runs what fits at once and queues the rest', () => {
    const queue = scheduler({ slots: 2 });
    queue.submit('a', 'default', 0);
    queue.submit('b', 'default', 0);
    queue.submit('c', 'default', 0);
    expect(queue.dispatched).toEqual(['a', 'b']);
    expect(queue.instance.queuedRequests).toBe(1);
    queue.finish('a', 100);
    expect(queue.dispatched).toEqual(['a', 'b', 'c']);
  });

  it('gives priority the next free slot ahead of everything queued', () => {
    const queue = scheduler();
    queue.submit('running', 'default', 0);
    queue.submit('flex', 'flex', 1);
    queue.submit('default', 'default', 2);
    queue.submit('priority', 'priority', 3);
    queue.finish('running', 100);
    queue.finish('priority', 200);
    queue.finish('default', 300);
    expect(queue.dispatched).toEqual(['running', 'priority', 'default', 'flex']);
  });

  it('serves tiers in arrival order when tier bands are off (the FCFS baseline)', () => {
    const queue = scheduler({
      tierBands: false,
      fairness: noFairness,
      ordering: arrivalOrder,
      saturation: neverShed,
    });
    queue.submit('running', 'default', 0);
    queue.submit('flex', 'flex', 1);
    queue.submit('priority', 'priority', 2);
    queue.finish('running', 100);
    expect(queue.dispatched).toEqual(['running', 'flex']);
  });

  it('sheds flex with a retry-after when its predicted TTFT misses the target, but queues priority and default', () => {
    const queue = scheduler();
    // Teach the queue that a request holds the slot for 1 s.
    queue.submit('warm', 'default', 0);
    queue.finish('warm', 1000);
    queue.submit('busy', 'default', 1000);
    for (let index = 0; index < 6; index++) queue.submit(`d${index}`, 'default', 1000);
    const flex = queue.submit('flex', 'flex', 1000);
    expect(flex.decision).toMatchObject({ kind: 'shed' });
    expect(flex.decision.kind === 'shed' && flex.decision.retryAfterMs).toBeGreaterThanOrEqual(5000);
    expect(queue.submit('priority', 'priority', 1000).decision.kind).toBe('queue');
    expect(queue.submit('default', 'default', 1000).decision.kind).toBe('queue');
    expect(queue.instance.shedTotal).toBe(1);
  });

  it('refuses a default request that waited past its bound, and leaves priority waiting', () => {
    const queue = scheduler();
    queue.submit('busy', 'default', 0);
    queue.submit('default', 'default', 0);
    queue.submit('priority', 'priority', 0);
    expect(queue.instance.nextExpiryMs()).toBe(10_000);
    queue.instance.expire(9_999);
    expect(queue.expired).toEqual([]);
    queue.instance.expire(10_000);
    expect(queue.expired).toEqual(['default']);
    expect(queue.instance.queuedRequests).toBe(1);
    queue.finish('busy', 20_000);
    expect(queue.dispatched).toEqual(['busy', 'priority']);
  });

  it('drops a cancelled request from the queue at once', () => {
    const queue = scheduler();
    queue.submit('busy', 'default', 0);
    const waiting = queue.submit('waiting', 'default', 0).request as ScheduledRequest<string>;
    queue.instance.cancel(waiting, 10);
    expect(queue.instance.queuedRequests).toBe(0);
    queue.finish('busy', 100);
    expect(queue.dispatched).toEqual(['busy']);
    expect(queue.instance.runningRequests).toBe(0);
  });

  it('runs batch only in spare capacity: never while interactive work waits, never into the reserve', () => {
    const queue = scheduler({ slots: 4, batchReserveFraction: 0.5 });
    for (let index = 0; index < 4; index++) queue.submit(`batch${index}`, 'batch', 0, 'batch-owner');
    expect(queue.dispatched).toEqual(['batch0', 'batch1']);
    queue.submit('d0', 'default', 1);
    queue.submit('d1', 'default', 1);
    queue.submit('d2', 'default', 1);
    expect(queue.dispatched).toEqual(['batch0', 'batch1', 'd0', 'd1']);
    queue.finish('batch0', 10);
    expect(queue.dispatched.at(-1)).toBe('d2');
    queue.finish('d0', 20);
    queue.finish('d1', 20);
    queue.finish('d2', 20);
    expect(queue.dispatched.slice(-1)).toEqual(['batch2']);
    expect(queue.instance.runningRequests).toBe(2);
  });

  it("keeps two backlogged tenants within VTC's bound while FCFS serves the heavy one ten to one", () => {
    const served = (fairness: typeof virtualTokenCounter) => {
      const queue = scheduler({ fairness, ordering: earliestDeadlineFirst });
      const tokens = new Map<string, number>([
        ['heavy', 0],
        ['light', 0],
      ]);
      let nowMs = 0;
      // The heavy tenant keeps ten requests queued for each of the light tenant's one.
      let sequence = 0;
      for (let round = 0; round < 100; round++) {
        for (let index = 0; index < 10; index++)
          queue.submit(`heavy-${sequence++}`, 'default', nowMs, 'heavy', 100);
        queue.submit(`light-${sequence++}`, 'default', nowMs, 'light', 100);
      }
      for (let served = 0; served < 100; served++) {
        const tag = queue.dispatched[served] as string;
        nowMs += 100;
        queue.finish(tag, nowMs, 50);
        const tenant = tag.split('-')[0] as string;
        tokens.set(tenant, (tokens.get(tenant) ?? 0) + 100 + 2 * 50);
      }
      return tokens;
    };
    const fair = served(virtualTokenCounter);
    const gap = Math.abs((fair.get('heavy') as number) - (fair.get('light') as number));
    // VTC's bound: 2 × the largest request cost (100 input + 2 × 50 output weighted tokens).
    expect(gap).toBeLessThanOrEqual(2 * 200);
    const fcfs = served(noFairness);
    expect((fcfs.get('heavy') as number) / (fcfs.get('light') as number)).toBeGreaterThan(8);
  });

  it('hands over the service given here once, and counts service other gateways gave a tenant', () => {
    const queue = scheduler();
    queue.submit('running', 'default', 0, 'other');
    queue.finish('running', 10, 5);
    const drained: Array<[string, string, number]> = [];
    const drain = () => {
      drained.length = 0;
      queue.instance.drainServedTokens((band, tenant, tokens) => drained.push([band, tenant, tokens]));
      return [...drained];
    };
    // 10 prompt tokens at weight 1 and 5 output tokens at weight 2.
    expect(drain()).toEqual([['default', 'other', 20]]);
    expect(drain()).toEqual([]);

    // Heavy queues first and light after it: alone, the tie between them goes to the older head.
    queue.submit('busy', 'default', 20, 'other');
    queue.submit('heavy', 'default', 21, 'heavy');
    queue.submit('light', 'default', 22, 'light');
    // Heavy was served 500 weighted tokens through another gateway meanwhile (a running total: setting
    // it twice counts it once); a band this queue does not have is ignored.
    queue.instance.setServiceElsewhere('default', 'heavy', 500);
    queue.instance.setServiceElsewhere('default', 'heavy', 500);
    queue.instance.setServiceElsewhere('all', 'heavy', 1e9);
    queue.finish('busy', 30, 1);
    expect(queue.dispatched.slice(-1)).toEqual(['light']);
    queue.finish('light', 40, 1);
    expect(queue.dispatched.slice(-1)).toEqual(['heavy']);
    // What other gateways served is theirs to share, not this queue's.
    expect(drain().find(([, tenant]) => tenant === 'heavy')).toEqual(['default', 'heavy', 10]);
  });

  it('keeps a reserve of slots that only priority may take', () => {
    const queue = scheduler({ slots: 4, priorityReserveFraction: 0.25 });
    for (let index = 0; index < 4; index++) queue.submit(`d${index}`, 'default', 0);
    expect(queue.dispatched).toEqual(['d0', 'd1', 'd2']);
    queue.submit('p', 'priority', 1);
    expect(queue.dispatched).toEqual(['d0', 'd1', 'd2', 'p']);
    expect(queue.instance.runningRequests).toBe(4);
  });
});
