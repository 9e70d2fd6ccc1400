// Prints the simulator's error against published measurements as the Markdown table in
// docs/simulator-validation.md. Run with `npx tsx bench/sim/simulator-validation.ts`.

import { medianAbsoluteError, validateModel } from '../../src/simulator/validation/validate-model.js';
import { formatTable, printPreamble } from '../support/report-format.js';

const rows = validateModel();
const format = (value: number) => (Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3));
printPreamble("The simulator's error against published measurements", 'bench/sim/simulator-validation.ts');
process.stdout.write(
  formatTable(
    ['point', 'role', 'setting', 'metric', 'published', 'simulated', 'error'],
    rows.map((row) => [
      row.point.id,
      row.point.role,
      row.point.setting,
      row.point.metric,
      format(row.point.published),
      format(row.simulated),
      `${row.error >= 0 ? '+' : ''}${(row.error * 100).toFixed(1)}%`,
    ]),
  ),
);
const validation = rows.filter((row) => row.point.role === 'validation');
process.stdout.write(
  `\nvalidation points: ${validation.length}; median absolute error ${(medianAbsoluteError(validation) * 100).toFixed(1)}% (target ≤ 15%); ` +
    `within 15%: ${validation.filter((row) => Math.abs(row.error) <= 0.15).length}; within 25%: ${validation.filter((row) => Math.abs(row.error) <= 0.25).length}\n`,
);
process.stdout.write('\nsources:\n');
for (const source of new Set(rows.map((row) => row.point.source))) process.stdout.write(`- ${source}\n`);
