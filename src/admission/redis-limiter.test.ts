import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../../test/support/redis-server.js';
import { VirtualClock } from '../core/virtual-clock.js';
import type { Limits } from './api-key.js';
import { type LimitDecision, Limiter, type LimitScope, type LimitTicket } from './limiter.js';
import { RedisLimiter, type SharedLimitTicket } from './redis-limiter.js';

/**
 * The Lua scripts decide as the in-process Limiter does: the same sequence of admissions and releases on
 * the same (virtual) clock gives the same decisions, denials and snapshots. Plus what only a shared store
 * has: leases that free a crashed replica's slots, and budget reservations across replicas.
 */
let server: RedisServer;
const connections: Redis[] = [];

beforeAll(async () => {
  server = await startRedis();
}, 30_000);

afterAll(async () => {
  for (const connection of connections) connection.disconnect();
  await server?.close();
});

beforeEach(async () => {
  const redis = connect();
  await redis.flushall();
});

function connect(): Redis {
  const redis = new Redis(server.url, { maxRetriesPerRequest: 0 });
  connections.push(redis);
  return redis;
}

function advance(clock: VirtualClock, ms: number): void {
  clock.advanceTo(clock.nowMs() + ms);
}

function scope(id: string, limits: Partial<Limits>): LimitScope {
  return { id, description: id, limits: { period: 'month', ...limits } };
}

function redisLimiter(clock: VirtualClock, leaseMs = 60_000): RedisLimiter {
  return new RedisLimiter({
    redis: connect(),
    clock,
    leaseMs,
    log: () => {},
    scriptTimeFromClock: true,
  });
}

async function sharedAdmit(
  limiter: RedisLimiter,
  scopes: LimitScope[],
  tokens: number,
  reserveUsd = 0,
): Promise<LimitDecision<SharedLimitTicket>> {
  for (;;) {
    const outcome = await limiter.admit(scopes, tokens, reserveUsd);
    if (outcome.kind === 'decided') return outcome.decision;
    if (outcome.kind === 'unavailable') throw outcome.error;
    for (const load of outcome.scopes) await limiter.seedSpend(load.scope, load.fromEpochMs, 0);
  }
}

/** What a decision shows a client: admitted or the denial, and the headers' figures. */
function visible(decision: LimitDecision<unknown>) {
  return decision.admitted
    ? { admitted: true, snapshot: decision.snapshot }
    : {
        admitted: false,
        denial: { ...decision.denial, scope: decision.denial.scope.id },
        snapshot: decision.snapshot,
      };
}

/** Runs one seeded sequence against both limiters, comparing every decision; counts the outcomes. */
async function compareSequence(key: LimitScope, tenant: LimitScope, kinds: Set<string>) {
  const clock = new VirtualClock(Date.UTC(2026, 10, 27, 12));
  const local = new Limiter(clock);
  const shared = redisLimiter(clock);
  let seed = 12345;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const running: Array<{ local: LimitTicket; shared: SharedLimitTicket }> = [];
  let admitted = 0;
  let refused = 0;
  for (let step = 0; step < 300; step++) {
    advance(clock, Math.floor(random() * 2000));
    if (running.length > 0 && random() < 0.4) {
      const [ticket] = running.splice(Math.floor(random() * running.length), 1);
      if (!ticket) continue;
      const used = Math.floor(random() * 400);
      const priceUsd = Math.round(random() * 1000) / 100_000;
      local.release(ticket.local, used);
      // Admission counts a price against the request's scopes; the shared release against its ticket's.
      for (const each of ticket.shared.scopes) local.addSpend(each.id, clock.epochMs(), priceUsd);
      shared.release(ticket.shared, used, priceUsd);
      continue;
    }
    const scopes = random() < 0.7 ? [key, tenant] : [tenant];
    const tokens = Math.floor(random() * 500);
    for (const each of scopes) if (local.spendToLoad(each)) local.spendLoaded(each, 0);
    const expected = local.admit(scopes, tokens);
    const actual = await sharedAdmit(shared, scopes, tokens);
    expect(visible(actual), `${key.id} step ${step}`).toEqual(visible(expected));
    if (expected.admitted && actual.admitted) {
      running.push({ local: expected.ticket, shared: actual.ticket });
      admitted += 1;
    } else {
      refused += 1;
      if (!expected.admitted) kinds.add(expected.denial.kind);
    }
  }
  shared.close();
  return { admitted, refused };
}

describe('RedisLimiter', () => {
  it('decides random sequences of admissions and releases exactly as the in-process Limiter', async () => {
    const kinds = new Set<string>();
    // Three mixes of limits, so that each kind of refusal comes up.
    const mixes: Array<[Partial<Limits>, Partial<Limits>]> = [
      [{ rpm: 3, tpm: 5000 }, { rpm: 50 }],
      [
        { tpm: 480, concurrency: 2 },
        { tpm: 2000, concurrency: 4 },
      ],
      [{ spendUsd: 0.15, rpm: 100 }, { concurrency: 5 }],
    ];
    for (const [index, [keyLimits, tenantLimits]] of mixes.entries()) {
      const counts = await compareSequence(
        scope(`key:a${index}`, keyLimits),
        scope(`tenant:t${index}`, tenantLimits),
        kinds,
      );
      expect(counts.admitted, `mix ${index}`).toBeGreaterThan(10);
      expect(counts.refused, `mix ${index}`).toBeGreaterThan(10);
    }
    expect([...kinds].sort()).toEqual(['concurrency', 'request-too-large', 'requests', 'spend', 'tokens']);
  });

  it('admits exactly the rpm limit across two replicas sharing one Redis', async () => {
    const clock = new VirtualClock(Date.UTC(2026, 10, 27, 12));
    const first = redisLimiter(clock);
    const second = redisLimiter(clock);
    const key = scope('key:b', { rpm: 10 });
    const decisions = await Promise.all(
      Array.from({ length: 30 }, (_, index) => sharedAdmit(index % 2 ? first : second, [key], 0)),
    );
    expect(decisions.filter((decision) => decision.admitted)).toHaveLength(10);
    first.close();
    second.close();
  });

  it('frees the slots of a replica that stopped renewing them once their lease expires', async () => {
    const clock = new VirtualClock(Date.UTC(2026, 10, 27, 12));
    const crashed = redisLimiter(clock, 5000);
    const survivor = redisLimiter(clock, 5000);
    const key = scope('key:c', { concurrency: 2 });
    expect((await sharedAdmit(crashed, [key], 0)).admitted).toBe(true);
    expect((await sharedAdmit(crashed, [key], 0)).admitted).toBe(true);
    crashed.close(); // never releases, never renews
    const refused = await sharedAdmit(survivor, [key], 0);
    expect(refused.admitted === false && refused.denial.kind).toBe('concurrency');
    advance(clock, 4999);
    expect((await sharedAdmit(survivor, [key], 0)).admitted).toBe(false);
    advance(clock, 2);
    expect((await sharedAdmit(survivor, [key], 0)).admitted).toBe(true);
    survivor.close();
  });

  it('counts in-flight reservations against a budget, and reconciles them with the real price', async () => {
    const clock = new VirtualClock(Date.UTC(2026, 10, 27, 12));
    const first = redisLimiter(clock);
    const second = redisLimiter(clock);
    const tenant = scope('tenant:b', { spendUsd: 1, period: 'day' });
    // Seeded from "the ledger": 0.5 spent already today; the second seed (another replica) is ignored.
    const opening = await first.admit([tenant], 0, 0.2);
    expect(opening.kind).toBe('load-spend');
    const periodStart = Date.UTC(2026, 10, 27);
    await first.seedSpend(tenant, periodStart, 0.5);
    await second.seedSpend(tenant, periodStart, 0.9);
    const a = await sharedAdmit(first, [tenant], 0, 0.2); // 0.5 spent: in, 0.2 reserved
    const b = await sharedAdmit(second, [tenant], 0, 0.2); // 0.7: in
    const c = await sharedAdmit(first, [tenant], 0, 0.2); // 0.9: in
    const d = await sharedAdmit(second, [tenant], 0, 0.2); // 1.1: out
    expect([a.admitted, b.admitted, c.admitted, d.admitted]).toEqual([true, true, true, false]);
    expect(d.admitted === false && d.denial).toMatchObject({ kind: 'spend', limitUsd: 1 });
    // The first cost only 0.01: its reservation goes, its price stays; there is room again (0.91).
    if (a.admitted) first.release(a.ticket, 0, 0.01);
    // A release is not awaited (it must not hold a response's end); Redis runs one connection's commands
    // in order, so once a later command on the first limiter's connection has answered, it has run.
    await first.seedSpend(scope('tenant:unrelated', { spendUsd: 1, period: 'day' }), periodStart, 0);
    expect((await sharedAdmit(second, [tenant], 0, 0.2)).admitted).toBe(true);
    expect((await sharedAdmit(second, [tenant], 0, 0.2)).admitted).toBe(false);
    first.close();
    second.close();
  });

  it('says the store is unavailable when Redis does not answer, instead of waiting', async () => {
    const clock = new VirtualClock(Date.UTC(2026, 10, 27, 12));
    const redis = new Redis('redis://127.0.0.1:1', {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    redis.on('error', () => {});
    const limiter = new RedisLimiter({ redis, clock, leaseMs: 1000, log: () => {} });
    const outcome = await limiter.admit([scope('key:d', { rpm: 1 })], 0, 0);
    expect(outcome.kind).toBe('unavailable');
    limiter.close();
    redis.disconnect();
  });
});
