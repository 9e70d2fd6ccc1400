// Prefix affinity across gateway replicas, simulated: G `gravity serve` replicas behind a load balancer in
// front of the same engines, on one seeded workload of multi-turn agent sessions sharing system prompts.
// Three ways for the gateways to agree where a prefix is warm: (a) each learns its own prefix index
// (prefix-load, per gateway: what separate processes do today), (b) one index all of them read and write
// (prefix-load, shared: the best a shared store could do, its latency ignored), (c) consistent hashing of
// the prefix to a replica with bounded load (prefix-hash: nothing shared). least-loaded is the baseline
// that ignores prefixes. Run with `npm run bench:prefix-sharing -- --help`.

import { parseScenario } from '../../src/simulator/load-scenario.js';
import { runScenario } from '../../src/simulator/run-scenario.js';
import {
  columnsTable,
  fixed,
  integer,
  integers,
  number,
  printPreamble,
  readOptions,
  text,
} from '../support/report-format.js';

const options = readOptions(
  'bench:prefix-sharing',
  'Prefix affinity with several gateways in front of the same simulated engines: per-gateway, shared, hashed.',
  {
    gateways: integers([1, 3, 8], 'gateway counts to compare'),
    balancer: text('round-robin', 'how the load balancer spreads requests', {
      choices: ['round-robin', 'random'],
    }),
    replicas: integer(8, 'engine replicas (H100, Llama 3.1 8B)'),
    rate: number(40, 'new sessions per second (Poisson); each runs several turns'),
    seconds: number(60, 'seconds of session arrivals', { quick: 10 }),
    groups: integer(48, 'system prompts shared by groups of sessions'),
    prefixTokens: integer(3000, 'tokens in each system prompt'),
    ttftSloMs: number(500, 'goodput counts requests with TTFT at most this'),
    tpotSloMs: number(50, '… and time per output token at most this'),
    seeds: integers([11, 12, 13], 'seeds (workload and routing); figures are means over them', {
      quick: [11],
    }),
    hashLoadFactor: number(1.25, "prefix-hash's loadBound.factor"),
    hashSlackRequests: integer(4, "prefix-hash's loadBound.slackRequests", { min: 0 }),
    hashPrefixBlocks: integer(8, "prefix-hash's prefixBlocks"),
    hashWeight: number(1.5, "prefix-hash's weight beside queue-depth's 1"),
  },
);

interface Variant {
  label: string;
  policy: string;
  routingState: 'per-gateway' | 'shared';
}
const variants: Variant[] = [
  { label: 'least-loaded (no prefix view)', policy: 'least-loaded', routingState: 'per-gateway' },
  { label: '(a) prefix-load, index per gateway', policy: 'prefix-load', routingState: 'per-gateway' },
  { label: '(b) prefix-load, one shared index', policy: 'prefix-load', routingState: 'shared' },
  { label: '(c) prefix-hash, nothing shared', policy: 'prefix-hash', routingState: 'per-gateway' },
];

interface Row {
  gateways: number;
  variant: string;
  completed: number;
  goodputRps: number;
  prefixHit: number;
  ttftP50Ms: number | null;
  ttftP95Ms: number | null;
  refused: number;
}

function simulate(gateways: number, variant: Variant, seed: number): Row {
  const scenario = parseScenario(
    {
      name: 'prefix-sharing',
      seed,
      fleet: { hardware: 'h100-sxm', replicas: options.replicas, model: 'llama-3.1-8b' },
      routing: {
        policy: variant.policy,
        // The built-in prefix-hash profile (its defaults are these options' defaults), tunable from the
        // command line.
        profiles: {
          'prefix-hash': {
            scorers: [
              {
                type: 'prefix-hash',
                weight: options.hashWeight,
                params: {
                  prefixBlocks: options.hashPrefixBlocks,
                  loadBound: { factor: options.hashLoadFactor, slackRequests: options.hashSlackRequests },
                },
              },
              { type: 'queue-depth', weight: 1 },
            ],
          },
        },
      },
      gateways: { count: gateways, balancer: options.balancer, routingState: variant.routingState },
      workload: {
        arrivals: { process: 'poisson', ratePerSecond: options.rate },
        durationSeconds: options.seconds,
        mix: [
          {
            name: 'agent',
            tenant: 'agents',
            sharedPrefix: { groups: options.groups, tokens: options.prefixTokens },
            input: { lognormal: { mean: 150, cv: 0.8 }, min: 8, max: 1000 },
            output: { lognormal: { mean: 200, cv: 0.8 }, min: 8, max: 1000 },
            session: { turns: { uniform: [3, 8] }, thinkSeconds: { exponential: { mean: 2 } } },
          },
        ],
      },
      slo: { default: { ttftMs: options.ttftSloMs, tpotMs: options.tpotSloMs } },
    },
    'bench',
  );
  const result = runScenario(scenario);
  return {
    gateways,
    variant: variant.label,
    completed: result.overall.completed,
    goodputRps: result.overall.goodputRequestsPerSecond,
    prefixHit: result.fleet.prefixHitRate,
    ttftP50Ms: result.overall.ttft.p50Ms,
    ttftP95Ms: result.overall.ttft.p95Ms,
    refused: result.overall.rejected,
  };
}

printPreamble('Prefix affinity across gateways (simulated)', 'bench:prefix-sharing', [
  `fleet:    ${options.replicas}x h100-sxm, llama-3.1-8b, behind ${options.gateways.join(' / ')} gateways ` +
    `(${options.balancer} balancer; each turn of a session is balanced anew)`,
  `workload: Poisson ${options.rate} sessions/s for ${options.seconds} s, 3–8 turns each carrying the ` +
    `conversation, ${options.groups} groups × ${options.prefixTokens}-token system prompts`,
  `seeds:    ${options.seeds.join(', ')}; each figure is the mean over the seeds of one run's figure (quantiles included)`,
  `SLO:      TTFT <= ${options.ttftSloMs} ms and TPOT <= ${options.tpotSloMs} ms (goodput: requests meeting both, per second)`,
]);
/** The mean of each figure over one run per seed. */
function meanOver(runs: Row[]): Row {
  const mean = (figure: (row: Row) => number | null) => {
    const values = runs.map(figure).filter((value): value is number => value !== null);
    return values.length > 0 ? values.reduce((sum, value) => sum + value, 0) / values.length : null;
  };
  const first = runs[0] as Row;
  return {
    gateways: first.gateways,
    variant: first.variant,
    completed: mean((row) => row.completed) ?? 0,
    goodputRps: mean((row) => row.goodputRps) ?? 0,
    prefixHit: mean((row) => row.prefixHit) ?? 0,
    ttftP50Ms: mean((row) => row.ttftP50Ms),
    ttftP95Ms: mean((row) => row.ttftP95Ms),
    refused: mean((row) => row.refused) ?? 0,
  };
}

const runsBySetting = new Map<string, Row[]>();
const key = (gateways: number, variant: Variant) => `${gateways} ${variant.label}`;
for (const gateways of options.gateways)
  for (const variant of variants)
    runsBySetting.set(
      key(gateways, variant),
      options.seeds.map((seed) => simulate(gateways, variant, seed)),
    );
const rows = [...runsBySetting.values()].map(meanOver);
console.log(
  columnsTable(rows, [
    ['gateways', (row) => String(row.gateways)],
    ['prefix view', (row) => row.variant],
    ['completed', (row) => fixed(row.completed)],
    ['goodput req/s', (row) => fixed(row.goodputRps, 2)],
    ['prefix hit %', (row) => fixed(row.prefixHit * 100, 1)],
    ['TTFT p50 ms', (row) => fixed(row.ttftP50Ms)],
    ['TTFT p95 ms', (row) => fixed(row.ttftP95Ms)],
    ['refused', (row) => fixed(row.refused)],
  ]),
);
console.log('');
/** `mean× (min–max over seeds)` of one variant's goodput over another's, seed by seed. */
function goodputRatio(gateways: number, numerator: Variant, denominator: Variant): string {
  const top = runsBySetting.get(key(gateways, numerator)) ?? [];
  const bottom = runsBySetting.get(key(gateways, denominator)) ?? [];
  const ratios = top.flatMap((row, index) => {
    const base = bottom[index]?.goodputRps ?? 0;
    return base > 0 ? [row.goodputRps / base] : [];
  });
  if (ratios.length === 0) return '–';
  const mean = ratios.reduce((sum, value) => sum + value, 0) / ratios.length;
  return `${mean.toFixed(2)}× (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`;
}
const [, perGateway, shared, hashed] = variants as [Variant, Variant, Variant, Variant];
for (const gateways of options.gateways)
  console.log(
    `G=${gateways}: goodput (b)/(a) ${goodputRatio(gateways, shared, perGateway)}, ` +
      `(c)/(a) ${goodputRatio(gateways, hashed, perGateway)}, (c)/(b) ${goodputRatio(gateways, hashed, shared)}`,
  );
