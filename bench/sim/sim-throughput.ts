// Simulator speed: how many requests per second of host time the fleet simulator gets through, on one
// core (the simulator is single-threaded), with memory bounded by histograms instead of per-request
// records. The target (simulator issue): one million requests on a 16-replica fleet in under 60 s.
// A second, smaller run compares decode spans against step-by-step simulation in the same process (a
// ratio; both must predict the same latencies). Run with `npm run bench:sim -- --help`.

import { parseScenario } from '../../src/simulator/load-scenario.js';
import { runScenario } from '../../src/simulator/run-scenario.js';
import type { SimulationResult } from '../../src/simulator/simulation-result.js';
import { formatTable, integer, printPreamble, readOptions } from '../support/report-format.js';

const targetSeconds = 60;

const { requests, replicas, compareRequests } = readOptions(
  'bench:sim',
  'Simulated requests per second of host time; decode spans against step-by-step simulation.',
  {
    requests: integer(1_000_000, 'requests in the main run', { quick: 20_000 }),
    replicas: integer(16, 'H100 replicas in the simulated fleet'),
    compareRequests: integer(100_000, 'requests in each run of the spans / step-by-step comparison', {
      quick: 2000,
    }),
  },
);

/**
 * Llama-3.1-8B on H100s at ~75% of the fleet's capacity (about 13 requests/s per replica on this
 * workload), ShareGPT-like lengths, and a third of requests sharing one of 32 system prompts, so the
 * prefix cache and routing both do real work.
 */
function benchScenario(requestCount: number) {
  return parseScenario(
    {
      name: 'bench-sim',
      seed: 42,
      fleet: { hardware: 'h100-sxm', model: 'llama-3.1-8b', replicas },
      policies: { ordering: 'priority' },
      routing: { policy: 'least-loaded' },
      workload: {
        arrivals: { process: 'poisson', ratePerSecond: 13 * replicas },
        requests: requestCount,
        mix: [
          {
            name: 'chat',
            weight: 2,
            input: { lognormal: { mean: 202, cv: 1.2 }, min: 4, max: 4096 },
            output: { lognormal: { mean: 179, cv: 1 }, min: 1, max: 2048 },
          },
          {
            name: 'assistant',
            weight: 1,
            tier: 'priority',
            sharedPrefix: { groups: 32, tokens: 1024 },
            input: { lognormal: { mean: 120, cv: 1 }, min: 4, max: 2048 },
            output: { lognormal: { mean: 150, cv: 1 }, min: 1, max: 1024 },
          },
        ],
      },
    },
    'bench',
  );
}

function measure(requestCount: number, coalesceDecodeSteps: boolean) {
  global.gc?.();
  let peakHeapBytes = 0;
  const result: SimulationResult = runScenario(
    benchScenario(requestCount),
    {},
    {
      coalesceDecodeSteps,
      onProgress: () => {
        peakHeapBytes = Math.max(peakHeapBytes, process.memoryUsage().heapUsed);
      },
    },
  );
  return { result, peakHeapMiB: peakHeapBytes / 2 ** 20 };
}

printPreamble('Simulator speed', 'bench:sim', [
  'workload: Llama-3.1-8B on H100s at ~75% load, ShareGPT-like lengths, a third sharing 32 system prompts; ' +
    'the simulator uses one core',
]);

const main = measure(requests, true);
const summary = main.result;
process.stdout.write(
  formatTable(
    [
      'run',
      'requests',
      'replicas',
      'host s',
      'requests/s of simulation',
      'simulated s',
      'peak heap MiB',
      'target',
    ],
    [
      [
        'decode spans',
        String(summary.overall.submitted),
        String(replicas),
        summary.wallSeconds.toFixed(1),
        Math.round(summary.simulatedRequestsPerSecond).toLocaleString('en-US'),
        summary.durationSeconds.toFixed(0),
        main.peakHeapMiB.toFixed(0),
        requests >= 1_000_000 && replicas >= 16
          ? `${summary.wallSeconds < targetSeconds ? 'met' : 'missed'} (< ${targetSeconds} s)`
          : 'n/a (target is for 1M requests on 16 replicas)',
      ],
    ],
  ),
);
process.stdout.write(
  `\nsimulated fleet: ${summary.overall.outputTokensPerSecond.toFixed(0)} output tok/s, TTFT p50 ${summary.overall.ttft.p50Ms} ms, ` +
    `TPOT p50 ${summary.overall.tpot.p50Ms} ms, utilisation ${(summary.fleet.utilisation * 100).toFixed(0)}%, prefix hits ${(summary.fleet.prefixHitRate * 100).toFixed(0)}%\n\n`,
);

// Same workload, smaller, both ways in one process: the speed-up that decode spans buy.
const spans = measure(compareRequests, true);
const steps = measure(compareRequests, false);
process.stdout.write(
  formatTable(
    ['mode', 'requests', 'host s', 'requests/s of simulation', 'TTFT p50 ms', 'TPOT p50 ms', 'E2E mean ms'],
    [spans, steps].map(({ result }, index) => [
      index === 0 ? 'decode spans' : 'step by step',
      String(result.overall.submitted),
      result.wallSeconds.toFixed(2),
      Math.round(result.simulatedRequestsPerSecond).toLocaleString('en-US'),
      String(result.overall.ttft.p50Ms),
      String(result.overall.tpot.p50Ms),
      String(result.overall.e2e.meanMs),
    ]),
  ),
);
process.stdout.write(
  `\nspans / step-by-step speed: ${(steps.result.wallSeconds / spans.result.wallSeconds).toFixed(2)}×\n`,
);
