// Routing policies side by side, live and simulated: round-robin, least-loaded, prefix-only and
// prefix + load on a fleet of four emulated H100s serving Llama 3.1 8B, with llm-d's workload shape scaled
// down (tenant groups sharing system prompts of thousands of tokens, short questions), then a workload
// with no shared prefixes where prefix + load must stay within ±5% of least-loaded.
// Run with `npm run bench:routing -- --help`.

import { loadConfig } from '../../src/config/load-config.js';
import { quantileOf } from '../../src/core/quantile.js';
import { SeededRandom } from '../../src/core/seeded-random.js';
import { startGravityServer } from '../../src/server/gravity-server.js';
import { parseScenario } from '../../src/simulator/load-scenario.js';
import { runScenario } from '../../src/simulator/run-scenario.js';
import { alternatingRounds } from '../support/ab-rounds.js';
import { chatBody, LoadClient } from '../support/load-client.js';
import {
  columnsTable,
  fixed,
  flag,
  integer,
  number,
  printPreamble,
  readOptions,
} from '../support/report-format.js';

const options = readOptions(
  'bench:routing',
  'Routing policies on four emulated H100s, simulated and live (one Gravity in this process).',
  {
    rate: number(23, 'Poisson arrivals per second'),
    liveSeconds: number(30, 'seconds of arrivals in each live run', { quick: 4 }),
    simSeconds: number(120, 'seconds of arrivals in each simulated run', { quick: 15 }),
    groups: integer(150, 'tenant groups, each with its own system prompt', { quick: 20 }),
    prefixTokens: integer(6000, 'tokens in each system prompt', { quick: 2000 }),
    ttftSloMs: number(200, 'goodput counts requests with TTFT at most this'),
    tpotSloMs: number(50, '… and time per output token at most this'),
    simOnly: flag('skip the live runs'),
  },
);
const { rate, liveSeconds, simSeconds, groups, prefixTokens, simOnly } = options;
const slo = { ttftMs: options.ttftSloMs, tpotMs: options.tpotSloMs };
const policies = ['round-robin', 'least-loaded', 'prefix-only', 'prefix-load'];
const replicas = 4;
const questionTokens = 60;
const outputTokens = 100;
/** The no-shared-prefix workload: unique prompts of this many tokens. */
const uniquePromptTokens = 1500;

interface Row {
  policy: string;
  requests: number;
  throughputRps: number;
  outputTokPerS: number;
  ttftP50Ms: number | null;
  ttftP90Ms: number | null;
  prefixHit: number;
  goodputRps: number;
  note?: string;
}

// ---------------------------------------------------------------- simulated

function simulate(policy: string, shared: boolean): Row {
  const scenario = parseScenario(
    {
      name: shared ? 'shared-prefix' : 'no-shared-prefix',
      seed: 7,
      fleet: { hardware: 'h100-sxm', replicas, model: 'llama-3.1-8b' },
      routing: { policy },
      workload: {
        arrivals: { process: 'poisson', ratePerSecond: rate },
        durationSeconds: simSeconds,
        mix: [
          shared
            ? {
                name: 'tenant-groups',
                input: { fixed: questionTokens },
                output: { fixed: outputTokens },
                sharedPrefix: { groups, tokens: prefixTokens },
              }
            : { name: 'unique', input: { fixed: uniquePromptTokens }, output: { fixed: outputTokens } },
        ],
      },
      slo: { default: slo },
    },
    'bench',
  );
  try {
    const result = runScenario(scenario);
    return {
      policy,
      requests: result.overall.completed,
      throughputRps: result.overall.requestsPerSecond,
      outputTokPerS: result.overall.outputTokensPerSecond,
      ttftP50Ms: result.overall.ttft.p50Ms,
      ttftP90Ms: result.overall.ttft.p90Ms,
      prefixHit: result.fleet.prefixHitRate,
      goodputRps: result.overall.goodputRequestsPerSecond,
    };
  } catch (error) {
    const nothing = { requests: 0, throughputRps: 0, outputTokPerS: 0, prefixHit: 0, goodputRps: 0 };
    return {
      policy,
      ...nothing,
      ttftP50Ms: null,
      ttftP90Ms: null,
      note: `simulation failed: ${(error as Error).message}`,
    };
  }
}

// ---------------------------------------------------------------- live

/** ~4 characters per token, as the emulated engine counts; distinct words so prompts differ early. */
function text(random: SeededRandom, tokens: number, tag: string): string {
  const words: string[] = [tag];
  let characters = tag.length;
  while (characters < tokens * 4) {
    const word = Math.floor(random.uniform() * 1e9).toString(36);
    words.push(word);
    characters += word.length + 1;
  }
  return words.join(' ').slice(0, tokens * 4);
}

interface LiveRequest {
  atMs: number;
  system: string | null;
  question: string;
}

function liveWorkload(shared: boolean): LiveRequest[] {
  const random = new SeededRandom(11);
  const systems = shared
    ? Array.from({ length: groups }, (_, group) => text(random, prefixTokens, `tenant-${group}`))
    : [];
  const requests: LiveRequest[] = [];
  for (
    let atMs = random.exponential(1000 / rate);
    atMs < liveSeconds * 1000;
    atMs += random.exponential(1000 / rate)
  ) {
    requests.push(
      shared
        ? {
            atMs,
            system: systems[Math.floor(random.uniform() * groups)] as string,
            question: text(random, questionTokens, `q${requests.length}`),
          }
        : { atMs, system: null, question: text(random, uniquePromptTokens, `u${requests.length}`) },
    );
  }
  return requests;
}

async function live(client: LoadClient, policy: string, workload: readonly LiveRequest[]): Promise<Row> {
  const engine = { type: 'emulated', hardware: 'h100-sxm', model: 'llama-3.1-8b', contextTokens: 16_384 };
  const config = loadConfig(
    {
      document: {
        metering: { enabled: false },
        engines: Object.fromEntries(
          Array.from({ length: replicas }, (_, index) => [`h100-${index}`, engine]),
        ),
        models: {
          'llama-3.1-8b': { engines: Array.from({ length: replicas }, (_, index) => `h100-${index}`) },
        },
        routing: { policy },
        scheduling: { enabled: false },
      },
      port: 0,
      host: '127.0.0.1',
      logLevel: 'silent',
      dataDir: '.gravity',
    },
    {},
  );
  const server = await startGravityServer(config);
  const port = Number(new URL(server.url).port);
  const chat = (system: string | null, prompt: string, maxTokens: number, stream: boolean) => ({
    port,
    path: '/v1/chat/completions',
    body: chatBody({ model: 'llama-3.1-8b', ...(system ? { system } : {}), prompt, maxTokens, stream }),
  });
  // Warm-up, as the simulation's long run has: each distinct system prompt once, routed by the policy
  // under test, eight at a time. Cache counters are read before and after the measured run.
  const systems = [...new Set(workload.flatMap((item) => (item.system ? [item.system] : [])))];
  if (systems.length > 0)
    await client.run({
      requests: systems.map((system) => chat(system, 'warm-up', 1, false)),
      concurrency: 8,
      maxRequests: systems.length,
      detail: 'light',
    });
  const prefixCacheTokens = () => {
    const total = { queried: 0, hits: 0 };
    for (const engineAdapter of server.gateway.engines) {
      const counters = engineAdapter.extensions?.counters?.();
      total.queried += counters?.prefixCacheQueriedTokens ?? 0;
      total.hits += counters?.prefixCacheHitTokens ?? 0;
    }
    return total;
  };
  const before = prefixCacheTokens();
  const startMs = performance.now();
  // The client runs on a worker thread: the in-process server keeps this thread's event loop to itself.
  const run = await client.run({
    requests: workload.map((item) => chat(item.system, item.question, outputTokens, true)),
    arrivalsMs: workload.map((item) => item.atMs),
    detail: 'timing',
  });
  const outcomes = run.outcomes.map((outcome) =>
    outcome.error === null && outcome.ttftMs !== null
      ? { ttftMs: outcome.ttftMs, e2eMs: outcome.e2eMs }
      : null,
  );
  const durationS = (performance.now() - startMs) / 1000;
  const after = prefixCacheTokens();
  const [queried, hits] = [after.queried - before.queried, after.hits - before.hits];
  await server.close();
  const done = outcomes.filter((outcome) => outcome !== null);
  const ttfts = done.map((outcome) => outcome.ttftMs);
  const good = done.filter(
    (outcome) =>
      outcome.ttftMs <= slo.ttftMs && (outcome.e2eMs - outcome.ttftMs) / (outputTokens - 1) <= slo.tpotMs,
  ).length;
  return {
    policy,
    requests: done.length,
    throughputRps: done.length / durationS,
    outputTokPerS: (done.length * outputTokens) / durationS,
    ttftP50Ms: quantileOf(ttfts, 0.5),
    ttftP90Ms: quantileOf(ttfts, 0.9),
    prefixHit: queried > 0 ? hits / queried : 0,
    goodputRps: good / durationS,
    ...(done.length < workload.length && { note: `${workload.length - done.length} failed` }),
  };
}

// ---------------------------------------------------------------- report

function table(rows: Row[]): string {
  return columnsTable(rows, [
    ['policy', (row) => row.policy],
    ['requests', (row) => String(row.requests)],
    ['req/s', (row) => fixed(row.throughputRps, 1)],
    ['out tok/s', (row) => fixed(row.outputTokPerS)],
    ['TTFT p50 ms', (row) => fixed(row.ttftP50Ms)],
    ['TTFT p90 ms', (row) => fixed(row.ttftP90Ms)],
    ['prefix hit %', (row) => fixed(row.prefixHit * 100, 1)],
    ['goodput req/s', (row) => fixed(row.goodputRps, 1)],
    ['note', (row) => row.note ?? ''],
  ]);
}
function ratios(rows: Row[], label: string): string {
  const of = (policy: string) => rows.find((row) => row.policy === policy);
  const best = of('prefix-load');
  const lines: string[] = [];
  const roundRobin = of('round-robin');
  const leastLoaded = of('least-loaded');
  if (best && roundRobin && roundRobin.goodputRps > 0)
    lines.push(
      `${label}: prefix-load goodput / round-robin = ${(best.goodputRps / roundRobin.goodputRps).toFixed(2)}× (target ≥ 2×)`,
    );
  if (best?.ttftP90Ms && roundRobin?.ttftP90Ms)
    lines.push(
      `${label}: round-robin p90 TTFT / prefix-load = ${(roundRobin.ttftP90Ms / best.ttftP90Ms).toFixed(1)}× (target ≥ 5×)`,
    );
  if (
    best &&
    leastLoaded &&
    leastLoaded.throughputRps > 0 &&
    !rows.some((row) => row.policy === 'round-robin')
  )
    lines.push(
      `${label}: prefix-load / least-loaded: throughput ${((best.throughputRps / leastLoaded.throughputRps - 1) * 100).toFixed(1)}%, ` +
        `goodput ${leastLoaded.goodputRps > 0 ? ((best.goodputRps / leastLoaded.goodputRps - 1) * 100).toFixed(1) : '–'}% (target within ±5%)`,
    );
  return lines.join('\n');
}

printPreamble('Routing policies, live and simulated', 'bench:routing', [
  `fleet:    ${replicas}x emulated h100-sxm, llama-3.1-8b; workload: Poisson ${rate} req/s, ${groups} groups x ` +
    `${prefixTokens}-token system prompts, ${questionTokens}-token questions, ${outputTokens} output tokens; ` +
    `SLO TTFT <= ${slo.ttftMs} ms and TPOT <= ${slo.tpotMs} ms`,
  'live:     one Gravity in this process; the same seeded arrivals for every policy, one policy after another, ' +
    'sent by bench/support/load-client.ts on a worker thread',
]);
const simShared = policies.map((policy) => simulate(policy, true));
console.log(
  `Simulated, shared prefixes (${simSeconds} s of arrivals):\n${table(simShared)}\n${ratios(simShared, 'simulated')}\n`,
);
const simUnique = ['least-loaded', 'prefix-load'].map((policy) => simulate(policy, false));
console.log(
  `Simulated, no shared prefixes (${uniquePromptTokens}-token unique prompts):\n${table(simUnique)}\n${ratios(simUnique, 'simulated, no shared prefix')}\n`,
);

if (!simOnly) {
  const client = new LoadClient();
  const liveRows = async (workload: LiveRequest[], names: string[]) => {
    const results = await alternatingRounds({
      variants: names.map((name) => ({ name })),
      rounds: 1,
      measure: ({ name }) => live(client, name, workload),
    });
    return names.map((name) => results.get(name)![0] as Row);
  };
  const sharedWorkload = liveWorkload(true);
  const liveShared = await liveRows(sharedWorkload, policies);
  console.log(
    `Live, shared prefixes (${liveSeconds} s of arrivals, ${sharedWorkload.length} requests):\n${table(liveShared)}\n${ratios(liveShared, 'live')}\n`,
  );
  const liveUnique = await liveRows(liveWorkload(false), ['least-loaded', 'prefix-load']);
  console.log(
    `Live, no shared prefixes:\n${table(liveUnique)}\n${ratios(liveUnique, 'live, no shared prefix')}`,
  );
  await client.close();
}
