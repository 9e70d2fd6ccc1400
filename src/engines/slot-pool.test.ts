import { describe, expect, it } from 'vitest';
import { SlotPool } from './slot-pool.js';

describe('SlotPool', () => {
  it('hands a released slot to the longest waiter first', async () => {
    const pool = new SlotPool(['s1']);
    const first = await pool.acquire(new AbortController().signal);
    const order: string[] = [];
    const a = pool.acquire(new AbortController().signal).then((slot) => order.push(`a:${slot}`));
    const b = pool.acquire(new AbortController().signal).then((slot) => order.push(`b:${slot}`));
    expect(pool.waiting).toBe(2);
    pool.release(first);
    await a;
    pool.release('s1');
    await b;
    expect(order).toEqual(['a:s1', 'b:s1']);
  });

  it('removes an aborted waiter from the queue at once', async () => {
    const pool = new SlotPool(['s1']);
    await pool.acquire(new AbortController().signal);
    const controller = new AbortController();
    const waiting = pool.acquire(controller.signal);
    expect(pool.waiting).toBe(1);
    controller.abort(new Error('client went away'));
    await expect(waiting).rejects.toThrow('client went away');
    expect(pool.waiting).toBe(0);
  });

  it('lets the caller choose among free slots', async () => {
    const pool = new SlotPool(['cold', 'warm']);
    const slot = await pool.acquire(new AbortController().signal, (free) => free.indexOf('warm'));
    expect(slot).toBe('warm');
    expect(pool.busy).toBe(1);
  });
});
