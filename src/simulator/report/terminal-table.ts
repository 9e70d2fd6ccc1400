import Table from 'cli-table3';
import type { SimulationResult } from '../simulation-result.js';
import {
  tierColumns as allTierColumns,
  energyCostProvenance,
  fleetColumns,
  refusedColumnHeader,
  reportedTiers,
  unservedColumnHeader,
} from './report-columns.js';
import {
  type ConfigurationKey,
  configurationHeaders,
  runConfiguration,
  sharedConfigurationLine,
  varyingKeys,
} from './run-configuration.js';

export interface SimulationTableOptions {
  /** Above this many columns the table splits into a latency table and a fleet/cost table. */
  maxWidth?: number;
}

// No lines between rows: a sweep prints dozens of rows, and the borders would double the height.
const compactChars = { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' };

function renderTable(head: string[], leftColumns: number, rows: string[][]): string {
  const table = new Table({
    head,
    chars: compactChars,
    // No colours: the output is often piped into files and CI logs.
    style: { head: [], border: [], 'padding-left': 1, 'padding-right': 1 },
    colAligns: head.map((_, column) => (column < leftColumns ? 'left' : 'right')),
  });
  table.push(...rows);
  return table.toString();
}

function widthOf(text: string): number {
  return Math.max(...text.split('\n').map((line) => line.length));
}

/**
 * One row per run × tier (the run's `all` row, then each tier that had requests), the sweep values that
 * differ between runs first. Fleet-wide figures (throughput per GPU, cost, energy, utilisation) appear
 * only on `all` rows. When the whole table is wider than `maxWidth` (160 by default) it is printed as two:
 * latency per tier, then fleet, cost and energy per run. Ends with the provenance of J and $.
 */
export function formatSimulationTable(
  results: readonly SimulationResult[],
  options: SimulationTableOptions = {},
): string {
  if (results.length === 0) return 'No simulation runs to report.';
  const maxWidth = options.maxWidth ?? 160;
  const keys: ConfigurationKey[] = varyingKeys(results);
  const configurationHead = keys.map((key) => configurationHeaders[key]);
  const configurationCells = (result: SimulationResult) => {
    const configuration = runConfiguration(result);
    return keys.map((key) => String(configuration[key] ?? '–'));
  };

  // Refusals happen only with a gateway scheduler or a mixed fleet: show their columns only when some
  // run refused anything.
  const tierColumns = allTierColumns.filter(
    (column) =>
      (column.header !== refusedColumnHeader || results.some((result) => result.overall.rejected > 0)) &&
      (column.header !== unservedColumnHeader || results.some((result) => result.overall.unserved > 0)),
  );
  const combinedRows: string[][] = [];
  for (const result of results) {
    const fleetCells = fleetColumns.map((column) => column.cell(result));
    for (const tier of reportedTiers(result)) {
      combinedRows.push([
        ...configurationCells(result),
        tier.tier,
        ...tierColumns.map((column) => column.cell(tier)),
        ...(tier === result.overall ? fleetCells : fleetCells.map(() => '')),
      ]);
    }
  }
  const leftColumns = keys.length + 1;
  const combined = renderTable(
    [
      ...configurationHead,
      'tier',
      ...tierColumns.map((column) => column.header),
      ...fleetColumns.map((column) => column.header),
    ],
    leftColumns,
    combinedRows,
  );

  const lines = [sharedConfigurationLine(results)];
  if (widthOf(combined) <= maxWidth) {
    lines.push(combined);
  } else {
    const latency = renderTable(
      [...configurationHead, 'tier', ...tierColumns.map((column) => column.header)],
      leftColumns,
      combinedRows.map((row) => row.slice(0, leftColumns + tierColumns.length)),
    );
    const fleet = renderTable(
      [...configurationHead, ...fleetColumns.map((column) => column.header)],
      keys.length,
      results.map((result) => [
        ...configurationCells(result),
        ...fleetColumns.map((column) => column.cell(result)),
      ]),
    );
    lines.push('Latency and goodput per tier:', latency, 'Fleet, cost and energy per run:', fleet);
  }
  lines.push(energyCostProvenance(results));
  return lines.join('\n');
}
