// The performance model beside a GPU run's measurements (bench/gpu/README.md): each measured point
// (shape × concurrency) simulated as it ran (one H200 replica, the llama-cpp flavour, the run's slots,
// llama.cpp's 512-token batch, closed-loop clients with the run's prompt and output lengths), and the
// error of each figure. `--fit` fits the llama-cpp flavour's host constants, which were only ever set
// for the CPU, on the calibration half declared below, and reports the error on the other half.
//
//   npx tsx bench/gpu/compare-model.ts <gpu-results.json> [--fit] [--hardware h200]

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { medianOf } from '../../src/core/quantile.js';
import { type PerformanceConstants, performanceConstants } from '../../src/performance-model/calibration.js';
import type { ModelProfile } from '../../src/performance-model/model-profiles.js';
import { parseScenario } from '../../src/simulator/load-scenario.js';
import { runScenario } from '../../src/simulator/run-scenario.js';
import { fixed, formatTable } from '../support/report-format.js';

/**
 * Declared before any GPU run (2026-12-03): the points the host constants may be fitted on. The other
 * concurrencies are held out, so every reported held-out error is out of sample for both shapes.
 */
export const calibrationConcurrencies: ReadonlySet<number> = new Set([1, 16]);

interface MeasuredLevel {
  concurrency: number;
  outputTokensPerSecond: number;
  ttftP50Ms: number | null;
  itlP50Ms: number | null;
  meanPromptTokens: number | null;
  ledgerJoulesPerToken: number | null;
  independentJoulesPerToken: number | null;
}

interface GpuResults {
  command: string;
  settings: { maxTokens: number; slots: number };
  results: Array<{ shape: string; profile: ModelProfile; levels: MeasuredLevel[] }>;
}

interface Predicted {
  outputTokensPerSecond: number;
  ttftP50Ms: number | null;
  itlP50Ms: number | null;
  joulesPerToken: number | null;
}

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    fit: { type: 'boolean', default: false },
    /** The device the run measured (a catalogue name): h200 for the GPU run; a CPU rehearsal gives cpu-core. */
    hardware: { type: 'string', default: 'h200' },
  },
});
const resultsPath = positionals[0];
if (!resultsPath) throw new Error('usage: compare-model.ts <gpu-results.json> [--fit] [--hardware h200]');
const run = JSON.parse(readFileSync(resultsPath, 'utf8')) as GpuResults;

function predict(profile: ModelProfile, level: MeasuredLevel, constants: PerformanceConstants): Predicted {
  const scenario = parseScenario(
    {
      name: `${profile.name}-c${level.concurrency}`,
      fleet: {
        hardware: flags.hardware,
        model: profile.name,
        flavour: 'llama-cpp',
        maxNumSeqs: run.settings.slots,
        // llama.cpp's default batch (Gravity's llama-cpp batchSize): at most 512 tokens per step.
        maxNumBatchedTokens: 512,
        // Each prompt differs (the chat template's ~100 tokens are the only shared prefix): none is counted.
        prefixCaching: false,
      },
      workload: {
        arrivals: { process: 'closed-loop', concurrency: level.concurrency },
        // Enough rounds that the ramp and the drain weigh little against the steady state the run measured.
        requests: Math.max(200, level.concurrency * 30),
        mix: [
          {
            name: 'gpu-bench',
            input: { fixed: Math.round(level.meanPromptTokens ?? 0) },
            output: { fixed: run.settings.maxTokens },
          },
        ],
      },
    },
    resultsPath as string,
  );
  const result = runScenario(scenario, {}, { modelProfile: profile, constants });
  return {
    outputTokensPerSecond: result.overall.outputTokensPerSecond,
    ttftP50Ms: result.overall.ttft.p50Ms,
    itlP50Ms: result.overall.itl.p50Ms,
    joulesPerToken: result.fleet.joulesPerOutputToken,
  };
}

const relative = (predicted: number | null, measured: number | null): number | null =>
  predicted === null || measured === null || measured === 0 ? null : predicted / measured - 1;

const points = run.results.flatMap((shape) =>
  shape.levels.map((level) => ({ shape: shape.shape, profile: shape.profile, level })),
);

/** Median |log(predicted / measured)| of throughput and ITL over `subset`: the fit's objective. */
function fitError(constants: PerformanceConstants, subset: typeof points): number {
  const errors: number[] = [];
  for (const point of subset) {
    const predicted = predict(point.profile, point.level, constants);
    errors.push(Math.abs(Math.log(predicted.outputTokensPerSecond / point.level.outputTokensPerSecond)));
    if (predicted.itlP50Ms !== null && point.level.itlP50Ms !== null)
      errors.push(Math.abs(Math.log(predicted.itlP50Ms / point.level.itlP50Ms)));
  }
  return medianOf(errors) ?? Number.POSITIVE_INFINITY;
}

function withHost(stepMs: number, perSequenceMs: number): PerformanceConstants {
  return {
    ...performanceConstants,
    engineOverheads: {
      ...performanceConstants.engineOverheads,
      'llama-cpp': { ...performanceConstants.engineOverheads['llama-cpp'], stepMs, perSequenceMs },
    },
  };
}

let constants = performanceConstants;
if (flags.fit) {
  const calibration = points.filter((point) => calibrationConcurrencies.has(point.level.concurrency));
  if (calibration.length === 0) throw new Error('no calibration points (concurrency 1 or 16) in the run');
  // A log grid: host time per step from 10 µs to 30 ms, per sequence from 0 to 1 ms.
  const stepGrid = Array.from({ length: 25 }, (_, index) => 0.01 * 3000 ** (index / 24));
  const perSequenceGrid = [0, ...Array.from({ length: 12 }, (_, index) => 0.001 * 1000 ** (index / 11))];
  let best = { error: Number.POSITIVE_INFINITY, stepMs: 0, perSequenceMs: 0 };
  for (const stepMs of stepGrid)
    for (const perSequenceMs of perSequenceGrid) {
      const error = fitError(withHost(stepMs, perSequenceMs), calibration);
      if (error < best.error) best = { error, stepMs, perSequenceMs };
    }
  constants = withHost(best.stepMs, best.perSequenceMs);
  console.log(
    `fitted on concurrency ${[...calibrationConcurrencies].join(', ')}: llama-cpp stepMs ${best.stepMs.toPrecision(3)}, perSequenceMs ${best.perSequenceMs.toPrecision(3)} (was ${performanceConstants.engineOverheads['llama-cpp'].stepMs}, ${performanceConstants.engineOverheads['llama-cpp'].perSequenceMs})`,
  );
}

const percent = (value: number | null): string =>
  value === null ? '–' : `${value >= 0 ? '+' : ''}${(value * 100).toFixed(1)}%`;
const rows: string[][] = [];
const heldOutErrors: number[] = [];
const inSampleErrors: number[] = [];
for (const point of points) {
  const predicted = predict(point.profile, point.level, constants);
  const measured = point.level;
  const measuredJoules = measured.independentJoulesPerToken ?? measured.ledgerJoulesPerToken;
  const errors = {
    throughput: relative(predicted.outputTokensPerSecond, measured.outputTokensPerSecond),
    ttft: relative(predicted.ttftP50Ms, measured.ttftP50Ms),
    itl: relative(predicted.itlP50Ms, measured.itlP50Ms),
    joules: relative(predicted.joulesPerToken, measuredJoules),
  };
  const calibrationPoint = flags.fit && calibrationConcurrencies.has(measured.concurrency);
  for (const error of Object.values(errors))
    if (error !== null) (calibrationPoint ? inSampleErrors : heldOutErrors).push(Math.abs(error));
  rows.push([
    point.shape,
    String(measured.concurrency),
    flags.fit ? (calibrationPoint ? 'calibration' : 'held out') : '–',
    `${fixed(measured.outputTokensPerSecond, 0)} / ${fixed(predicted.outputTokensPerSecond, 0)} (${percent(errors.throughput)})`,
    `${fixed(measured.ttftP50Ms, 1)} / ${fixed(predicted.ttftP50Ms, 1)} (${percent(errors.ttft)})`,
    `${fixed(measured.itlP50Ms, 2)} / ${fixed(predicted.itlP50Ms, 2)} (${percent(errors.itl)})`,
    `${fixed(measuredJoules, 3)} / ${fixed(predicted.joulesPerToken, 3)} (${percent(errors.joules)})`,
  ]);
}
const header = [
  'shape',
  'clients',
  'set',
  'tokens/s measured / model',
  'TTFT p50 ms',
  'ITL p50 ms',
  'J/token',
];
// A Markdown table, as docs/gpu-validation.md will paste it.
console.log(formatTable(header, rows));
const median = (values: number[]) => percent(medianOf(values));
console.log(
  flags.fit
    ? `median |error|: calibration points ${median(inSampleErrors)}, held-out points ${median(heldOutErrors)}`
    : `median |error| over all figures (constants as calibration.ts has them, none fitted on this run): ${median(heldOutErrors)}`,
);
console.log(`measured by: ${run.command}`);
