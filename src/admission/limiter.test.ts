import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../core/virtual-clock.js';
import type { Limits } from './api-key.js';
import { Limiter, type LimitScope } from './limiter.js';

function scope(id: string, limits: Partial<Limits>): LimitScope {
  return { id, description: id, limits: { period: 'month', ...limits } };
}

function setup(epochStartMs = Date.UTC(2026, 10, 27, 12)) {
  const clock = new VirtualClock(epochStartMs);
  return { clock, limiter: new Limiter(clock) };
}

describe('Limiter', () => {
  it('admits up to the requests-per-minute limit, then refuses until the bucket refills', () => {
    const { clock, limiter } = setup();
    const key = scope('key:a', { rpm: 3 });
    for (let index = 0; index < 3; index++) expect(limiter.admit([key], 0).admitted).toBe(true);
    const refused = limiter.admit([key], 0);
    expect(refused.admitted).toBe(false);
    if (refused.admitted) return;
    expect(refused.denial).toMatchObject({ kind: 'requests', limit: 3, used: 3, requested: 1 });
    // 3 per minute refill one request every 20 s.
    expect(refused.denial.kind === 'requests' && refused.denial.retryAfterMs).toBe(20_000);
    clock.advanceTo(19_999);
    expect(limiter.admit([key], 0).admitted).toBe(false);
    clock.advanceTo(20_000);
    expect(limiter.admit([key], 0).admitted).toBe(true);
  });

  it('calls a request larger than the tokens-per-minute limit too large at once, even while rpm is spent', () => {
    const { limiter } = setup();
    const key = scope('key:a', { rpm: 1, tpm: 1000 });
    expect(limiter.admit([key], 10).admitted).toBe(true);
    const refused = limiter.admit([key], 1001);
    expect(refused.admitted === false && refused.denial).toMatchObject({
      kind: 'request-too-large',
      limit: 1000,
      requested: 1001,
    });
  });

  it('reports remaining requests and the time until the bucket is full again', () => {
    const { clock, limiter } = setup();
    const key = scope('key:a', { rpm: 60, tpm: 6000 });
    const first = limiter.admit([key], 100);
    expect(first.snapshot).toEqual({
      requests: { limit: 60, remaining: 59, resetMs: 1000 },
      tokens: { limit: 6000, remaining: 5900, resetMs: 1000 },
    });
    clock.advanceTo(500);
    const second = limiter.admit([key], 100);
    expect(second.snapshot.requests).toEqual({ limit: 60, remaining: 58, resetMs: 1500 });
  });

  it('reserves tokens at admission and trues them up with the real usage at the end', () => {
    const { limiter } = setup();
    const key = scope('key:a', { tpm: 1000 });
    const admitted = limiter.admit([key], 600);
    expect(admitted.admitted).toBe(true);
    // A second reservation of 600 does not fit in the 400 left.
    const refused = limiter.admit([key], 600);
    expect(refused.admitted === false && refused.denial.kind).toBe('tokens');
    // The first request used only 100 of its 600: 500 come back.
    if (admitted.admitted) limiter.release(admitted.ticket, 100);
    expect(limiter.admit([key], 600).admitted).toBe(true);
  });

  it('charges a request that used more than it reserved, delaying the next one', () => {
    const { clock, limiter } = setup();
    const key = scope('key:a', { tpm: 600 });
    const admitted = limiter.admit([key], 100);
    if (admitted.admitted) limiter.release(admitted.ticket, 700);
    // 600 - 700 = -100 tokens: 100 tokens refill in 10 s at 600 per minute, 10 more in 1 s.
    const refused = limiter.admit([key], 10);
    expect(
      refused.admitted === false && refused.denial.kind === 'tokens' && refused.denial.retryAfterMs,
    ).toBe(11_000);
    clock.advanceTo(11_000);
    expect(limiter.admit([key], 10).admitted).toBe(true);
  });

  it('refuses a reservation larger than the whole tokens-per-minute limit as too large', () => {
    const { limiter } = setup();
    const refused = limiter.admit([scope('key:a', { tpm: 100 })], 101);
    expect(refused.admitted === false && refused.denial).toMatchObject({
      kind: 'request-too-large',
      limit: 100,
      requested: 101,
    });
  });

  it('limits concurrent requests and frees a slot when a request ends', () => {
    const { limiter } = setup();
    const key = scope('key:a', { concurrency: 2 });
    const first = limiter.admit([key], 0);
    expect(limiter.admit([key], 0).admitted).toBe(true);
    const refused = limiter.admit([key], 0);
    expect(refused.admitted === false && refused.denial).toMatchObject({ kind: 'concurrency', limit: 2 });
    expect(limiter.inFlight('key:a')).toBe(2);
    if (first.admitted) limiter.release(first.ticket, 0);
    expect(limiter.admit([key], 0).admitted).toBe(true);
  });

  it('admits against the key and the tenant together, or consumes from neither', () => {
    const { limiter } = setup();
    const key = scope('key:a', { rpm: 10 });
    const tenant = scope('tenant:acme', { rpm: 1 });
    expect(limiter.admit([key, tenant], 0).admitted).toBe(true);
    const refused = limiter.admit([key, tenant], 0);
    expect(refused.admitted === false && refused.denial.scope.id).toBe('tenant:acme');
    // The refusal took nothing from the key: 9 remain, and the headers show the tightest scope.
    expect(refused.snapshot.requests?.remaining).toBe(0);
    const keyAlone = limiter.admit([key], 0);
    expect(keyAlone.snapshot.requests?.remaining).toBe(8);
  });

  it('refuses spend over the budget until the next period, which starts from zero', () => {
    const { clock, limiter } = setup(Date.UTC(2026, 10, 30, 23, 59, 0));
    const key = scope('key:a', { spendUsd: 1, period: 'month' });
    expect(limiter.spendToLoad(key)).toEqual({
      fromEpochMs: Date.UTC(2026, 10, 1),
      toEpochMs: Date.UTC(2026, 11, 1),
    });
    limiter.spendLoaded(key, 0.75);
    expect(limiter.spendToLoad(key)).toBeNull();
    expect(limiter.admit([key], 0).admitted).toBe(true);
    limiter.addSpend('key:a', clock.epochMs(), 0.25);
    const refused = limiter.admit([key], 0);
    expect(refused.admitted === false && refused.denial).toMatchObject({
      kind: 'spend',
      limitUsd: 1,
      spentUsd: 1,
      resetsAtEpochMs: Date.UTC(2026, 11, 1),
      retryAfterMs: 60_000,
    });
    clock.advanceTo(60_000);
    expect(limiter.admit([key], 0).admitted).toBe(true);
    // A price from a request received last month does not count against this one.
    limiter.addSpend('key:a', Date.UTC(2026, 10, 30, 23, 59, 30), 5);
    expect(limiter.admit([key], 0).admitted).toBe(true);
  });

  it('counts what finishes while the ledger is read, and retries a failed read', () => {
    const { clock, limiter } = setup();
    const tenant = scope('tenant:acme', { spendUsd: 1, period: 'day' });
    expect(limiter.spendToLoad(tenant)).not.toBeNull();
    limiter.addSpend('tenant:acme', clock.epochMs(), 0.5);
    limiter.spendLoaded(tenant, 0.5);
    expect(limiter.admit([tenant], 0).admitted).toBe(false);

    const other = scope('tenant:globex', { spendUsd: 1, period: 'day' });
    expect(limiter.spendToLoad(other)).not.toBeNull();
    limiter.spendLoaded(other, undefined);
    expect(limiter.spendToLoad(other)).not.toBeNull();
  });
});
