// `/v1/usage` over a large ledger (issue 14's target: 1,000,000 rows answered within 1 s, the event loop
// never blocked more than 50 ms, RSS bounded; issue 15: the same over 10 million rows, SQLite against
// PostgreSQL). Fills each store with the same generated rows (SQLite from a recursive CTE, PostgreSQL
// from generate_series, both server-side, so the benchmark's own heap stays as small as a gateway's),
// serves the real usage route over HTTP on loopback, and measures each call's time, the longest
// event-loop block (perf_hooks.monitorEventLoopDelay) and the gateway's RSS before and after. The old way
// (every row read with `records()`, totalled in JavaScript on the event loop) is run beside the new one
// over a smaller range, since over the whole ledger it takes minutes and gigabytes. PostgreSQL is a
// throwaway local cluster (test/support/postgres-server.ts, fsync off); its own memory is not in the RSS.
// Run with `npm run bench:usage -- --help`.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import Fastify, { type FastifyInstance } from 'fastify';
import postgres from 'postgres';
import { openModeCaller, setRequestCaller } from '../../src/admission/request-caller.js';
import { registerUsageRoute } from '../../src/api/usage-route.js';
import { GravityError } from '../../src/core/errors.js';
import type { LedgerStore } from '../../src/metering/ledger/ledger-store.js';
import { PostgresLedgerStore } from '../../src/metering/ledger/postgres-ledger-store.js';
import { SqliteLedgerStore } from '../../src/metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../../src/metering/usage-record.js';
import { aggregateUsage, usageGroupJson } from '../../src/metering/usage-report.js';
import { usageRecord } from '../../test/conformance/ledger-store.case.js';
import { type PostgresServer, startPostgres } from '../../test/support/postgres-server.js';
import {
  columnsTable,
  fixed,
  integer,
  printPreamble,
  ratio,
  readOptions,
  text,
  verdict,
} from '../support/report-format.js';

const hourMs = 3_600_000;
const dayMs = 24 * hourMs;
const days = 30;
const startMs = Date.UTC(2026, 10, 1);

const options = readOptions(
  'bench:usage',
  '/v1/usage over a large ledger: time, event-loop block and RSS, SQLite against PostgreSQL, new way (SQL off the event loop) and old',
  {
    rows: integer(1_000_000, 'ledger rows (the same in each store)', { quick: 50_000 }),
    compareRows: integer(100_000, 'rows in the range both ways are run over', { quick: 10_000 }),
    concurrent: integer(4, 'concurrent calls in the concurrency round'),
    store: text('both', 'which stores to fill and query', { choices: ['sqlite', 'postgres', 'both'] }),
    postgresJit: text('on', "PostgreSQL's JIT for the ledger's database (on: the server's default)", {
      choices: ['on', 'off'],
    }),
  },
  (given) => {
    if (given.rows <= days) throw new Error(`--rows: at least ${days + 1} (one marker row per day)`);
  },
);
const storeNames = (options.store === 'both' ? ['sqlite', 'postgres'] : [options.store]) as StoreName[];
printPreamble('Usage query', 'bench:usage', [
  `settings: ${options.rows} rows per store (${storeNames.join(', ')}), old and new compared over ${options.compareRows} rows, ${options.concurrent} concurrent calls`,
  `stores:   SQLite file (WAL, reader thread) | PostgreSQL 15 on loopback (fsync off, 2 reader connections, jit ${options.postgresJit})`,
]);

type StoreName = 'sqlite' | 'postgres';
const storeLabels: Record<StoreName, string> = { sqlite: 'SQLite', postgres: 'PostgreSQL' };

/** Whole milliseconds between rows, so that every row's time is an integer. */
function spacingMs(rows: number): number {
  return Math.max(1, Math.floor((days * dayMs) / rows));
}

/**
 * One record at the start of each day, appended through the store's own `append`: in PostgreSQL that
 * creates the day's partition as a gateway would (the bulk fill below then lands in it), and both stores
 * hold these same records.
 */
function dayMarkers(): UsageRecord[] {
  return Array.from({ length: days }, (_, day) =>
    usageRecord({ requestId: `day-${day}`, tenant: 'tenant-0', receivedAtMs: startMs + day * dayMs }),
  );
}

/**
 * The generated rows' values as SQL over the row number `i`, the same in both dialects: a multiplicative
 * hash instead of random() so that SQLite and PostgreSQL hold the same rows (compared after the fill).
 */
function generatedColumns(dialect: StoreName, rows: number): string {
  const hashed = (salt: number, modulus: number) =>
    `(((i + ${salt}) * 2654435761) % 4294967291) % ${modulus}`;
  const spacing = spacingMs(rows);
  return [
    dialect === 'sqlite' ? "printf('req-%09d', i)" : "'req-' || lpad(i::text, 9, '0')",
    `${startMs} + i * ${spacing}`,
    `${startMs} + i * ${spacing} + 900`,
    "'chat.completions'",
    "'tenant-' || (i % 20)",
    "CASE WHEN i % 3 = 0 THEN 'llama-3.1-70b' ELSE 'llama-3.1-8b' END",
    "'h100-' || (i % 8)",
    "CASE i % 4 WHEN 0 THEN 'default' WHEN 1 THEN 'priority' WHEN 2 THEN 'flex' ELSE 'batch' END",
    dialect === 'sqlite' ? '1' : 'true',
    'CASE WHEN i % 20 = 7 THEN 500 ELSE 200 END',
    "CASE WHEN i % 20 = 7 THEN 'engine_error' END",
    hashed(1, 4000),
    hashed(2, 1000),
    hashed(3, 600),
    "'engine'",
    `CASE WHEN i % 20 = 7 THEN NULL ELSE ${hashed(4, 800000)} / 1000.0 END`,
    '900',
    `${hashed(5, 50000)} / 1000.0`,
    "'estimated:power-model'",
    `${hashed(6, 1000)} / 1e6`,
    "'amortized-hourly'",
    `${hashed(7, 1000)} / 1e5`,
    `${hashed(8, 900)} / 1e5`,
    `${hashed(9, 1000)} / 1e4`,
  ].join(', ');
}

const generatedColumnNames = `request_id, received_at_ms, finished_at_ms, endpoint, tenant, model, engine, tier,
  stream, status, error_code, prompt_tokens, cached_prompt_tokens, completion_tokens, usage_source, ttft_ms,
  e2e_ms, energy_joules, energy_source, cost_usd, cost_source, price_usd, margin_usd, carbon_grams`;

/** Rows spread evenly over 30 days (so the first `n` rows are a time range), written by SQLite itself. */
function fillSqlite(file: string, rows: number): void {
  const database = new Database(file);
  database.exec(`WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ${rows - 1})
    INSERT INTO usage_records (${generatedColumnNames}) SELECT ${generatedColumns('sqlite', rows)} FROM seq`);
  database.close();
}

/**
 * The same rows written by PostgreSQL itself, into the day partitions `append` created, with their ids in
 * `usage_request_ids` as `append` writes them; then ANALYZE, as autovacuum would do soon after a load.
 */
async function fillPostgres(url: string, rows: number): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`INSERT INTO usage_records (${generatedColumnNames})
      SELECT ${generatedColumns('postgres', rows)} FROM generate_series(0::bigint, ${rows - 1}) AS i`);
    await sql.unsafe(`INSERT INTO usage_request_ids (request_id, received_at_ms)
      SELECT request_id, received_at_ms FROM usage_records WHERE request_id LIKE 'req-%'`);
    await sql.unsafe('ANALYZE');
  } finally {
    await sql.end();
  }
}

/** The route as it was before issue 14: every row read with `records()` and totalled on the event loop. */
function registerOldUsageRoute(app: FastifyInstance, store: LedgerStore): void {
  app.get('/old/usage', async (request) => {
    const query = request.query as { end_time?: string };
    const toMs = query.end_time === undefined ? undefined : Number(query.end_time) * 1000;
    const records = await store.records({ toMs });
    return { object: 'list', group_by: [], data: aggregateUsage(records, []).map(usageGroupJson) };
  });
}

interface Measurement {
  label: string;
  rows: number;
  status: string;
  wallMs: number;
  maxBlockMs: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  /** The first response's body. */
  body: string;
}

const mib = (bytes: number) => bytes / 1024 ** 2;

async function measure(label: string, rows: number, urls: string[]): Promise<Measurement> {
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  // A ticker beside the histogram: the longest gap between its ticks is the longest block, whichever
  // way Node's histogram samples.
  let lastTickMs = performance.now();
  let longestGapMs = 0;
  const tickMs = 5;
  const sampler = setInterval(() => {
    const nowMs = performance.now();
    longestGapMs = Math.max(longestGapMs, nowMs - lastTickMs - tickMs);
    lastTickMs = nowMs;
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  }, tickMs);
  histogram.enable();
  const started = performance.now();
  const responses = await Promise.all(urls.map((url) => fetch(url)));
  const bodies = await Promise.all(responses.map((response) => response.text()));
  const wallMs = performance.now() - started;
  // A block is recorded when the loop next runs a timer: let it, before reading the histogram.
  await new Promise((resolve) => setTimeout(resolve, 20));
  histogram.disable();
  clearInterval(sampler);
  rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  return {
    label,
    rows,
    status: responses.map((response) => response.status).join(','),
    wallMs,
    // The histogram records each loop iteration's delay in ns; the max is the longest block.
    maxBlockMs: Math.max(histogram.max / 1e6, longestGapMs),
    rssBeforeMiB: mib(rssBefore),
    rssAfterMiB: mib(rssPeak),
    body: bodies[0] ?? '',
  };
}

/** Fills one store with the day markers and the generated rows; returns it open for the route. */
async function filledStore(
  name: StoreName,
  directory: string,
  postgresServer: () => Promise<PostgresServer>,
): Promise<LedgerStore> {
  const generatedRows = options.rows - days;
  const maxPendingSummaries = options.concurrent;
  if (name === 'sqlite') {
    const file = path.join(directory, 'ledger.sqlite');
    const markers = new SqliteLedgerStore(file);
    await markers.append(dayMarkers());
    await markers.close();
    fillSqlite(file, generatedRows);
    return new SqliteLedgerStore(file, { maxPendingSummaries });
  }
  const server = await postgresServer();
  const url = await server.createDatabase();
  // JIT compiles each grouped summary's expressions before running it (the planner's estimate of the
  // statement passes jit_above_cost): seconds on a small machine, whatever the ledger's size.
  if (options.postgresJit === 'off') {
    const maintenance = postgres(server.url, { max: 1, onnotice: () => {} });
    await maintenance.unsafe(`ALTER DATABASE ${new URL(url).pathname.slice(1)} SET jit = off`);
    await maintenance.end();
  }
  const store = await PostgresLedgerStore.open(url, { maxPendingSummaries });
  await store.append(dayMarkers());
  await fillPostgres(url, generatedRows);
  return store;
}

/** The calls of one store, each over HTTP through the real route. */
async function measureStore(store: LedgerStore): Promise<Measurement[]> {
  const app = Fastify();
  app.addHook('onRequest', async (request) => setRequestCaller(request, openModeCaller));
  app.setErrorHandler((error, _request, reply) => {
    if (error instanceof GravityError) return reply.status(error.status).send(error.toBody());
    return reply.status(500).send({ error: { message: String(error) } });
  });
  registerUsageRoute(app, store);
  registerOldUsageRoute(app, store);
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const compareEndMs = startMs + options.compareRows * spacingMs(options.rows - days);
  const compareEnd = `end_time=${Math.ceil(compareEndMs / 1000)}`;
  const results: Measurement[] = [];
  try {
    // Warm the reader (thread or connections) and the page cache once, as a running gateway would have them.
    await measure('warm-up', options.compareRows, [`${base}/v1/usage?${compareEnd}`]);
    results.push(await measure('new, whole ledger', options.rows, [`${base}/v1/usage`]));
    results.push(
      await measure('new, whole ledger, by day,tenant,model', options.rows, [
        `${base}/v1/usage?group_by=day,tenant,model`,
      ]),
    );
    results.push(
      await measure(
        `new, whole ledger, ${options.concurrent} concurrent`,
        options.rows,
        Array.from({ length: options.concurrent }, () => `${base}/v1/usage`),
      ),
    );
    results.push(
      await measure(
        `new, whole ledger, ${options.concurrent + 1} concurrent (one over the bound)`,
        options.rows,
        Array.from({ length: options.concurrent + 1 }, () => `${base}/v1/usage`),
      ),
    );
    results.push(await measure('new, range', options.compareRows, [`${base}/v1/usage?${compareEnd}`]));
    results.push(await measure('old, range', options.compareRows, [`${base}/old/usage?${compareEnd}`]));
  } finally {
    await app.close();
  }
  return results;
}

/** The figures that must match exactly between stores (float sums may differ in their last bits). */
function exactFigures(body: string): string {
  const data = (JSON.parse(body) as { data: Array<Record<string, unknown>> }).data;
  return JSON.stringify(
    data.map(({ requests, failed_requests, prompt_tokens, completion_tokens, ttft_p50_ms }) => ({
      requests,
      failed_requests,
      prompt_tokens,
      completion_tokens,
      ttft_p50_ms,
    })),
  );
}

const directory = mkdtempSync(path.join(os.tmpdir(), 'gravity-bench-usage-'));
let server: PostgresServer | undefined;
const postgresServer = async () => {
  server ??= await startPostgres();
  return server;
};
try {
  const measured = new Map<StoreName, Measurement[]>();
  for (const name of storeNames) {
    const fillStarted = performance.now();
    const store = await filledStore(name, directory, postgresServer);
    console.log(
      `${storeLabels[name]}: filled ${options.rows} rows in ${fixed((performance.now() - fillStarted) / 1000, 1)} s`,
    );
    try {
      measured.set(name, await measureStore(store));
    } finally {
      await store.close();
    }
    // One store's files at a time on disk: 10 million rows are a few GB in each.
    if (name === 'sqlite') rmSync(path.join(directory, 'ledger.sqlite'), { force: true });
    else {
      await server?.close();
      server = undefined;
    }
  }
  console.log('');

  for (const name of storeNames) {
    const results = measured.get(name) as Measurement[];
    console.log(`${storeLabels[name]}:`);
    console.log(
      columnsTable(results, [
        ['call', (row) => row.label],
        ['rows', (row) => String(row.rows)],
        ['status', (row) => row.status],
        ['time ms', (row) => fixed(row.wallMs)],
        ['max loop block ms', (row) => fixed(row.maxBlockMs, 1)],
        ['RSS before MiB', (row) => fixed(row.rssBeforeMiB)],
        ['RSS peak MiB', (row) => fixed(row.rssAfterMiB)],
      ]),
    );
    console.log('');
  }

  const sqlite = measured.get('sqlite');
  const postgresResults = measured.get('postgres');
  if (sqlite && postgresResults) {
    console.log('Side by side (same rows, same calls, one run):');
    console.log(
      columnsTable(
        sqlite.map((row, index) => [row, postgresResults[index] as Measurement] as const),
        [
          ['call', ([row]) => row.label],
          ['SQLite ms', ([row]) => fixed(row.wallMs)],
          ['PostgreSQL ms', ([, other]) => fixed(other.wallMs)],
          ['PG / SQLite', ([row, other]) => ratio(other.wallMs, row.wallMs)],
          ['SQLite block ms', ([row]) => fixed(row.maxBlockMs, 1)],
          ['PG block ms', ([, other]) => fixed(other.maxBlockMs, 1)],
          ['SQLite RSS +MiB', ([row]) => fixed(row.rssAfterMiB - row.rssBeforeMiB)],
          ['PG RSS +MiB', ([, other]) => fixed(other.rssAfterMiB - other.rssBeforeMiB)],
        ],
      ),
    );
    console.log('');
    // Same rows, same answers: the two stores' ungrouped and grouped answers agree on every exact figure.
    for (const index of [0, 1])
      verdict(
        exactFigures((sqlite[index] as Measurement).body) ===
          exactFigures((postgresResults[index] as Measurement).body),
        `${(sqlite[index] as Measurement).label}: SQLite and PostgreSQL give the same requests, tokens and TTFT p50`,
      );
  }

  for (const name of storeNames) {
    const results = measured.get(name) as Measurement[];
    const label = storeLabels[name];
    const whole = results[0] as Measurement;
    const grouped = results[1] as Measurement;
    const newWays = results.filter((row) => row.label.startsWith('new'));
    verdict(
      whole.wallMs <= 1000,
      `${label}: ${options.rows} rows answered in ${fixed(whole.wallMs)} ms (target ≤ 1000 ms)`,
    );
    verdict(
      grouped.wallMs <= 1000,
      `${label}: ${options.rows} rows by day,tenant,model answered in ${fixed(grouped.wallMs)} ms (target ≤ 1000 ms)`,
    );
    const maxBlock = Math.max(...newWays.map((row) => row.maxBlockMs));
    verdict(
      maxBlock <= 50,
      `${label}: event loop blocked at most ${fixed(maxBlock, 1)} ms by the new way (target ≤ 50 ms)`,
    );
    const rssGrowth = Math.max(...newWays.map((row) => row.rssAfterMiB - row.rssBeforeMiB));
    console.log(`${label}: RSS grew at most ${fixed(rssGrowth)} MiB during a new-way call`);
  }
} finally {
  await server?.close();
  rmSync(directory, { recursive: true, force: true });
}
