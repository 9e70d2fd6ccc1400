import { describe, expect, it } from 'vitest';
import { simulationResultFixture } from './simulation-result-fixture.js';
import { formatSimulationTable } from './terminal-table.js';

const sweep = [2, 4, 8].flatMap((ratePerSecond) =>
  (['round-robin', 'least-loaded'] as const).map((routing) =>
    simulationResultFixture({ point: { ratePerSecond, routing }, tiers: ['priority', 'default', 'batch'] }),
  ),
);

function tableLines(text: string): string[] {
  return text.split('\n').filter((line) => line.startsWith('│'));
}

describe('formatSimulationTable', () => {
  it('lists a row for every run × tier, including the overall row', () => {
    const text = formatSimulationTable(sweep);
    for (const tier of ['all', 'priority', 'default', 'batch']) {
      const rows = tableLines(text).filter((line) => line.includes(` ${tier} `));
      expect(rows.length, tier).toBeGreaterThanOrEqual(sweep.length);
    }
  });

  it('puts the sweep values that vary first and leaves constant ones out of the columns', () => {
    const text = formatSimulationTable(sweep);
    const header = tableLines(text)[0]!;
    const cells = header.split('│').map((cell) => cell.trim());
    expect(cells.slice(1, 4)).toEqual(['rate req/s', 'routing', 'tier']);
    expect(header).not.toContain('hardware');
    expect(text).toContain('round-robin');
    expect(text).toContain('least-loaded');
    // What does not vary is said once, above the table.
    expect(text.split('\n')[0]).toContain('h100-sxm');
  });

  it('skips tiers that had no requests', () => {
    const result = simulationResultFixture({ tiers: ['priority', 'flex'] });
    result.tiers[1]!.submitted = 0;
    const text = formatSimulationTable([result]);
    expect(text).toContain(' priority ');
    expect(text).not.toContain(' flex ');
  });

  it('stays within 160 columns by splitting into a latency table and a fleet table', () => {
    const text = formatSimulationTable(sweep);
    for (const line of text.split('\n').filter((line) => !line.startsWith('J and $'))) {
      expect(line.length, line).toBeLessThanOrEqual(160);
    }
    expect(text).toContain('Latency and goodput per tier:');
    expect(text).toContain('Fleet, cost and energy per run:');
    const fleetTable = text.slice(text.indexOf('Fleet, cost and energy per run:'));
    // One fleet row per run, the fleet figures never repeated for each tier.
    expect(tableLines(fleetTable).slice(2)).toHaveLength(sweep.length);
  });

  it('keeps one table when it fits, with fleet figures only on the overall rows', () => {
    const text = formatSimulationTable(sweep.slice(0, 2), { maxWidth: 400 });
    expect(text).not.toContain('Fleet, cost and energy per run:');
    const rows = tableLines(text).slice(2);
    const allRow = rows.find((line) => line.includes(' all '))!;
    const tierRow = rows.find((line) => line.includes(' priority '))!;
    const lastCell = (line: string) => line.split('│').at(-2)!.trim();
    expect(lastCell(allRow)).toBe('20.0');
    expect(lastCell(tierRow)).toBe('');
  });

  it('rounds figures to three significant digits and percentages to one decimal', () => {
    const text = formatSimulationTable([simulationResultFixture({ load: 1 })], { maxWidth: 400 });
    // TTFT p50 80 ms, p90 144 ms, TPOT p50 15 ms; attainment 94%; 0.45 J per token; 8M tokens per kWh.
    expect(text).toMatch(/ 80\.0 /);
    expect(text).toMatch(/ 144 /);
    expect(text).toMatch(/ 15\.0 /);
    expect(text).toMatch(/ 94\.0 /);
    expect(text).toMatch(/ 0\.450 /);
    expect(text).toMatch(/ 8\.00M /);
  });

  it('ends with where the joules and dollars come from', () => {
    const lastLine = formatSimulationTable(sweep).split('\n').at(-1)!;
    expect(lastLine).toContain('estimated:performance-model');
    expect(lastLine).toContain('src/performance-model/hardware-profiles.ts');
    expect(lastLine).toContain('h100-sxm at $2.5/device-hour');
  });
});
