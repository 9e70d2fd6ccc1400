import type { CapacityPlan } from '../../simulator/plan/capacity-planner.js';
import type { SimulationResult, TierResult } from '../../simulator/simulation-result.js';
import { Chart, type ChartSet, latencySeries } from './charts.js';
import { element, emptyState } from './dom.js';
import { energyProvenance, formatJoules, formatPercent, formatUsd, tierColour } from './format.js';

interface LabelledRun {
  label: string;
  result: SimulationResult;
}

/**
 * The runs in a file written by `gravity sim --json` (`{command, results}`) or `gravity plan --json`
 * (`{command, plan}`: every probe of every candidate). Throws with a reader's message otherwise.
 */
export function runsOf(document: unknown): LabelledRun[] {
  const file = document as { results?: SimulationResult[]; plan?: CapacityPlan };
  if (Array.isArray(file.results))
    return file.results.map((result, index) => ({
      label:
        Object.entries(result.point ?? {})
          .map(([key, value]) => `${key}=${value}`)
          .join(' ') || `run ${index + 1}`,
      result,
    }));
  if (file.plan && Array.isArray(file.plan.feasible)) {
    const runs: LabelledRun[] = [];
    for (const outcome of [...file.plan.feasible, ...file.plan.infeasible])
      for (const probe of outcome.probes)
        runs.push({
          label: `${outcome.candidate.hardware}×${outcome.candidate.devices} ${outcome.candidate.routing} ×${probe.replicas}`,
          result: probe.result,
        });
    return runs;
  }
  throw new Error('not a `gravity sim --json` or `gravity plan --json` file (no "results" or "plan")');
}

/** The same charts as the live view, over the runs of a simulation or capacity plan instead of time. */
export class SimulationView {
  private readonly throughput: Chart;
  private readonly ttft: Chart;
  private readonly itl: Chart;
  private readonly rejected: Chart;

  constructor(
    private readonly root: HTMLElement,
    charts: ChartSet,
  ) {
    this.throughput = charts.add(new Chart('chart-sim-throughput'));
    this.ttft = charts.add(new Chart('chart-sim-ttft'));
    this.itl = charts.add(new Chart('chart-sim-itl'));
    this.rejected = charts.add(new Chart('chart-sim-rejected'));
    const input = root.querySelector('input[type=file]') as HTMLInputElement;
    input.addEventListener('change', () => {
      const file = input.files?.[0];
      if (file) void this.open(file);
    });
    this.showMessage(
      'No file opened — write one with `gravity sim scenarios/<name>.yaml --json result.json` or ' +
        '`gravity plan scenarios/<name>.yaml --json plan.json`, then open it above. It is read here, in the ' +
        'browser: nothing is sent anywhere.',
    );
  }

  private showMessage(text: string): void {
    (this.root.querySelector('.sim-message') as HTMLElement).replaceChildren(emptyState(text));
  }

  async open(file: File): Promise<void> {
    let runs: LabelledRun[];
    try {
      runs = runsOf(JSON.parse(await file.text()));
    } catch (error) {
      this.showMessage(`Could not open ${file.name}: ${(error as Error).message}.`);
      return;
    }
    if (runs.length === 0) {
      this.showMessage(`${file.name} holds no runs.`);
      return;
    }
    (this.root.querySelector('.sim-message') as HTMLElement).replaceChildren(
      element(
        'p',
        {},
        `${file.name}: ${runs.length} run${runs.length === 1 ? '' : 's'} (numbered in the table below).`,
      ),
    );
    const grid = this.root.querySelector('.charts') as HTMLElement;
    if (grid.childElementCount === 0)
      grid.append(this.throughput.card, this.ttft.card, this.itl.card, this.rejected.card);
    this.render(runs);
  }

  private render(runs: LabelledRun[]): void {
    // A rate sweep reads best against its offered load; anything else against the run's number.
    const rates = runs.map((run) => run.result.point?.ratePerSecond);
    const byRate =
      rates.every((rate) => typeof rate === 'number') &&
      new Set(rates).size === rates.length &&
      rates.length > 1;
    const x = byRate ? (rates as number[]) : runs.map((_, index) => index + 1);
    const xAxisLabel = byRate ? 'offered load (requests / s)' : 'run';
    const tiers = [...new Set(runs.flatMap((run) => run.result.tiers.map((tier) => tier.tier)))];
    const tierOf = (run: LabelledRun, tier: string): TierResult | undefined =>
      run.result.tiers.find((candidate) => candidate.tier === tier);
    this.throughput.update({
      title: 'Throughput per run',
      yAxisLabel: 'requests / s',
      rightAxisLabel: 'output tokens / s',
      xAxisLabel,
      xCounted: !byRate,
      x,
      series: [
        {
          label: 'requests/s',
          colour: '#333333',
          values: runs.map((run) => run.result.overall.requestsPerSecond),
        },
        {
          label: 'output tokens/s',
          colour: '#8c564b',
          values: runs.map((run) => run.result.overall.outputTokensPerSecond),
          right: true,
        },
      ],
    });
    const latency = (pick: 'ttft' | 'itl') =>
      latencySeries(
        tiers.map((tier) => {
          const slo = runs.map((run) => tierOf(run, tier)?.slo).find((found) => found);
          return {
            tier,
            colour: tierColour(tier),
            p50: runs.map((run) => tierOf(run, tier)?.[pick].p50Ms ?? null),
            p95: runs.map((run) => tierOf(run, tier)?.[pick].p95Ms ?? null),
            targetMs: (pick === 'ttft' ? slo?.ttftMs : slo?.tpotMs) ?? 0,
          };
        }),
      );
    this.ttft.update({
      title: 'Time to first token per run, per tier, against its target',
      yAxisLabel: 'ms (log scale)',
      logScale: true,
      xAxisLabel,
      xCounted: !byRate,
      x,
      series: latency('ttft'),
    });
    this.itl.update({
      title: 'Inter-token latency per run, per tier, against its target',
      yAxisLabel: 'ms (log scale)',
      logScale: true,
      xAxisLabel,
      xCounted: !byRate,
      x,
      series: latency('itl'),
    });
    this.rejected.update({
      title: 'Shed rate per run, per tier (rejected)',
      yAxisLabel: 'requests shed / s',
      xAxisLabel,
      xCounted: !byRate,
      x,
      series: tiers.map((tier) => ({
        label: tier,
        colour: tierColour(tier),
        values: runs.map((run) => {
          const found = tierOf(run, tier);
          return found && run.result.durationSeconds > 0 ? found.rejected / run.result.durationSeconds : null;
        }),
      })),
    });
    this.renderFleetTable(runs);
  }

  private renderFleetTable(runs: LabelledRun[]): void {
    const headers = [
      'Run',
      'Configuration',
      'Replicas',
      'Utilisation',
      'KV cache used',
      'Prefix-cache hits',
      '$ per 1M output tokens',
      'Energy per 1M output tokens',
      'Energy source',
    ];
    (this.root.querySelector('.sim-fleet') as HTMLElement).replaceChildren(
      element(
        'table',
        {},
        element(
          'thead',
          {},
          element('tr', {}, ...headers.map((name) => element('th', { scope: 'col' }, name))),
        ),
        element(
          'tbody',
          {},
          ...runs.map((run, index) => {
            const fleet = run.result.fleet;
            return element(
              'tr',
              {},
              element('th', { scope: 'row' }, index + 1),
              element(
                'td',
                {},
                `${run.label} (${fleet.hardware}×${fleet.devicesPerReplica}, ${fleet.routing})`,
              ),
              element('td', {}, fleet.replicas),
              element('td', {}, formatPercent(fleet.utilisation)),
              element('td', {}, formatPercent(fleet.meanKvUse)),
              element('td', {}, formatPercent(fleet.prefixHitRate)),
              element('td', {}, formatUsd(fleet.usdPerMillionOutputTokens)),
              element(
                'td',
                {},
                formatJoules(
                  fleet.joulesPerOutputToken === null ? null : fleet.joulesPerOutputToken * 1_000_000,
                ),
              ),
              element('td', {}, energyProvenance([fleet.energySource])),
            );
          }),
        ),
      ),
    );
  }
}
