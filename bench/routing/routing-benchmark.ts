// Routing policies side by side, live and simulated: round-robin, least-loaded, prefix-only and
// prefix + load on a fleet of four emulated H100s serving Llama 3.1 8B, with llm-d's workload shape scaled
// down (tenant groups sharing system prompts of thousands of tokens, short questions), then a workload
// with no shared prefixes where prefix + load must stay within ±5% of least-loaded.
// Run with `npm run bench:routing -- --help`.

import { parseArgs } from 'node:util';
import { request as httpRequest } from 'undici';
import { loadConfig } from '../../src/config/load-config.js';
import { SeededRandom } from '../../src/core/seeded-random.js';
import { startGravityServer } from '../../src/server/gravity-server.js';
import { parseScenario } from '../../src/simulator/load-scenario.js';
import { runScenario } from '../../src/simulator/run-scenario.js';
import { describeMachine, formatTable, positiveNumber } from '../support/report-format.js';

const { values: flags } = parseArgs({
  options: {
    rate: { type: 'string', default: '23' },
    'live-seconds': { type: 'string', default: '30' },
    'sim-seconds': { type: 'string', default: '120' },
    groups: { type: 'string', default: '150' },
    'prefix-tokens': { type: 'string', default: '6000' },
    'ttft-slo-ms': { type: 'string', default: '200' },
    'tpot-slo-ms': { type: 'string', default: '50' },
    'sim-only': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (flags.help) {
  process.stdout.write(
    'npm run bench:routing -- [--rate 23] [--live-seconds 30] [--sim-seconds 120] [--groups 150]\n' +
      '  [--prefix-tokens 6000] [--ttft-slo-ms 200] [--tpot-slo-ms 50] [--sim-only]\n',
  );
  process.exit(0);
}
const rate = positiveNumber('rate', flags.rate, false);
const liveSeconds = positiveNumber('live-seconds', flags['live-seconds'], false);
const simSeconds = positiveNumber('sim-seconds', flags['sim-seconds'], false);
const groups = positiveNumber('groups', flags.groups, true);
const prefixTokens = positiveNumber('prefix-tokens', flags['prefix-tokens'], true);
const slo = {
  ttftMs: positiveNumber('ttft-slo-ms', flags['ttft-slo-ms'], false),
  tpotMs: positiveNumber('tpot-slo-ms', flags['tpot-slo-ms'], false),
};
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
      policies: { routing: policy },
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

function quantile(sorted: number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

async function live(policy: string, workload: readonly LiveRequest[]): Promise<Row> {
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
  const url = `${server.url}/v1/chat/completions`;
  // Warm-up, as the simulation's long run has: each distinct system prompt once, routed by the policy
  // under test, eight at a time. Cache counters are read before and after the measured run.
  const systems = [...new Set(workload.flatMap((item) => (item.system ? [item.system] : [])))];
  for (let index = 0; index < systems.length; index += 8)
    await Promise.all(
      systems.slice(index, index + 8).map(async (system) => {
        const response = await httpRequest(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'llama-3.1-8b',
            messages: [
              { role: 'system', content: system },
              { role: 'user', content: 'warm-up' },
            ],
            max_tokens: 1,
          }),
        });
        await response.body.dump();
      }),
    );
  let queriedBefore = 0;
  let hitsBefore = 0;
  for (const engineAdapter of server.gateway.engines) {
    const counters = engineAdapter.extensions?.counters?.();
    queriedBefore += counters?.prefixCacheQueriedTokens ?? 0;
    hitsBefore += counters?.prefixCacheHitTokens ?? 0;
  }
  const startMs = performance.now();
  const outcomes: Array<{ ttftMs: number; e2eMs: number } | null> = [];
  await Promise.all(
    workload.map(async (item) => {
      const delayMs = item.atMs - (performance.now() - startMs);
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      const sentMs = performance.now();
      try {
        const response = await httpRequest(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'llama-3.1-8b',
            messages: [
              ...(item.system ? [{ role: 'system', content: item.system }] : []),
              { role: 'user', content: item.question },
            ],
            max_tokens: outputTokens,
            stream: true,
          }),
        });
        let ttftMs = -1;
        for await (const chunk of response.body) {
          // The first chunk carrying content is the first token.
          if (ttftMs < 0 && (chunk as Buffer).includes('"content"')) ttftMs = performance.now() - sentMs;
        }
        outcomes.push(
          response.statusCode === 200 && ttftMs >= 0 ? { ttftMs, e2eMs: performance.now() - sentMs } : null,
        );
      } catch {
        outcomes.push(null);
      }
    }),
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
  const ttfts = done.map((outcome) => outcome.ttftMs).sort((a, b) => a - b);
  const good = done.filter(
    (outcome) =>
      outcome.ttftMs <= slo.ttftMs && (outcome.e2eMs - outcome.ttftMs) / (outputTokens - 1) <= slo.tpotMs,
  ).length;
  return {
    policy,
    requests: done.length,
    throughputRps: done.length / durationS,
    outputTokPerS: (done.length * outputTokens) / durationS,
    ttftP50Ms: quantile(ttfts, 0.5),
    ttftP90Ms: quantile(ttfts, 0.9),
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

const machine = describeMachine();
console.log(`command: npm run bench:routing -- ${process.argv.slice(2).join(' ')}`.trimEnd());
console.log(
  `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform}, Node ${process.version}`,
);
console.log(
  `fleet: ${replicas}× emulated h100-sxm, llama-3.1-8b; workload: Poisson ${rate} req/s, ${groups} groups × ${prefixTokens}-token system prompts, ` +
    `${questionTokens}-token questions, ${outputTokens} output tokens; SLO TTFT ≤ ${slo.ttftMs} ms and TPOT ≤ ${slo.tpotMs} ms\n`,
);

const simShared = policies.map((policy) => simulate(policy, true));
console.log(
  `Simulated, shared prefixes (${simSeconds} s of arrivals):\n${table(simShared)}\n${ratios(simShared, 'simulated')}\n`,
);
const simUnique = ['least-loaded', 'prefix-load'].map((policy) => simulate(policy, false));
console.log(
  `Simulated, no shared prefixes (${uniquePromptTokens}-token unique prompts):\n${table(simUnique)}\n${ratios(simUnique, 'simulated, no shared prefix')}\n`,
);

if (!flags['sim-only']) {
  const sharedWorkload = liveWorkload(true);
  const liveShared: Row[] = [];
  for (const policy of policies) liveShared.push(await live(policy, sharedWorkload));
  console.log(
    `Live, shared prefixes (${liveSeconds} s of arrivals, ${sharedWorkload.length} requests):\n${table(liveShared)}\n${ratios(liveShared, 'live')}\n`,
  );
  const uniqueWorkload = liveWorkload(false);
  const liveUnique: Row[] = [];
  for (const policy of ['least-loaded', 'prefix-load']) liveUnique.push(await live(policy, uniqueWorkload));
  console.log(
    `Live, no shared prefixes:\n${table(liveUnique)}\n${ratios(liveUnique, 'live, no shared prefix')}`,
  );
}
