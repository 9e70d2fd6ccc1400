import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFile } from './support/config-file.js';
import { type GravityProcess, spawnGravity, startGravityProcess } from './support/gravity-process.js';
import { type PostgresServer, startPostgres } from './support/postgres-server.js';
import { type RedisServer, startRedis } from './support/redis-server.js';

/**
 * Three `gravity serve` processes sharing one Redis (`state.store: redis`) and one PostgreSQL ledger:
 * limits, budgets and keys hold for the fleet, not per replica; a replica killed mid-request frees its
 * slots when their leases expire; a Redis outage is open or closed as configured; a replica that cannot
 * reach its Redis does not start.
 */
const leaseMs = 2000;
const model = 'llama-3.1-8b';
/** $0.001 a token (any model, any kind): one small request costs cents, so a budget is a few requests. */
const pricing = `pricing:
  default: { inputPerMillionUsd: 1000, outputPerMillionUsd: 1000, embeddingInputPerMillionUsd: 1000 }
  tierMultipliers: { priority: 1, default: 1, flex: 1, batch: 1, scale: 1 }
`;
const budgetUsd = 0.2;
const tenants = `tenants:
  capped: { concurrency: 2 }
  victims: { concurrency: 2 }
  budget: { spendUsd: ${budgetUsd}, period: day }
`;

let redis: RedisServer;
let ledger: PostgresServer;
let env: NodeJS.ProcessEnv;
let ledgerUrl: string;
const replicas: GravityProcess[] = [];
let victim: GravityProcess;
let closedReplica: GravityProcess;
const running: GravityProcess[] = [];

async function serve(onUnavailable: 'open' | 'closed'): Promise<GravityProcess> {
  const config = configFile(
    `state: { onUnavailable: ${onUnavailable}, leaseMs: ${leaseMs} }\n${tenants}${pricing}`,
  );
  const gateway = await startGravityProcess(['--emulate', 'h200:llama-3.1-8b:1', '--config', config], env);
  running.push(gateway);
  return gateway;
}

beforeAll(async () => {
  [redis, ledger] = await Promise.all([startRedis(), startPostgres()]);
  ledgerUrl = await ledger.createDatabase();
  env = { GRAVITY_STATE_URL: redis.url, GRAVITY_LEDGER_URL: ledgerUrl };
  // One at a time: the ledger's migrations run under a lock anyway, and the machine is small.
  for (let index = 0; index < 3; index++) replicas.push(await serve('open'));
  victim = await serve('open');
  closedReplica = await serve('closed');
}, 240_000);

afterAll(async () => {
  for (const gateway of running) {
    if (gateway.child.exitCode === null && gateway.child.signalCode === null) gateway.child.kill('SIGTERM');
    await gateway.exited;
  }
  await redis?.close();
  await ledger?.close();
});

async function createKey(tenant: string, flags: string[] = []): Promise<{ id: string; key: string }> {
  const run = spawnGravity(['keys', 'create', '--tenant', tenant, '--format', 'json', ...flags], env);
  const { code } = await run.exited;
  expect(code, run.stderr()).toBe(0);
  return JSON.parse(run.stdout()) as { id: string; key: string };
}

function chat(url: string, key: string, maxTokens = 3, stream = false): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({
      model,
      messages: [{ role: 'user', content: 'hello there' }],
      max_tokens: maxTokens,
      stream,
    }),
  });
}

/** The status, with the body read (so the connection is free). */
async function status(response: Promise<Response>): Promise<{ status: number; code: string | null }> {
  const answer = await response;
  const text = await answer.text();
  let code: string | null = null;
  if (answer.status >= 400) code = (JSON.parse(text) as { error: { code: string | null } }).error.code;
  return { status: answer.status, code };
}

/** A replica's `gravity_shared_state_unavailable_total` for its `state.onUnavailable`. */
async function unavailableCount(replica: GravityProcess, onUnavailable: 'open' | 'closed'): Promise<number> {
  const text = await (await fetch(`${replica.url}/metrics`)).text();
  const match = new RegExp(
    `^gravity_shared_state_unavailable_total\\{on_unavailable="${onUnavailable}"\\} (\\d+)$`,
    'm',
  ).exec(text);
  expect(match, text.slice(0, 200)).not.toBeNull();
  return Number(match?.[1]);
}

/** `count` requests at once, spread over the replicas in turn. */
async function burst(key: string, count: number, over = replicas) {
  return Promise.all(
    Array.from({ length: count }, (_, index) =>
      status(chat((over[index % over.length] as GravityProcess).url, key)),
    ),
  );
}

describe('three replicas sharing Redis', () => {
  it('admit exactly a key’s requests-per-minute limit between them under a concurrent burst', async () => {
    const { key } = await createKey('burst', ['--rpm', '6']);
    const answers = await burst(key, 30);
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(6);
    expect(answers.filter((answer) => answer.status === 429)).toHaveLength(24);
    expect(new Set(answers.filter((a) => a.status === 429).map((a) => a.code))).toEqual(
      new Set(['rate_limit_exceeded']),
    );
  }, 60_000);

  it('hold a tenant’s concurrency limit between them', async () => {
    const { key } = await createKey('capped');
    // Long answers: the first two are still running while the rest arrive.
    const slow = replicas.map((replica) => status(chat(replica.url, key, 800)));
    const more = replicas.map((replica) => status(chat(replica.url, key, 800)));
    const answers = await Promise.all([...slow, ...more]);
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(2);
    expect(answers.filter((answer) => answer.status === 429)).toHaveLength(4);
  }, 60_000);

  it('free the slots of a replica killed mid-request once their leases expire', async () => {
    const { key } = await createKey('victims');
    // Two streams held open on the victim: both slots of the tenant's two are taken.
    const held = [chat(victim.url, key, 4000, true), chat(victim.url, key, 4000, true)];
    for (const response of held) {
      const answer = await response;
      expect(answer.status).toBe(200);
      // Read as it comes, so the streams run on rather than stall on a full socket.
      void answer.body?.pipeTo(new WritableStream()).catch(() => {});
    }
    const refused = await status(chat(replicas[0]?.url as string, key));
    expect(refused).toEqual({ status: 429, code: 'rate_limit_exceeded' });
    // Past one lease the slots are still held: the live replica renews them while its requests run.
    await new Promise((resolve) => setTimeout(resolve, leaseMs + 500));
    expect(await status(chat(replicas[0]?.url as string, key))).toEqual({
      status: 429,
      code: 'rate_limit_exceeded',
    });

    victim.child.kill('SIGKILL');
    await victim.exited;
    const killedAtMs = Date.now();
    let freedAfterMs = Number.POSITIVE_INFINITY;
    while (Date.now() - killedAtMs < leaseMs + 3000) {
      const answer = await status(chat(replicas[1]?.url as string, key));
      if (answer.status === 200) {
        freedAfterMs = Date.now() - killedAtMs;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // Within one lease (renewals keep live ones; a dead replica renews nothing), plus a poll's slack.
    expect(freedAfterMs).toBeLessThan(leaseMs + 1500);
  }, 60_000);

  it('hold a tenant’s daily spend budget between them within one request’s price', async () => {
    const { key } = await createKey('budget');
    let quotaRefusals = 0;
    // Bursts until the budget refuses; each burst spreads over all three replicas at once.
    for (let round = 0; round < 10 && quotaRefusals === 0; round++) {
      const answers = await burst(key, 9);
      quotaRefusals = answers.filter((answer) => answer.code === 'insufficient_quota').length;
    }
    expect(quotaRefusals).toBeGreaterThan(0);
    const sql = postgres(ledgerUrl, { max: 1, onnotice: () => {} });
    try {
      const [totals] = await sql<{ spent: number; dearest: number }[]>`
        SELECT COALESCE(SUM(price_usd), 0)::float8 AS spent, COALESCE(MAX(price_usd), 0)::float8 AS dearest
        FROM usage_records WHERE tenant = 'budget'`;
      expect(totals?.spent).toBeGreaterThan(budgetUsd * 0.5);
      expect(totals?.spent).toBeLessThanOrEqual(budgetUsd + (totals?.dearest ?? 0));
    } finally {
      await sql.end();
    }
  }, 120_000);

  it('refuse a key revoked with gravity keys revoke on every replica within 1.5 s', async () => {
    const { id, key } = await createKey('revoked');
    for (const replica of replicas) expect((await status(chat(replica.url, key))).status).toBe(200);
    const revoke = spawnGravity(['keys', 'revoke', id], env);
    expect((await revoke.exited).code, revoke.stderr()).toBe(0);
    const revokedAtMs = Date.now();
    const refusedAfterMs = await Promise.all(
      replicas.map(async (replica) => {
        while (Date.now() - revokedAtMs < 5000) {
          const answer = await status(chat(replica.url, key));
          if (answer.status === 401) return Date.now() - revokedAtMs;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        return Number.POSITIVE_INFINITY;
      }),
    );
    for (const afterMs of refusedAfterMs) expect(afterMs).toBeLessThan(1500);
  }, 60_000);

  it('keep serving while Redis is down when open, answer 503 when closed, and limit again once it is back', async () => {
    const { key } = await createKey('outage', ['--rpm', '4']);
    await redis.stop();
    const open = await burst(key, 9);
    expect(open.map((answer) => answer.status)).toEqual(Array(9).fill(200));
    const closed = await status(chat(closedReplica.url, key));
    expect(closed).toEqual({ status: 503, code: 'limits_unavailable' });
    // The outage is on /metrics: every request admitted without limits, and the one refused.
    let admittedUnlimited = 0;
    for (const replica of replicas) admittedUnlimited += await unavailableCount(replica, 'open');
    expect(admittedUnlimited).toBeGreaterThanOrEqual(9);
    expect(await unavailableCount(closedReplica, 'closed')).toBeGreaterThanOrEqual(1);

    // Back, empty (no persistence): the replicas reconnect within a second or so.
    await redis.start();
    const backAtMs = Date.now();
    let answer = await status(chat(closedReplica.url, key));
    while (answer.status === 503 && Date.now() - backAtMs < 10_000) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      answer = await status(chat(closedReplica.url, key));
    }
    expect(answer.status).toBe(200);
    // One of the four went to the closed replica just now; the rest of the limit, and no more, remains.
    const after = await burst(key, 12, [...replicas, closedReplica]);
    expect(after.filter((each) => each.status === 200)).toHaveLength(3);
  }, 60_000);
});

describe('a replica whose Redis cannot be reached', () => {
  it('does not start, and names the URL without its password', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'gravity-process-'));
    const url = 'redis://:hunter2@127.0.0.1:1/0';
    const run = spawnGravity(['serve', '--port', '0', '--data-dir', dataDir], { GRAVITY_STATE_URL: url });
    const { code } = await run.exited;
    expect(code).toBe(1);
    expect(run.stderr()).toContain('redis://:***@127.0.0.1:1/0');
    expect(run.stderr()).not.toContain('hunter2');
    expect(run.stdout()).not.toContain('listening');
  }, 60_000);
});
