// `/v1/usage` over a large ledger (issue 14's target: 1,000,000 rows answered within 1 s, the event loop
// never blocked more than 50 ms, RSS bounded). Builds a ledger in a temporary folder, serves the real
// usage route over HTTP on loopback, and measures each call's time, the longest event-loop block
// (perf_hooks.monitorEventLoopDelay) and RSS before and after. The old way (every row read with
// `records()`, totalled in JavaScript on the event loop) is run beside the new one over a smaller range,
// since over the whole ledger it takes minutes and gigabytes.
// Run with `npm run bench:usage -- --help`.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import Fastify, { type FastifyInstance } from 'fastify';
import { openModeCaller, setRequestCaller } from '../../src/admission/request-caller.js';
import { registerUsageRoute } from '../../src/api/usage-route.js';
import { GravityError } from '../../src/core/errors.js';
import { SqliteLedgerStore } from '../../src/metering/ledger/sqlite-ledger-store.js';
import { aggregateUsage, usageGroupJson } from '../../src/metering/usage-report.js';
import {
  columnsTable,
  fixed,
  integer,
  printPreamble,
  readOptions,
  verdict,
} from '../support/report-format.js';

const options = readOptions(
  'bench:usage',
  '/v1/usage over a large ledger: time, event-loop block and RSS, new way (SQL on a reader thread) and old',
  {
    rows: integer(1_000_000, 'ledger rows', { quick: 50_000 }),
    compareRows: integer(100_000, 'rows in the range both ways are run over', { quick: 10_000 }),
    concurrent: integer(4, 'concurrent calls in the concurrency round'),
  },
);
printPreamble('Usage query', 'bench:usage', [
  `settings: ${options.rows} rows, old and new compared over ${options.compareRows} rows, ${options.concurrent} concurrent calls`,
]);

const hourMs = 3_600_000;
const startMs = Date.UTC(2026, 10, 1);

/**
 * Rows spread evenly over 30 days (so the first `n` rows are a time range), written by SQLite itself
 * from a recursive CTE: the benchmark's own heap stays as small as a gateway's before the calls.
 */
function fillLedger(file: string, rows: number): void {
  const database = new Database(file);
  database.exec(`WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ${rows - 1})
    INSERT INTO usage_records (request_id, received_at_ms, finished_at_ms, endpoint, tenant, model, engine, tier,
      stream, status, error_code, prompt_tokens, cached_prompt_tokens, completion_tokens, usage_source, ttft_ms,
      e2e_ms, energy_joules, energy_source, cost_usd, cost_source, price_usd, margin_usd, carbon_grams)
    SELECT printf('req-%09d', i), ${startMs} + i * ${spacingMs(rows)}, ${startMs} + i * ${spacingMs(rows)} + 900,
      'chat.completions', 'tenant-' || (i % 20), CASE WHEN i % 3 = 0 THEN 'llama-3.1-70b' ELSE 'llama-3.1-8b' END,
      'h100-' || (i % 8), CASE i % 4 WHEN 0 THEN 'default' WHEN 1 THEN 'priority' WHEN 2 THEN 'flex' ELSE 'batch' END,
      1, CASE WHEN i % 20 = 7 THEN 500 ELSE 200 END, CASE WHEN i % 20 = 7 THEN 'engine_error' END,
      abs(random()) % 4000, abs(random()) % 1000, abs(random()) % 600, 'engine',
      CASE WHEN i % 20 = 7 THEN NULL ELSE (abs(random()) % 800000) / 1000.0 END, 900,
      (abs(random()) % 50000) / 1000.0, 'estimated:power-model', (abs(random()) % 1000) / 1e6,
      'amortized-hourly', (abs(random()) % 1000) / 1e5, (abs(random()) % 900) / 1e5, (abs(random()) % 1000) / 1e4
    FROM seq`);
  database.close();
}

/** Whole milliseconds between rows, so that every row's time is an integer. */
function spacingMs(rows: number): number {
  return Math.max(1, Math.floor((30 * 24 * hourMs) / rows));
}

/** The route as it was before issue 14: every row read with `records()` and totalled on the event loop. */
function registerOldUsageRoute(app: FastifyInstance, store: SqliteLedgerStore): void {
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
  await Promise.all(responses.map((response) => response.arrayBuffer()));
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
  };
}

const directory = mkdtempSync(path.join(os.tmpdir(), 'gravity-bench-usage-'));
try {
  const file = path.join(directory, 'ledger.sqlite');
  new SqliteLedgerStore(file).close();
  const fillStarted = performance.now();
  fillLedger(file, options.rows);
  const compareEndMs = startMs + options.compareRows * spacingMs(options.rows);
  console.log(`filled ${options.rows} rows in ${fixed((performance.now() - fillStarted) / 1000, 1)} s\n`);

  const store = new SqliteLedgerStore(file, { maxPendingSummaries: options.concurrent });
  const app = Fastify();
  app.addHook('onRequest', async (request) => setRequestCaller(request, openModeCaller));
  app.setErrorHandler((error, _request, reply) => {
    if (error instanceof GravityError) return reply.status(error.status).send(error.toBody());
    return reply.status(500).send({ error: { message: String(error) } });
  });
  registerUsageRoute(app, store);
  registerOldUsageRoute(app, store);
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const compareEnd = `end_time=${Math.ceil(compareEndMs / 1000)}`;
  const results: Measurement[] = [];
  // Warm the reader thread and SQLite's page cache once, as a running gateway would have them.
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
  await app.close();
  await store.close();

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
  const whole = results[0] as Measurement;
  const newWays = results.filter((row) => row.label.startsWith('new'));
  verdict(
    whole.wallMs <= 1000,
    `${options.rows} rows answered in ${fixed(whole.wallMs)} ms (target ≤ 1000 ms)`,
  );
  const grouped = results[1] as Measurement;
  verdict(
    grouped.wallMs <= 1000,
    `${options.rows} rows by day,tenant,model answered in ${fixed(grouped.wallMs)} ms (target ≤ 1000 ms)`,
  );
  const maxBlock = Math.max(...newWays.map((row) => row.maxBlockMs));
  verdict(
    maxBlock <= 50,
    `event loop blocked at most ${fixed(maxBlock, 1)} ms by the new way (target ≤ 50 ms)`,
  );
  const rssGrowth = Math.max(...newWays.map((row) => row.rssAfterMiB - row.rssBeforeMiB));
  console.log(`RSS grew at most ${fixed(rssGrowth)} MiB during a new-way call`);
} finally {
  rmSync(directory, { recursive: true, force: true });
}
