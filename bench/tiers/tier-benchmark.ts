// Tiers under overload: the gateway's SLO scheduler (tier bands, VTC fairness, flex shedding, batch in
// spare capacity) against a first-come-first-served baseline, on the same emulated replica, in one run.
//
// For each scheduler (fcfs, then slo) a fresh `gravity serve` child process runs one emulated A100 serving
// Llama-3.1-8B (16 sequences at once), with API keys for four tenants. Phases:
//   1. capacity: closed loop, 48 users, to measure what the replica completes per second;
//   2. unloaded: priority requests alone at a light rate: the reference TTFT;
//   3. overload: Poisson arrivals at --factor × capacity (priority 20%, default 40%, flex 40%) in bursts
//      with short valleys, and a batch job submitted at the start that should run in the valleys;
//   4. fairness: two tenants on the default tier, both backlogged (more requests than the replica's 16
//      slots), one with ten times the other's concurrent requests.
// Run with `npx tsx bench/tiers/tier-benchmark.ts --help`.

import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import OpenAI, { toFile } from 'openai';
import { ChildProcessGroup, gravityChildEnvironment } from '../support/child-processes.js';
import { describeMachine, formatTable, percentile, positiveNumber } from '../support/report-format.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const modelId = 'llama-3.1-8b';
const promptText = 'Summarise the following notes for the weekly report. '.repeat(16); // ≈ 200 tokens
const maxTokens = 64;
const priorityTtftTargetMs = 300;

const { values: flags } = parseArgs({
  options: {
    factor: { type: 'string', default: '1.5' },
    'overload-seconds': { type: 'string', default: '36' },
    'fairness-seconds': { type: 'string', default: '20' },
    'batch-lines': { type: 'string', default: '60' },
    help: { type: 'boolean', default: false },
  },
});
if (flags.help) {
  process.stdout.write(
    'npx tsx bench/tiers/tier-benchmark.ts [--factor 1.5] [--overload-seconds 36] [--fairness-seconds 20] [--batch-lines 60]\n',
  );
  process.exit(0);
}
const factor = positiveNumber('factor', flags.factor, false);
const overloadSeconds = positiveNumber('overload-seconds', flags['overload-seconds'], false);
const fairnessSeconds = positiveNumber('fairness-seconds', flags['fairness-seconds'], false);
const batchLines = positiveNumber('batch-lines', flags['batch-lines'], true);

type Variant = 'fcfs' | 'slo';
const tenants = ['interactive', 'big', 'small', 'batcher'] as const;
type Tenant = (typeof tenants)[number];

function configYaml(variant: Variant): string {
  const scheduling =
    variant === 'slo'
      ? 'scheduling: { tierBands: true, ordering: earliest-deadline, fairness: vtc, saturation: slo }'
      : 'scheduling: { tierBands: false, ordering: arrival, fairness: none, saturation: none }';
  return `
engines:
  replica: { type: emulated, hardware: a100-80gb, model: ${modelId}, maxNumSeqs: 16, contextTokens: 4096 }
models:
  ${modelId}: { engine: replica }
${scheduling}
tiers:
  priority: { ttftMs: ${priorityTtftTargetMs}, tpotMs: 60, maxQueueWaitMs: 60000 }
  default: { ttftMs: 2000, tpotMs: 100, maxQueueWaitMs: 15000 }
  flex: { ttftMs: 3000, tpotMs: 200, maxQueueWaitMs: 60000 }
metering: { intervalMs: 250 }
`;
}

interface Outcome {
  tenant: Tenant;
  tier: string;
  status: number;
  ttftMs: number | null;
  startMs: number;
  endMs: number;
  completionTokens: number;
}

/** One streamed request; never throws: failures are outcomes with their HTTP status. */
async function send(client: OpenAI, tenant: Tenant, tier: string, signal?: AbortSignal): Promise<Outcome> {
  const startMs = performance.now();
  let ttftMs: number | null = null;
  let completionTokens = 0;
  try {
    const stream = await client.chat.completions.create(
      {
        model: modelId,
        messages: [{ role: 'user', content: promptText }],
        max_tokens: maxTokens,
        stream: true,
        stream_options: { include_usage: true },
        service_tier: tier as 'auto',
      },
      signal ? { signal } : {},
    );
    for await (const chunk of stream) {
      if (ttftMs === null && chunk.choices[0]?.delta?.content) ttftMs = performance.now() - startMs;
      if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    }
    return { tenant, tier, status: 200, ttftMs, startMs, endMs: performance.now(), completionTokens };
  } catch (error) {
    const status = error instanceof OpenAI.APIError ? (error.status ?? 0) : 0;
    return { tenant, tier, status, ttftMs: null, startMs, endMs: performance.now(), completionTokens };
  }
}

/** Nearest-rank percentile `p` (0–100) of unsorted values; null when there are none. */
function percentileOf(values: number[], p: number): number | null {
  return values.length === 0
    ? null
    : percentile(
        [...values].sort((a, b) => a - b),
        p / 100,
      );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poisson arrivals at `ratePerSecond` for `seconds`, each request from `pick()`. */
async function openLoop(
  ratePerSecond: number,
  seconds: number,
  start: () => Promise<Outcome>,
): Promise<Outcome[]> {
  const pending: Promise<Outcome>[] = [];
  const endMs = performance.now() + seconds * 1000;
  let nextMs = performance.now();
  while (nextMs < endMs) {
    nextMs += -Math.log(1 - Math.random()) * (1000 / ratePerSecond);
    await sleep(Math.max(0, nextMs - performance.now()));
    pending.push(start());
  }
  return Promise.all(pending);
}

/** `users` concurrent clients, each sending its next request when the last one ends, for `seconds`. */
async function closedLoop(users: number, seconds: number, start: () => Promise<Outcome>): Promise<Outcome[]> {
  const endMs = performance.now() + seconds * 1000;
  const outcomes: Outcome[] = [];
  await Promise.all(
    Array.from({ length: users }, async () => {
      while (performance.now() < endMs) outcomes.push(await start());
    }),
  );
  return outcomes;
}

interface VariantReport {
  capacityPerSecond: number;
  unloadedPriorityP90: number | null;
  overload: Outcome[];
  batch: { status: string; completed: number; failed: number; seconds: number | null };
  fairness: { big: number; small: number; maxGap: number; maxRequestCost: number };
}

async function runVariant(
  variant: Variant,
  children: ChildProcessGroup,
  workDir: string,
): Promise<VariantReport> {
  const dataDir = path.join(workDir, `data-${variant}`);
  const configPath = path.join(workDir, `gravity-${variant}.yaml`);
  await writeFile(configPath, configYaml(variant));
  const keys = {} as Record<Tenant, string>;
  for (const tenant of tenants)
    keys[tenant] = execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'keys',
        'create',
        '--data-dir',
        dataDir,
        '--tenant',
        tenant,
        '--tiers',
        'priority,default,flex,batch',
        '--default-tier',
        'default',
      ],
      { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    ).trim();
  const server = await children.start({
    name: `gravity (${variant})`,
    command: process.execPath,
    args: [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'serve',
      '--port',
      '0',
      '--config',
      configPath,
      '--data-dir',
      dataDir,
    ],
    cwd: repoRoot,
    env: gravityChildEnvironment(),
    readyPattern: /gravity: listening on (\S+)/,
    startTimeoutMs: 60_000,
  });
  const baseURL = `${server.ready[1]}/v1`;
  const clients = Object.fromEntries(
    tenants.map((tenant) => [
      tenant,
      new OpenAI({ baseURL, apiKey: keys[tenant], maxRetries: 0, timeout: 120_000 }),
    ]),
  ) as Record<Tenant, OpenAI>;

  // 1. Capacity.
  const capacityWindow = 10;
  const saturated = await closedLoop(48, capacityWindow, () => send(clients.big, 'big', 'default'));
  const capacityPerSecond = saturated.filter((outcome) => outcome.status === 200).length / capacityWindow;
  await sleep(500);

  // 2. Unloaded priority TTFT.
  const unloaded = await openLoop(2, 8, () => send(clients.interactive, 'interactive', 'priority'));
  const unloadedPriorityP90 = percentileOf(
    unloaded.flatMap((outcome) => (outcome.ttftMs === null ? [] : [outcome.ttftMs])),
    90,
  );

  // 3. Overload in bursts, with a batch job submitted at the start.
  const lines = Array.from({ length: batchLines }, (_, index) =>
    JSON.stringify({
      custom_id: `line-${index}`,
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: modelId, messages: [{ role: 'user', content: promptText }], max_tokens: maxTokens },
    }),
  ).join('\n');
  const batchStartMs = performance.now();
  const file = await clients.batcher.files.create({
    file: await toFile(Buffer.from(lines), 'lines.jsonl'),
    purpose: 'batch',
  });
  const batch = await clients.batcher.batches.create({
    input_file_id: file.id,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
  });
  const rate = factor * capacityPerSecond;
  const overload: Outcome[] = [];
  const burstSeconds = overloadSeconds / 3;
  for (let burst = 0; burst < 3; burst++) {
    const mix = () => {
      const draw = Math.random();
      return draw < 0.2
        ? send(clients.interactive, 'interactive', 'priority')
        : draw < 0.6
          ? send(clients.big, 'big', 'default')
          : send(clients.small, 'small', 'flex');
    };
    overload.push(...(await openLoop(rate, burstSeconds * (2 / 3), mix)));
    // A valley: a fifth of capacity, where batch lines should run.
    overload.push(...(await openLoop(0.2 * capacityPerSecond, burstSeconds / 3, mix)));
  }
  let finished = await clients.batcher.batches.retrieve(batch.id);
  const batchDeadlineMs = performance.now() + 120_000;
  while (
    !['completed', 'failed', 'cancelled', 'expired'].includes(finished.status) &&
    performance.now() < batchDeadlineMs
  ) {
    await sleep(250);
    finished = await clients.batcher.batches.retrieve(batch.id);
  }
  const batchReport = {
    status: finished.status,
    completed: finished.request_counts?.completed ?? 0,
    failed: finished.request_counts?.failed ?? 0,
    seconds: finished.completed_at ? (performance.now() - batchStartMs) / 1000 : null,
  };

  // 4. Fairness: both tenants backlogged on the default tier, one with ten times the other's requests.
  const fairnessStartEpochMs = Date.now();
  await Promise.all([
    closedLoop(200, fairnessSeconds, () => send(clients.big, 'big', 'default')),
    closedLoop(20, fairnessSeconds, () => send(clients.small, 'small', 'default')),
  ]);
  const fairness = fairnessFromLedger(
    path.join(dataDir, 'ledger.sqlite'),
    fairnessStartEpochMs,
    fairnessStartEpochMs + fairnessSeconds * 1000,
  );

  await children.stop(server, 15_000);
  return { capacityPerSecond, unloadedPriorityP90, overload, batch: batchReport, fairness };
}

/**
 * Service per tenant in the fairness window, from the ledger: weighted tokens (prompt × 1 + completion
 * × 2, VTC's weights) of default-tier requests that completed inside the window — while both tenants
 * were backlogged — and the largest gap between their cumulative service, in order of completion.
 */
function fairnessFromLedger(ledgerPath: string, sinceEpochMs: number, untilEpochMs: number) {
  const database = new Database(ledgerPath, { readonly: true });
  const rows = database
    .prepare(
      `SELECT tenant, prompt_tokens, completion_tokens FROM usage_records
       WHERE received_at_ms >= ? AND finished_at_ms <= ? AND tier = 'default' AND status = 200
         AND tenant IN ('big', 'small')
       ORDER BY finished_at_ms`,
    )
    .all(sinceEpochMs, untilEpochMs) as Array<{
    tenant: string;
    prompt_tokens: number;
    completion_tokens: number;
  }>;
  database.close();
  let big = 0;
  let small = 0;
  let maxGap = 0;
  let maxRequestCost = 0;
  for (const row of rows) {
    const cost = row.prompt_tokens + 2 * row.completion_tokens;
    maxRequestCost = Math.max(maxRequestCost, cost);
    if (row.tenant === 'big') big += cost;
    else small += cost;
    maxGap = Math.max(maxGap, Math.abs(big - small));
  }
  return { big, small, maxGap, maxRequestCost };
}

function tierSummary(outcomes: Outcome[], tier: string) {
  const mine = outcomes.filter((outcome) => outcome.tier === tier);
  const ok = mine.filter((outcome) => outcome.status === 200);
  const ttfts = ok.flatMap((outcome) => (outcome.ttftMs === null ? [] : [outcome.ttftMs]));
  return {
    sent: mine.length,
    ok: ok.length,
    shed: mine.filter((outcome) => outcome.status === 429).length,
    overloaded: mine.filter((outcome) => outcome.status === 503).length,
    p50: percentileOf(ttfts, 50),
    p90: percentileOf(ttfts, 90),
  };
}

const format = (value: number | null, digits = 0) => (value === null ? '–' : value.toFixed(digits));

async function main(): Promise<void> {
  const machine = describeMachine();
  process.stdout.write(
    `# bench/tiers — ${new Date().toISOString()}\n` +
      `command: npx tsx bench/tiers/tier-benchmark.ts --factor ${factor} --overload-seconds ${overloadSeconds} --fairness-seconds ${fairnessSeconds} --batch-lines ${batchLines}\n` +
      `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform}, Node ${process.version}\n` +
      'replica: emulated A100 80GB, Llama-3.1-8B, 16 sequences at once; ~200-token prompts, 64-token answers, streamed\n\n',
  );
  const children = new ChildProcessGroup();
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-bench-tiers-'));
  const reports = {} as Record<Variant, VariantReport>;
  try {
    for (const variant of ['fcfs', 'slo'] as const) {
      process.stderr.write(`running ${variant}…\n`);
      reports[variant] = await runVariant(variant, children, workDir);
    }
  } finally {
    await children.stopAll(15_000);
    await rm(workDir, { recursive: true, force: true });
  }

  const rows: string[][] = [];
  for (const variant of ['fcfs', 'slo'] as const) {
    const report = reports[variant];
    for (const tier of ['priority', 'default', 'flex']) {
      const summary = tierSummary(report.overload, tier);
      rows.push([
        variant,
        tier,
        String(summary.sent),
        String(summary.ok),
        `${format((100 * summary.shed) / Math.max(1, summary.sent), 1)}%`,
        `${format((100 * summary.overloaded) / Math.max(1, summary.sent), 1)}%`,
        format(summary.p50),
        format(summary.p90),
        tier === 'priority' ? format(report.unloadedPriorityP90) : '',
        tier === 'priority' && summary.p90 !== null && report.unloadedPriorityP90
          ? `${(summary.p90 / report.unloadedPriorityP90).toFixed(2)}×`
          : '',
      ]);
    }
  }
  process.stdout.write(
    `Overload at ${factor}× measured capacity (fcfs ${reports.fcfs.capacityPerSecond.toFixed(1)} req/s, slo ${reports.slo.capacityPerSecond.toFixed(1)} req/s), TTFT in ms at the client:\n`,
  );
  process.stdout.write(
    `${formatTable(['scheduler', 'tier', 'sent', 'ok', 'shed 429', 'overloaded 503', 'TTFT p50', 'TTFT p90', 'unloaded p90', 'p90 / unloaded'], rows)}\n\n`,
  );
  process.stdout.write(
    `${formatTable(
      [
        'scheduler',
        'batch status',
        'lines completed',
        'lines failed',
        'finished after s',
        `priority TTFT p90 vs target ${priorityTtftTargetMs} ms`,
      ],
      (['fcfs', 'slo'] as const).map((variant) => {
        const report = reports[variant];
        const p90 = tierSummary(report.overload, 'priority').p90;
        return [
          variant,
          report.batch.status,
          String(report.batch.completed),
          String(report.batch.failed),
          format(report.batch.seconds, 1),
          p90 === null ? '–' : `${p90.toFixed(0)} ms (${p90 <= priorityTtftTargetMs ? 'within' : 'over'})`,
        ];
      }),
    )}\n\n`,
  );
  process.stdout.write(
    `${formatTable(
      [
        'scheduler',
        'big tenant (200 users) weighted tokens',
        'small tenant (20 users)',
        'small / big',
        'max service gap',
        'VTC bound (2 × max request cost)',
      ],
      (['fcfs', 'slo'] as const).map((variant) => {
        const fairness = reports[variant].fairness;
        return [
          variant,
          String(fairness.big),
          String(fairness.small),
          (fairness.small / Math.max(1, fairness.big)).toFixed(2),
          String(fairness.maxGap),
          String(2 * fairness.maxRequestCost),
        ];
      }),
    )}\n`,
  );
  process.stdout.write(
    '\nVTC bounds the gap in service counted at dispatch; the ledger counts at completion, so up to one\n' +
      "slot's worth of requests per tenant (16 × max cost) can sit between the two counts.\n",
  );
}

await main();
