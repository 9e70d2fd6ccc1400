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
import { formatTable, positiveNumber, printPreamble, readOptions } from '../support/report-format.js';

const { rate, liveSeconds, simSeconds, groups, prefixTokens, slo, simOnly } = readOptions(
  'npm run bench:routing -- [--rate 23] [--live-seconds 30] [--sim-seconds 120] [--groups 150]\n' +
    '  [--prefix-tokens 6000] [--ttft-slo-ms 200] [--tpot-slo-ms 50] [--sim-only]\n' +
    '  [--quick: 4 s live, 15 s simulated, 20 groups of 2000 tokens]',
  {
    rate: '23',
    'live-seconds': '30',
    'sim-seconds': '120',
    groups: '150',
    'prefix-tokens': '6000',
    'ttft-slo-ms': '200',
    'tpot-slo-ms': '50',
    'sim-only': false as boolean,
  },
  { 'live-seconds': '4', 'sim-seconds': '15', groups: '20', 'prefix-tokens': '2000' },
  (flags) => ({
    rate: positiveNumber('rate', flags.rate, false),
    liveSeconds: positiveNumber('live-seconds', flags['live-seconds'], false),
    simSeconds: positiveNumber('sim-seconds', flags['sim-seconds'], false),
    groups: positiveNumber('groups', flags.groups, true),
    prefixTokens: positiveNumber('prefix-tokens', flags['prefix-tokens'], true),
    slo: {
      ttftMs: positiveNumber('ttft-slo-ms', flags['ttft-slo-ms'], false),
      tpotMs: positiveNumber('tpot-slo-ms', flags['tpot-slo-ms'], false),
    },
    simOnly: flags['sim-only'] === true,
  }),
);
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
    return {
      policy,
      requests: 0,
      throughputRps: 0,
      outputTokPerS: 0,
      ttftP50Ms: null,
      ttftP90Ms: null,
      prefixHit: 0,
      goodputRps: 0,
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
  let queriedBefore = 0;
  let hitsBefore = 0;
  for (const engineAdapter of server.gateway.engines) {
    const counters = engineAdapter.extensions?.counters?.();
    queriedBefore += counters?.prefixCacheQueriedTokens ?? 0;
    hitsBefore += counters?.prefixCacheHitTokens ?? 0;
  }
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
  let queried = -queriedBefore;
  let hits = -hitsBefore;
  for (const engineAdapter of server.gateway.engines) {
    const counters = engineAdapter.extensions?.counters?.();
    queried += counters?.prefixCacheQueriedTokens ?? 0;
    hits += counters?.prefixCacheHitTokens ?? 0;
  }
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

const number = (value: number | null, digits = 0) => (value === null ? '–' : value.toFixed(digits));
function table(rows: Row[]): string {
  return formatTable(
    [
      'policy',
      'requests',
      'req/s',
      'out tok/s',
      'TTFT p50 ms',
      'TTFT p90 ms',
      'prefix hit %',
      'goodput req/s',
      'note',
    ],
    rows.map((row) => [
      row.policy,
      String(row.requests),
      number(row.throughputRps, 1),
      number(row.outputTokPerS),
      number(row.ttftP50Ms),
      number(row.ttftP90Ms),
      number(row.prefixHit * 100, 1),
      number(row.goodputRps, 1),
      row.note ?? '',
    ]),
  );
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
