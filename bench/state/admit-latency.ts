// Shared admission state's cost per request: `Admission.tryAdmit` against the in-process Limiter and
// against the RedisLimiter (a redis-server of its own on loopback, from Debian's package), one after the
// other in one run, and the Redis scripts each admitted request costs (INFO commandstats).
//   npm run bench:state -- --help

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Admission } from '../../src/admission/admission.js';
import type { ApiKey } from '../../src/admission/api-key.js';
import { connectRedis } from '../../src/admission/redis-connection.js';
import { RedisLimiter } from '../../src/admission/redis-limiter.js';
import { keyCaller } from '../../src/admission/request-caller.js';
import { SqliteKeyStore } from '../../src/admission/sqlite-key-store.js';
import { systemClock } from '../../src/core/clock.js';
import { quantileOf } from '../../src/core/quantile.js';
import { startRedis } from '../../test/support/redis-server.js';
import { columnsTable, fixed, integer, printPreamble, ratio, readOptions } from '../support/report-format.js';

const options = readOptions(
  'bench:state',
  'Admission latency with limits in process and in Redis, and Redis scripts per request',
  {
    admissions: integer(5000, 'sequential admissions measured per limiter', { quick: 500 }),
    warmup: integer(500, 'admissions before measuring', { quick: 100 }),
  },
);
printPreamble('Shared admission state', 'bench:state', [
  `settings: ${options.admissions} sequential admissions (+${options.warmup} warm-up) per limiter; key and tenant scopes with rpm, tpm and concurrency`,
]);

const limits = { rpm: 1e9, tpm: 1e12, concurrency: 1e6, period: 'month' as const };
const key: ApiKey = {
  id: 'benchkey0001',
  prefix: 'gk-benchkey0001-xxxx',
  secretSha256: Buffer.alloc(32),
  tenant: 'acme',
  defaultTier: 'default',
  allowedTiers: ['default'],
  limits,
  admin: false,
  createdAtMs: 0,
  revokedAtMs: null,
} as ApiKey;
const caller = keyCaller(key);
const request = {
  input: { kind: 'chat', messages: [{ role: 'user', content: 'hello there, how are you?' }] },
  maxTokens: 64,
} as never;

/** Milliseconds per admission (ends included, as a request would), sorted. */
async function measure(admission: Admission): Promise<number[]> {
  const samples: number[] = [];
  for (let index = 0; index < options.admissions + options.warmup; index++) {
    const context = {
      usage: { promptTokens: 10, completionTokens: 20 },
      prefillTokens: 0,
      decodeTokens: 0,
      receivedAtEpochMs: Date.now(),
      tenant: 'acme',
      apiKeyId: key.id,
    } as never;
    const started = process.hrtime.bigint();
    const decision = await admission.tryAdmit(context, caller, request);
    const ended = process.hrtime.bigint();
    if (!decision.admitted)
      throw new Error('an admission was refused: the limits are meant to be out of reach');
    admission.onRequestEnd(context);
    if (index >= options.warmup) samples.push(Number(ended - started) / 1e6);
  }
  return samples.sort((a, b) => a - b);
}

const directory = mkdtempSync(path.join(tmpdir(), 'gravity-bench-state-'));
const server = await startRedis();
const keys = new SqliteKeyStore(path.join(directory, 'keys.sqlite'));
const admissionOptions = {
  keys,
  clock: systemClock,
  keyCacheMs: 1000,
  required: false,
  tenants: { acme: limits },
  unboundedCompletionReserveTokens: 1024,
};
try {
  const memory = await measure(new Admission(admissionOptions));
  const redis = await connectRedis(server.url, { commandTimeoutMs: 250 });
  const limiter = new RedisLimiter({ redis, clock: systemClock, leaseMs: 30_000, log: console.error });
  const scriptCalls = async () => {
    const info = await redis.info('commandstats');
    return (
      Number(/cmdstat_evalsha:calls=(\d+)/.exec(info)?.[1] ?? 0) +
      Number(/cmdstat_eval:calls=(\d+)/.exec(info)?.[1] ?? 0)
    );
  };
  const before = await scriptCalls();
  const shared = await measure(
    new Admission({
      ...admissionOptions,
      shared: { limiter, onUnavailable: 'closed', reserveUsd: () => 0, log: console.error },
    }),
  );
  // The last releases are sent without waiting: let them land before counting.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const scripts = (await scriptCalls()) - before;
  limiter.close();
  redis.disconnect();

  const row = (name: string, samples: number[]) => ({
    name,
    p50: quantileOf(samples, 0.5),
    p99: quantileOf(samples, 0.99),
  });
  const rows = [row('in process (Limiter)', memory), row('Redis (RedisLimiter)', shared)];
  console.log(
    columnsTable(rows, [
      ['limits', (r) => r.name],
      ['admit p50 ms', (r) => fixed(r.p50, 4)],
      ['admit p99 ms', (r) => fixed(r.p99, 4)],
      ['p50 / in process', (r) => ratio(r.p50, rows[0]?.p50)],
      ['p99 / in process', (r) => ratio(r.p99, rows[0]?.p99)],
    ]),
  );
  console.log(
    `\nRedis scripts per admitted request (admit + release): ${fixed(scripts / (options.admissions + options.warmup), 3)}`,
  );
} finally {
  keys.close();
  await server.close();
  rmSync(directory, { recursive: true, force: true });
}
