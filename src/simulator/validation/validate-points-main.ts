import os from 'node:os';
import { performanceConstants } from '../../performance-model/calibration.js';
import { loadPoints } from './point-runs.js';
import {
  fittedConstants,
  fittedOnRuns,
  type PointRow,
  runValidation,
  summarise,
  ValidationHarness,
} from './validate-points.js';

/**
 * `npm run validate:model`: the validation protocol of src/simulator/validation/points/README.md,
 * printed. Fits on calibration points, then prints per-point errors and the three error figures side by
 * side. `--current` also prints the errors of the constants as calibration.ts has them now.
 */

const percent = (value: number) => `${value >= 0 ? '+' : ''}${(value * 100).toFixed(1)}%`;
const abs = (value: number) => `${(value * 100).toFixed(1)}%`;
const figure = (value: number) => (Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(4));

function printRows(title: string, rows: readonly PointRow[]) {
  const sorted = [...rows].sort((a, b) => a.point.id.localeCompare(b.point.id));
  if (process.argv.includes('--markdown')) {
    // The per-point tables of docs/simulator-validation.md, as printed here.
    console.log(`\n${title}\n\n| point | simulated | published | error |\n|---|--:|--:|--:|`);
    for (const row of sorted)
      console.log(
        `| ${row.point.id} | ${figure(row.simulated)} | ${figure(row.point.value)} | ${percent(row.error)} |`,
      );
    return;
  }
  console.log(`\n${title}`);
  console.log(
    `${'point'.padEnd(62)} ${'simulated'.padStart(10)} ${'published'.padStart(10)} ${'error'.padStart(8)}`,
  );
  for (const row of sorted)
    console.log(
      `${row.point.id.padEnd(62)} ${figure(row.simulated).padStart(10)} ${figure(row.point.value).padStart(10)} ${percent(row.error).padStart(8)}`,
    );
}

const startedMs = performance.now();
console.log('command: npm run validate:model (tsx src/simulator/validation/validate-points-main.ts)');
console.log(
  `machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, node ${process.version}`,
);
const points = loadPoints();
const drawAt = process.argv.indexOf('--draw');
const draw = drawAt < 0 ? 1 : Number(process.argv[drawAt + 1]);
if (!Number.isInteger(draw) || draw < 1) throw new Error('--draw takes a positive integer');
if (draw !== 1)
  console.log(`draw ${draw}: unpublished lengths and arrivals drawn with seed ${draw} (default 1)`);
const harness = new ValidationHarness(points, draw);
const count = (set: string) => points.filter((point) => point.set === set).length;
const runsOf = (set: string) =>
  new Set(points.filter((point) => point.set === set).map((point) => point.run)).size;
console.log(
  `split (points/split.ts, FNV-1a-32(run) % 5 < 2): calibration ${count('calibration')} points in ${runsOf('calibration')} runs, validation ${count('validation')} points in ${runsOf('validation')} runs`,
);
console.log(
  `simulable runs: ${harness.runs.size}; points in runs that cannot be simulated: ${harness.skipped.length}`,
);
for (const [run, { setup }] of harness.runs)
  console.log(
    `  ${run}: ${setup.flavour}, ${setup.devices}× ${setup.hardware}, ${setup.model} ${setup.weightDtype}, ${setup.arrivals.kind}, ${setup.lengthsNote}`,
  );

if (process.argv.includes('--current')) {
  const current = harness.evaluate(performanceConstants, () => true);
  const calibration = summarise(current.rows.filter((row) => row.point.set === 'calibration'));
  const validation = summarise(current.rows.filter((row) => row.point.set === 'validation'));
  console.log(
    `\ncalibration.ts as it is: calibration median |error| ${abs(calibration.medianAbsError)} (${calibration.points} points), validation ${abs(validation.medianAbsError)} (${validation.points} points)`,
  );
}

const report = runValidation(harness);
console.log('\nfitted on calibration points (median absolute log error):');
for (const constant of fittedConstants) {
  const unfitted = report.fit.unfitted.includes(constant.name)
    ? '  (no calibration point moves it: prior kept)'
    : '';
  console.log(
    `  ${constant.name.padEnd(48)} ${constant.get(report.fit.constants).toPrecision(4)}${unfitted}`,
  );
  if (process.argv.includes('--sources'))
    console.log(`      fitted on runs: ${fittedOnRuns(harness, constant).join(', ') || 'none'}`);
}

const stale = fittedConstants.filter(
  (constant) => Math.abs(constant.get(report.fit.constants) / constant.get(performanceConstants) - 1) > 0.001,
);
console.log(
  stale.length === 0
    ? 'calibration.ts holds these fitted values.'
    : `calibration.ts differs from this fit in: ${stale.map((constant) => `${constant.name} (${constant.get(performanceConstants)})`).join(', ')}`,
);

printRows('in-sample (calibration points, constants fitted on them):', report.inSample);
printRows('held out (validation points, constants fitted on calibration points):', report.heldOut);
for (const fold of report.leaveOneSourceOut)
  printRows(
    `leave-one-source-out: ${fold.source} (fitted on the other sources' calibration points):`,
    fold.rows,
  );

console.log('\nskipped points:');
const reasons = new Map<string, string[]>();
for (const { point, reason } of report.skipped)
  reasons.set(reason, [...(reasons.get(reason) ?? []), point.id]);
for (const [reason, ids] of reasons) console.log(`  ${ids.length} × ${reason}\n      ${ids.join(', ')}`);

const line = (name: string, rows: readonly PointRow[]) => {
  const summary = summarise(rows);
  const worst = summary.worst ? `${summary.worst.point.id} ${percent(summary.worst.error)}` : '-';
  const within15 = rows.filter((row) => Math.abs(row.error) <= 0.15).length;
  const beyond50 = rows.filter((row) => Math.abs(row.error) > 0.5).length;
  console.log(
    `  ${name.padEnd(36)} ${String(summary.points).padStart(6)} ${abs(summary.medianAbsError).padStart(9)} ${String(within15).padStart(7)} ${String(beyond50).padStart(7)}   ${worst}`,
  );
};
console.log(
  `\n  ${'errors'.padEnd(36)} ${'points'.padStart(6)} ${'median|e|'.padStart(9)} ${'<=15%'.padStart(7)} ${'>50%'.padStart(7)}   worst point`,
);
line('in-sample (calibration)', report.inSample);
line('held out (validation)', report.heldOut);
line(
  'leave-one-source-out (all folds)',
  report.leaveOneSourceOut.flatMap((fold) => fold.rows),
);
for (const fold of report.leaveOneSourceOut) line(`  LOSO ${fold.source}`, fold.rows);
console.log(
  `\n${harness.simulations} simulations in ${((performance.now() - startedMs) / 1000).toFixed(1)} s`,
);
