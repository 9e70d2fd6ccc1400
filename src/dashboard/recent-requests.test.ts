import { describe, expect, it } from 'vitest';
import { createRequestContext } from '../core/request-context.js';
import { VirtualClock } from '../core/virtual-clock.js';
import { RecentRequests } from './recent-requests.js';

function newRequest(clock: VirtualClock, tier: 'priority' | 'flex' = 'priority') {
  return createRequestContext({
    endpoint: 'chat.completions',
    stream: true,
    model: 'm',
    serviceTier: tier,
    nowMs: clock.nowMs(),
    epochMs: clock.epochMs(),
  });
}

describe('RecentRequests', () => {
  it('keeps the newest requests up to its capacity and hands out only those after a sequence', () => {
    const clock = new VirtualClock();
    const recent = new RecentRequests(clock, 3);
    for (let index = 0; index < 5; index++) {
      const context = newRequest(clock);
      recent.onRequestStart(context);
      context.status = 200;
      context.firstTokenAtMs = context.receivedAtMs + 40;
      context.interTokenGapsMs = [10, 30, 20];
      recent.onRequestEnd(context);
    }
    expect(recent.lastSequence).toBe(5);
    expect(recent.after(0).map((request) => request.sequence)).toEqual([3, 4, 5]);
    expect(recent.after(4).map((request) => request.sequence)).toEqual([5]);
    expect(recent.after(5)).toEqual([]);
    const [newest] = recent.after(4);
    expect(newest).toMatchObject({ tier: 'priority', ttft_ms: 40, itl_p50_ms: 20, tenant: 'anonymous' });
  });

  it('counts requests in flight per tier as waiting until an engine starts them', () => {
    const clock = new VirtualClock();
    const recent = new RecentRequests(clock);
    const waiting = newRequest(clock, 'flex');
    const running = newRequest(clock, 'flex');
    recent.onRequestStart(waiting);
    recent.onRequestStart(running);
    running.startedAtMs = clock.nowMs();
    expect(recent.queues().find((queue) => queue.tier === 'flex')).toEqual({
      tier: 'flex',
      waiting: 1,
      running: 1,
    });
    recent.onRequestEnd(waiting);
    recent.onRequestEnd(running);
    expect(recent.queues().find((queue) => queue.tier === 'flex')).toEqual({
      tier: 'flex',
      waiting: 0,
      running: 0,
    });
  });
});
