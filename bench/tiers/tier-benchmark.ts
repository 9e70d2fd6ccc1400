// Tiers under overload: the gateway's SLO scheduler (tier bands, VTC fairness, flex shedding, batch in
// spare capacity) against a first-come-first-served baseline, on the same emulated replica, in one run.
//
// Each scheduler runs in its own `gravity serve` child: one emulated A100 serving Llama-3.1-8B (16
// sequences at once), with API keys for four tenants. Each phase runs on one scheduler, then the other:
//   1. capacity: closed loop, 48 users, to measure what the replica completes per second;
//   2. unloaded: priority requests alone at a light rate: the reference TTFT;
//   3. overload: Poisson arrivals at --factor × capacity (priority 20%, default 40%, flex 40%) in bursts
//      with short valleys, and a batch job submitted at the start that should run in the valleys;
//   4. fairness: two tenants on the default tier, both backlogged (more requests than the replica's 16
//      slots), one with ten times the other's concurrent requests.
// Run with `npm run bench:tiers -- --help`.

import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import OpenAI, { toFile } from 'openai';
import { quantileOf } from '../../src/core/quantile.js';
import { SeededRandom } from '../../src/core/seeded-random.js';
import { alternatingRounds, repoRoot } from '../support/ab-rounds.js';
import { ChildProcessGroup, type ManagedChild, startGravity } from '../support/child-processes.js';
import {
  chatBody,
  LoadClient,
  type LoadRequest,
  poissonArrivalsMs,
  type RequestOutcome,
} from '../support/load-client.js';
import {
  columnsTable,
  fixed,
  integer,
  number,
  printPreamble,
  readOptions,
} from '../support/report-format.js';

const modelId = 'llama-3.1-8b';
const promptText = 'Summarise the following notes for the weekly report. '.repeat(16); // ≈ 200 tokens
const maxTokens = 64;
const priorityTtftTargetMs = 300;
const tenants = ['interactive', 'big', 'small', 'batcher'] as const;
type Tenant = (typeof tenants)[number];

const { factor, capacitySeconds, unloadedSeconds, overloadSeconds, fairnessSeconds, batchLines } =
  readOptions('bench:tiers', 'The SLO scheduler against FCFS on one emulated replica under overload.', {
    factor: number(1.5, 'overload arrival rate, as a multiple of the measured capacity'),
    capacitySeconds: number(10, 'length of the capacity phase', { quick: 3 }),
    unloadedSeconds: number(8, 'length of the unloaded priority phase', { quick: 3 }),
    overloadSeconds: number(36, 'length of the overload phase (three bursts)', { quick: 6 }),
    fairnessSeconds: number(20, 'length of the fairness phase', { quick: 4 }),
    batchLines: integer(60, 'lines in the batch job submitted at the start of the overload', { quick: 6 }),
  });

interface Scheduler {
  name: 'fcfs' | 'slo';
  child: ManagedChild;
  port: number;
  dataDir: string;
  keys: Record<Tenant, string>;
  openai: OpenAI;
  capacityPerSecond: number;
  unloadedPriorityP90: number | null;
  overload: RequestOutcome[];
  batch: { status: string; completed: number; failed: number; seconds: number | null };
  fairness: { big: number; small: number; maxGap: number; maxRequestCost: number };
}

function configYaml(name: Scheduler['name']): string {
  const scheduling =
    name === 'slo'
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

async function startScheduler(
  name: Scheduler['name'],
  children: ChildProcessGroup,
  workDir: string,
): Promise<Scheduler> {
  const dataDir = path.join(workDir, `data-${name}`);
  const configPath = path.join(workDir, `gravity-${name}.yaml`);
  await writeFile(configPath, configYaml(name));
  const cli = ['--import', 'tsx', 'src/cli/main.ts'];
  const keys = {} as Record<Tenant, string>;
  const tierAccess = ['--tiers', 'priority,default,flex,batch', '--default-tier', 'default'];
  for (const tenant of tenants)
    keys[tenant] = execFileSync(
      process.execPath,
      [...cli, 'keys', 'create', '--data-dir', dataDir, '--tenant', tenant, ...tierAccess],
      { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    ).trim();
  const { child, port, url } = await startGravity(children, {
    name: `gravity (${name})`,
    configPath,
    dataDir,
  });
  return {
    name,
    child,
    port,
    dataDir,
    keys,
    openai: new OpenAI({ baseURL: `${url}/v1`, apiKey: keys.batcher, maxRetries: 0, timeout: 120_000 }),
    capacityPerSecond: 0,
    unloadedPriorityP90: null,
    overload: [],
    batch: { status: 'not run', completed: 0, failed: 0, seconds: null },
    fairness: { big: 0, small: 0, maxGap: 0, maxRequestCost: 0 },
  };
}

/** A streamed chat completion from `tenant` on `tier`, tagged `tier`. */
function request(scheduler: Scheduler, tenant: Tenant, tier: string): LoadRequest {
  return {
    port: scheduler.port,
    path: '/v1/chat/completions',
    headers: { authorization: `Bearer ${scheduler.keys[tenant]}` },
    body: chatBody({
      model: modelId,
      prompt: promptText,
      maxTokens,
      stream: true,
      extra: { service_tier: tier },
    }),
    tag: tier,
  };
}

const ok = (outcomes: RequestOutcome[]) => outcomes.filter((outcome) => outcome.error === null);
const ttftsOf = (outcomes: RequestOutcome[]) =>
  ok(outcomes).flatMap((outcome) => (outcome.ttftMs === null ? [] : [outcome.ttftMs]));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function overload(scheduler: Scheduler, client: LoadClient, random: SeededRandom): Promise<void> {
  const lines = Array.from({ length: batchLines }, (_, index) =>
    JSON.stringify({
      custom_id: `line-${index}`,
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: modelId, messages: [{ role: 'user', content: promptText }], max_tokens: maxTokens },
    }),
  ).join('\n');
  const batchStartMs = performance.now();
  const file = await scheduler.openai.files.create({
    file: await toFile(Buffer.from(lines), 'lines.jsonl'),
    purpose: 'batch',
  });
  const batch = await scheduler.openai.batches.create({
    input_file_id: file.id,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
  });
  // Three bursts at `factor` × capacity, each followed by a valley at a fifth of capacity.
  const burstSeconds = overloadSeconds / 3;
  const arrivalsMs: number[] = [];
  for (let burst = 0; burst < 3; burst++) {
    const startMs = burst * burstSeconds * 1000;
    const peak = poissonArrivalsMs(factor * scheduler.capacityPerSecond, (burstSeconds * 2) / 3, random);
    const valley = poissonArrivalsMs(0.2 * scheduler.capacityPerSecond, burstSeconds / 3, random);
    arrivalsMs.push(
      ...peak.map((at) => startMs + at),
      ...valley.map((at) => startMs + (burstSeconds * 2000) / 3 + at),
    );
  }
  const requests = arrivalsMs.map(() => {
    const draw = random.uniform();
    return draw < 0.2
      ? request(scheduler, 'interactive', 'priority')
      : draw < 0.6
        ? request(scheduler, 'big', 'default')
        : request(scheduler, 'small', 'flex');
  });
  scheduler.overload = (await client.run({ requests, arrivalsMs, detail: 'timing' })).outcomes;
  let finished = await scheduler.openai.batches.retrieve(batch.id);
  const deadlineMs = performance.now() + 120_000;
  while (
    !['completed', 'failed', 'cancelled', 'expired'].includes(finished.status) &&
    performance.now() < deadlineMs
  ) {
    await sleep(250);
    finished = await scheduler.openai.batches.retrieve(batch.id);
  }
  scheduler.batch = {
    status: finished.status,
    completed: finished.request_counts?.completed ?? 0,
    failed: finished.request_counts?.failed ?? 0,
    seconds: finished.completed_at ? (performance.now() - batchStartMs) / 1000 : null,
  };
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
  const service = { big: 0, small: 0, maxGap: 0, maxRequestCost: 0 };
  for (const row of rows) {
    const cost = row.prompt_tokens + 2 * row.completion_tokens;
    service.maxRequestCost = Math.max(service.maxRequestCost, cost);
    service[row.tenant === 'big' ? 'big' : 'small'] += cost;
    service.maxGap = Math.max(service.maxGap, Math.abs(service.big - service.small));
  }
  return service;
}

async function main(): Promise<void> {
  printPreamble('Tiers under overload: SLO scheduler against FCFS', 'bench:tiers', [
    'replica:  emulated A100 80GB, Llama-3.1-8B, 16 sequences at once; ~200-token prompts, 64-token answers, streamed',
    `phases:   capacity ${capacitySeconds} s (48 users), unloaded priority ${unloadedSeconds} s (2 req/s), overload ` +
      `${overloadSeconds} s at ${factor}x capacity in 3 bursts with ${batchLines} batch lines, fairness ${fairnessSeconds} s; ` +
      'each phase on fcfs and slo in turn; client bench/support/load-client.ts on worker threads',
  ]);
  const children = new ChildProcessGroup();
  const clients = [new LoadClient(), new LoadClient()] as const;
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-bench-tiers-'));
  const random = new SeededRandom(42);
  let schedulers: Scheduler[] = [];
  try {
    schedulers = await Promise.all(
      (['fcfs', 'slo'] as const).map((name) => startScheduler(name, children, workDir)),
    );
    const phase = (name: string, run: (scheduler: Scheduler) => Promise<void>) =>
      alternatingRounds<Scheduler, void>({
        variants: schedulers,
        rounds: 1,
        measure: (scheduler) => {
          console.error(`${name}: ${scheduler.name}`);
          return run(scheduler);
        },
      });
    await phase('capacity', async (scheduler) => {
      const run = await clients[0].run({
        requests: [request(scheduler, 'big', 'default')],
        concurrency: 48,
        seconds: capacitySeconds,
        detail: 'light',
      });
      scheduler.capacityPerSecond = ok(run.outcomes).length / capacitySeconds;
      await sleep(500);
    });
    await phase('unloaded', async (scheduler) => {
      const arrivalsMs = poissonArrivalsMs(2, unloadedSeconds, random);
      const run = await clients[0].run({
        requests: [request(scheduler, 'interactive', 'priority')],
        arrivalsMs,
        detail: 'timing',
      });
      scheduler.unloadedPriorityP90 = quantileOf(ttftsOf(run.outcomes), 0.9);
    });
    await phase('overload', (scheduler) => overload(scheduler, clients[0], random));
    await phase('fairness', async (scheduler) => {
      const startEpochMs = Date.now();
      // Two clients at once: the big tenant's 200 users and the small tenant's 20.
      const users = (client: LoadClient, tenant: Tenant, concurrency: number) =>
        client.run({
          requests: [request(scheduler, tenant, 'default')],
          concurrency,
          seconds: fairnessSeconds,
          detail: 'light',
        });
      await Promise.all([users(clients[0], 'big', 200), users(clients[1], 'small', 20)]);
      // Stopped first, so the ledger holds every record of the window.
      await children.stop(scheduler.child, 15_000);
      scheduler.fairness = fairnessFromLedger(
        path.join(scheduler.dataDir, 'ledger.sqlite'),
        startEpochMs,
        startEpochMs + fairnessSeconds * 1000,
      );
    });
  } finally {
    await Promise.all(clients.map((client) => client.close()));
    await children.stopAll(15_000);
    children.dispose();
    await rm(workDir, { recursive: true, force: true });
  }
  report(schedulers);
}

function report(schedulers: Scheduler[]): void {
  const percent = (part: number, whole: number) => `${fixed((100 * part) / Math.max(1, whole), 1)}%`;
  const priorityP90 = (scheduler: Scheduler) =>
    quantileOf(ttftsOf(scheduler.overload.filter((outcome) => outcome.tag === 'priority')), 0.9);
  const tierRows = schedulers.flatMap((scheduler) =>
    ['priority', 'default', 'flex'].map((tier) => {
      const sent = scheduler.overload.filter((outcome) => outcome.tag === tier);
      const unloaded = tier === 'priority' ? scheduler.unloadedPriorityP90 : null;
      return { scheduler, tier, sent, p90: quantileOf(ttftsOf(sent), 0.9), unloaded };
    }),
  );
  const shed = (sent: RequestOutcome[], status: number) =>
    percent(sent.filter((outcome) => outcome.status === status).length, sent.length);
  const capacities = schedulers.map(
    (scheduler) => `${scheduler.name} ${scheduler.capacityPerSecond.toFixed(1)} req/s`,
  );
  console.log(
    `Overload at ${factor}x measured capacity (${capacities.join(', ')}), TTFT in ms at the client:`,
  );
  console.log(
    columnsTable(tierRows, [
      ['scheduler', (row) => row.scheduler.name],
      ['tier', (row) => row.tier],
      ['sent', (row) => String(row.sent.length)],
      ['ok', (row) => String(ok(row.sent).length)],
      ['shed 429', (row) => shed(row.sent, 429)],
      ['overloaded 503', (row) => shed(row.sent, 503)],
      ['TTFT p50', (row) => fixed(quantileOf(ttftsOf(row.sent), 0.5))],
      ['TTFT p90', (row) => fixed(row.p90)],
      ['unloaded p90', (row) => (row.tier === 'priority' ? fixed(row.unloaded) : '')],
      [
        'p90 / unloaded',
        (row) => (row.p90 !== null && row.unloaded ? `${(row.p90 / row.unloaded).toFixed(2)}x` : ''),
      ],
    ]),
  );
  console.log(
    `\n${columnsTable(schedulers, [
      ['scheduler', (scheduler) => scheduler.name],
      ['batch status', (scheduler) => scheduler.batch.status],
      ['lines completed', (scheduler) => String(scheduler.batch.completed)],
      ['lines failed', (scheduler) => String(scheduler.batch.failed)],
      ['finished after s', (scheduler) => fixed(scheduler.batch.seconds, 1)],
      [
        `priority TTFT p90 vs ${priorityTtftTargetMs} ms`,
        (scheduler) => {
          const p90 = priorityP90(scheduler);
          return p90 === null
            ? '–'
            : `${p90.toFixed(0)} ms (${p90 <= priorityTtftTargetMs ? 'within' : 'over'})`;
        },
      ],
    ])}\n`,
  );
  console.log(
    columnsTable(schedulers, [
      ['scheduler', ({ name }) => name],
      ['big tenant (200 users) weighted tokens', ({ fairness }) => String(fairness.big)],
      ['small tenant (20 users)', ({ fairness }) => String(fairness.small)],
      ['small / big', ({ fairness }) => (fairness.small / Math.max(1, fairness.big)).toFixed(2)],
      ['max service gap', ({ fairness }) => String(fairness.maxGap)],
      ['VTC bound (2 × max request cost)', ({ fairness }) => String(2 * fairness.maxRequestCost)],
    ]),
  );
  console.log(
    "\nVTC bounds the gap in service counted at dispatch; the ledger counts at completion, so up to one\nslot's worth of requests per tenant (16 × max cost) can sit between the two counts.",
  );
}

await main();
