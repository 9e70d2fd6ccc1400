import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { ChartConfiguration } from 'chart.js';
import type { SimulationResult, TierResult } from '../simulation-result.js';
import { energyCostProvenance, fleetColumns, reportedTiers, tierColumns } from './report-columns.js';
import {
  type ConfigurationKey,
  configurationHeaders,
  configurationLabel,
  loadKeys,
  runConfiguration,
  runLabels,
  sharedConfigurationLine,
  varyingKeys,
} from './run-configuration.js';

/**
 * One self-contained HTML file per report: Chart.js, the results and the chart configurations are all
 * inlined, so the file opens from file:// on a machine with no network and can be attached to an issue.
 * Charts are built here, in TypeScript, as plain Chart.js configurations (JSON); the page's own script
 * only hands them to Chart.js and adds tooltips.
 */

export interface HtmlReportMeta {
  title: string;
  /** The command line that produced the report, shown verbatim. */
  command: string;
  /** When the report was generated (ISO 8601). */
  generatedAt: string;
}

interface ChartSpec {
  id: string;
  title: string;
  caption: string;
  /**
   * Each builder checks its configuration against its own chart type (`satisfies
   * ChartConfiguration<'line', RunPoint[]>`), then widens it: Chart.js's generic type does not accept a
   * line chart's configuration as a configuration of any chart.
   */
  config: ChartConfiguration;
}

/**
 * Chart.js draws the legend and rotated run labels inside the canvas, so a chart with many series or
 * long labels gets taller instead of squeezing its plot area to a strip.
 */
function chartHeightPx(spec: ChartSpec): number {
  const legendItems =
    spec.config.options?.plugins?.legend?.display === false ? 0 : spec.config.data.datasets.length;
  const legendRows = Math.ceil(legendItems / 3);
  const labels = (spec.config.data.labels ?? []) as string[];
  const longestLabel = Math.max(0, ...labels.map((label) => String(label).length));
  return 340 + legendRows * 20 + Math.min(200, longestLabel * 4);
}

/** A point on a scatter or line chart; `run` names the run in the tooltip. */
interface RunPoint {
  x: number;
  y: number;
  run: string;
}

const palette = [
  '#4e79a7',
  '#f28e2b',
  '#e15759',
  '#59a14f',
  '#b07aa1',
  '#76b7b2',
  '#edc948',
  '#ff9da7',
  '#9c755f',
  '#79706e',
];

function colour(index: number): string {
  return palette[index % palette.length]!;
}

let chartJsBundle: string | undefined;

/** Chart.js's UMD bundle as shipped in node_modules (the package's exports hide dist/, so go via its main). */
function readChartJsBundle(): string {
  if (chartJsBundle === undefined) {
    const require = createRequire(import.meta.url);
    const bundlePath = path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js');
    // A literal `</script` inside the bundle would end the inline script early; `<\/script` means the same in JS.
    chartJsBundle = readFileSync(bundlePath, 'utf8').replace(/<\/(script)/gi, '<\\/$1');
  }
  return chartJsBundle;
}

/**
 * JSON that is safe inside `<script type="application/json">`: `<`, `>` and `&` only ever occur inside
 * JSON strings, where their \u escapes parse back to the same text, so no `</script>` or `<!--` survives.
 */
export function jsonForScriptTag(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

interface LoadAxis {
  key: ConfigurationKey | null;
  title: string;
  value: (result: SimulationResult) => number | null;
}

/** Offered load if the runs vary it, else fleet size, else what the fleet achieved. */
function loadAxis(keys: readonly ConfigurationKey[]): LoadAxis {
  if (keys.includes('ratePerSecond'))
    return {
      key: 'ratePerSecond',
      title: 'offered load (requests/s, open loop)',
      value: (result) => result.point.ratePerSecond ?? null,
    };
  if (keys.includes('concurrency'))
    return {
      key: 'concurrency',
      title: 'offered load (concurrent users, closed loop)',
      value: (result) => result.point.concurrency ?? null,
    };
  // A plan's probes hold the load and change the fleet: latency against replicas is the useful view.
  if (keys.includes('replicas'))
    return { key: 'replicas', title: 'replicas', value: (result) => result.fleet.replicas };
  return {
    key: null,
    title: 'achieved throughput (requests/s)',
    value: (result) => result.overall.requestsPerSecond,
  };
}

/** Runs grouped by the given configuration keys, in order of first appearance. */
function groupRuns(
  results: readonly SimulationResult[],
  keys: readonly ConfigurationKey[],
): { label: string; results: SimulationResult[] }[] {
  const groups = new Map<string, SimulationResult[]>();
  for (const result of results) {
    const label = configurationLabel(runConfiguration(result), keys);
    groups.set(label, [...(groups.get(label) ?? []), result]);
  }
  return [...groups].map(([label, members]) => ({ label, results: members }));
}

/** Tiers that had requests in any run, in the order the results list them. */
function tiersWithRequests(results: readonly SimulationResult[]): TierResult['tier'][] {
  const names = new Set<TierResult['tier']>();
  for (const result of results)
    for (const tier of result.tiers) if (tier.tier !== 'all' && tier.submitted > 0) names.add(tier.tier);
  return names.size > 0 ? [...names] : ['all'];
}

function tierOf(result: SimulationResult, name: TierResult['tier']): TierResult | undefined {
  return name === 'all' ? result.overall : result.tiers.find((tier) => tier.tier === name);
}

/** Latency spans orders of magnitude once a fleet saturates; a log axis keeps the unsaturated part legible. */
function yScaleType(values: number[]): 'linear' | 'logarithmic' {
  const positive = values.filter((value) => value > 0);
  if (positive.length < 2) return 'linear';
  return Math.max(...positive) / Math.min(...positive) > 30 ? 'logarithmic' : 'linear';
}

function axisTitle(text: string) {
  return { display: true, text };
}

interface LatencyMetric {
  name: string;
  value: (tier: TierResult) => number | null;
  dashed: boolean;
}

function latencyChart(
  results: readonly SimulationResult[],
  labels: readonly string[],
  spec: { id: string; title: string; yTitle: string; metrics: LatencyMetric[] },
): ChartSpec {
  const keys = varyingKeys(results);
  const axis = loadAxis(keys);
  const groups = groupRuns(
    results,
    keys.filter((key) => key !== axis.key),
  );
  const labelOf = new Map(results.map((result, index) => [result, labels[index]!]));
  const datasets: ChartConfiguration<'line', RunPoint[]>['data']['datasets'] = [];
  const values: number[] = [];
  let series = 0;
  for (const group of groups) {
    for (const tierName of tiersWithRequests(results)) {
      const seriesColour = colour(series++);
      for (const metric of spec.metrics) {
        const data: RunPoint[] = [];
        for (const result of group.results) {
          const x = axis.value(result);
          const tier = tierOf(result, tierName);
          const y = tier ? metric.value(tier) : null;
          if (x === null || y === null || !Number.isFinite(y)) continue;
          data.push({ x, y, run: labelOf.get(result)! });
          values.push(y);
        }
        if (data.length === 0) continue;
        data.sort((a, b) => a.x - b.x);
        datasets.push({
          label: [group.label, tierName, metric.name].filter(Boolean).join(' · '),
          data,
          borderColor: seriesColour,
          backgroundColor: seriesColour,
          borderDash: metric.dashed ? [6, 4] : [],
          pointRadius: 3,
          tension: 0,
        });
      }
    }
  }
  const scaleType = yScaleType(values);
  return {
    id: spec.id,
    title: spec.title,
    caption:
      `One line per tier${groups.length > 1 ? ' and configuration' : ''}; x: ${axis.title}.` +
      (scaleType === 'logarithmic'
        ? ' Logarithmic y axis: latency grows by orders of magnitude past saturation.'
        : ''),
    config: {
      type: 'line',
      data: { datasets },
      options: {
        parsing: false,
        scales: {
          x: { type: 'linear', title: axisTitle(axis.title) },
          y: { type: scaleType, title: axisTitle(spec.yTitle) },
        },
      },
    } satisfies ChartConfiguration<'line', RunPoint[]> as unknown as ChartConfiguration,
  };
}

/** Points no other point beats on both axes (higher is better on both), in ascending x. */
export function paretoFrontier<T extends { x: number; y: number }>(points: readonly T[]): T[] {
  const byXDescending = [...points].sort((a, b) => b.x - a.x || b.y - a.y);
  const frontier: T[] = [];
  let bestY = Number.NEGATIVE_INFINITY;
  for (const point of byXDescending) {
    if (point.y > bestY) {
      frontier.push(point);
      bestY = point.y;
    }
  }
  return frontier.reverse();
}

function paretoChart(results: readonly SimulationResult[], labels: readonly string[]): ChartSpec {
  const configurationKeysOnly = varyingKeys(results).filter(
    (key) => !loadKeys.includes(key) && key !== 'replicas',
  );
  const groups = groupRuns(results, configurationKeysOnly);
  const labelOf = new Map(results.map((result, index) => [result, labels[index]!]));
  const everyPoint: RunPoint[] = [];
  const datasets: ChartConfiguration<'scatter', RunPoint[]>['data']['datasets'] = groups.map(
    (group, index) => {
      const data: RunPoint[] = [];
      for (const result of group.results) {
        const x = result.fleet.tokensPerSecondPerUser;
        const y = result.fleet.outputTokensPerSecondPerGpu;
        if (x === null || !Number.isFinite(x) || !Number.isFinite(y)) continue;
        data.push({ x, y, run: labelOf.get(result)! });
      }
      data.sort((a, b) => a.x - b.x);
      everyPoint.push(...data);
      return {
        label: group.label || 'all runs',
        data,
        showLine: true,
        borderColor: colour(index),
        backgroundColor: colour(index),
        pointRadius: 4,
        order: 2,
      };
    },
  );
  datasets.unshift({
    label: 'Pareto frontier',
    data: paretoFrontier(everyPoint),
    showLine: true,
    borderColor: '#111111',
    backgroundColor: 'rgba(17, 17, 17, 0.15)',
    borderWidth: 3,
    pointRadius: 7,
    pointStyle: 'rectRot',
    order: 1,
  });
  return {
    id: 'pareto',
    title: 'Throughput per GPU against interactivity',
    caption:
      'InferenceMAX’s view: each configuration traces a curve as load changes; the black line joins the runs no ' +
      'other run beats on both axes. Up and to the right is better.',
    config: {
      type: 'scatter',
      data: { datasets },
      options: {
        parsing: false,
        scales: {
          x: {
            type: 'linear',
            title: axisTitle('interactivity (output tokens/s per user, 1000 / mean TPOT)'),
          },
          y: { type: 'linear', beginAtZero: true, title: axisTitle('output throughput per GPU (tokens/s)') },
        },
      },
    } satisfies ChartConfiguration<'scatter', RunPoint[]> as unknown as ChartConfiguration,
  };
}

function barChart(
  labels: readonly string[],
  spec: {
    id: string;
    title: string;
    caption: string;
    yTitle: string;
    label: string;
    values: (number | null)[];
  },
  index: number,
): ChartSpec {
  return {
    id: spec.id,
    title: spec.title,
    caption: spec.caption,
    config: {
      type: 'bar',
      data: {
        labels: [...labels],
        datasets: [{ label: spec.label, data: spec.values, backgroundColor: colour(index) }],
      },
      options: {
        plugins: { legend: { display: false } },
        scales: {
          x: { title: axisTitle('run') },
          y: { beginAtZero: true, title: axisTitle(spec.yTitle) },
        },
      },
    } satisfies ChartConfiguration<'bar', (number | null)[], string> as unknown as ChartConfiguration,
  };
}

const joulesPerKwh = 3.6e6;

function sloChart(results: readonly SimulationResult[], labels: readonly string[]): ChartSpec {
  const tiers = tiersWithRequests(results);
  const datasets: ChartConfiguration<'bar' | 'line', (number | null)[], string>['data']['datasets'] =
    tiers.map((tierName, index) => ({
      type: 'bar' as const,
      label: `${tierName} SLO attainment`,
      data: results.map((result) => {
        const tier = tierOf(result, tierName);
        return tier && tier.submitted > 0 ? tier.sloAttainment * 100 : null;
      }),
      backgroundColor: colour(index),
      yAxisID: 'y',
      order: 2,
    }));
  datasets.push({
    type: 'line' as const,
    label: 'goodput, all tiers (req/s)',
    data: results.map((result) => result.overall.goodputRequestsPerSecond),
    borderColor: '#111111',
    backgroundColor: '#111111',
    yAxisID: 'goodput',
    order: 1,
  });
  return {
    id: 'slo',
    title: 'SLO attainment and goodput per run',
    caption:
      'Bars: share of each tier’s completed requests meeting both its TTFT and TPOT targets (left axis). ' +
      'Line: requests per second meeting their targets (DistServe goodput, right axis).',
    config: {
      type: 'bar',
      data: { labels: [...labels], datasets },
      options: {
        scales: {
          x: { title: axisTitle('run') },
          y: { min: 0, max: 100, position: 'left', title: axisTitle('SLO attainment (% of requests)') },
          goodput: {
            type: 'linear',
            position: 'right',
            beginAtZero: true,
            grid: { drawOnChartArea: false },
            title: axisTitle('goodput (requests/s)'),
          },
        },
      },
    } satisfies ChartConfiguration<
      'bar' | 'line',
      (number | null)[],
      string
    > as unknown as ChartConfiguration,
  };
}

function chartSpecs(results: readonly SimulationResult[]): ChartSpec[] {
  const labels = runLabels(results);
  return [
    latencyChart(results, labels, {
      id: 'ttft',
      title: 'Time to first token against load',
      yTitle: 'TTFT (ms)',
      metrics: [
        { name: 'p50', value: (tier) => tier.ttft.p50Ms, dashed: false },
        { name: 'p90', value: (tier) => tier.ttft.p90Ms, dashed: true },
      ],
    }),
    latencyChart(results, labels, {
      id: 'tpot',
      title: 'Time per output token against load',
      yTitle: 'TPOT p50 (ms)',
      metrics: [{ name: 'p50', value: (tier) => tier.tpot.p50Ms, dashed: false }],
    }),
    paretoChart(results, labels),
    barChart(
      labels,
      {
        id: 'cost',
        title: 'Cost per 1M output tokens',
        caption: 'The fleet’s hourly price over the run, divided by the output tokens it produced.',
        yTitle: 'US$ per 1M output tokens',
        label: '$ per 1M output tokens',
        values: results.map((result) => result.fleet.usdPerMillionOutputTokens),
      },
      0,
    ),
    barChart(
      labels,
      {
        id: 'energy',
        title: 'Energy per 1M output tokens',
        caption: 'Modelled fleet energy over the run (idle included), divided by the output tokens.',
        yTitle: 'kWh per 1M output tokens',
        label: 'kWh per 1M output tokens',
        values: results.map((result) =>
          result.fleet.joulesPerOutputToken === null
            ? null
            : (result.fleet.joulesPerOutputToken * 1e6) / joulesPerKwh,
        ),
      },
      3,
    ),
    sloChart(results, labels),
  ];
}

function resultsTable(results: readonly SimulationResult[]): string {
  const keys = varyingKeys(results);
  const headers = [
    ...keys.map((key) => configurationHeaders[key]),
    'tier',
    ...tierColumns.map((column) => column.header.replace('\n', ' ')),
    ...fleetColumns.map((column) => column.header.replace('\n', ' ')),
  ];
  const rows: string[] = [];
  for (const result of results) {
    const configuration = runConfiguration(result);
    const fleetCells = fleetColumns.map((column) => column.cell(result));
    for (const tier of reportedTiers(result)) {
      const isOverall = tier === result.overall;
      const cells = [
        ...keys.map((key) => `<td>${escapeHtml(String(configuration[key] ?? '–'))}</td>`),
        `<td>${escapeHtml(tier.tier)}</td>`,
        ...tierColumns.map((column) => `<td class="number">${escapeHtml(column.cell(tier))}</td>`),
        ...fleetCells.map((cell) => `<td class="number">${isOverall ? escapeHtml(cell) : ''}</td>`),
      ];
      rows.push(`<tr${isOverall ? ' class="overall"' : ''}>${cells.join('')}</tr>`);
    }
  }
  return (
    `<table><thead><tr>${headers.map((header) => `<th>${escapeHtml(header)}</th>`).join('')}</tr></thead>` +
    `<tbody>${rows.join('\n')}</tbody></table>`
  );
}

const styles = `
  :root { color-scheme: light; --ink: #1d1d1f; --muted: #5f6368; --rule: #d9dce1; --band: #f4f6f8; }
  * { box-sizing: border-box; }
  body { margin: 0 auto; max-width: 1400px; padding: 24px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); }
  h1 { font-size: 22px; margin: 0 0 8px; }
  h2 { font-size: 17px; margin: 28px 0 8px; }
  h3 { font-size: 15px; margin: 0 0 4px; }
  code, pre { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
  pre { background: var(--band); padding: 8px 12px; border-radius: 4px; white-space: pre-wrap; word-break: break-all; }
  .muted, .caption { color: var(--muted); }
  .caption { margin: 0 0 8px; font-size: 13px; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 20px; }
  figure { margin: 0; padding: 16px; border: 1px solid var(--rule); border-radius: 6px; }
  .chart-box { position: relative; }
  .table-scroll { overflow-x: auto; border: 1px solid var(--rule); border-radius: 6px; }
  table { border-collapse: collapse; font-size: 13px; white-space: nowrap; }
  th, td { padding: 4px 8px; border-bottom: 1px solid var(--rule); text-align: left; }
  th { position: sticky; top: 0; background: var(--band); }
  td.number { text-align: right; font-variant-numeric: tabular-nums; }
  tr.overall td { border-top: 2px solid var(--rule); font-weight: 600; }
  .warning { padding: 8px 12px; background: #fff4e5; border: 1px solid #f0c36d; border-radius: 4px; }
`;

// Runs in the browser. ES5-compatible, no modules, so it works from file:// in any current browser.
const clientScript = `
(function () {
  var specs = JSON.parse(document.getElementById('chart-configs').textContent);
  if (typeof Chart === 'undefined') {
    document.getElementById('chart-warning').hidden = false;
    return;
  }
  Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 14;
  Chart.defaults.plugins.legend.labels.font = { size: 11 };
  specs.forEach(function (spec) {
    var options = spec.config.options || (spec.config.options = {});
    options.plugins = options.plugins || {};
    options.plugins.tooltip = {
      callbacks: {
        label: function (context) {
          var raw = context.raw || {};
          var run = raw.run ? ' (' + raw.run + ')' : '';
          return context.dataset.label + run + ': ' + context.formattedValue;
        }
      }
    };
    new Chart(document.getElementById(spec.id), spec.config);
  });
})();
`;

/** The whole report as one HTML document. */
export function renderHtmlReport(results: readonly SimulationResult[], meta: HtmlReportMeta): string {
  const specs = results.length > 0 ? chartSpecs(results) : [];
  const figures = specs
    .map(
      (spec) =>
        `<figure><h3>${escapeHtml(spec.title)}</h3><p class="caption">${escapeHtml(spec.caption)}</p>` +
        `<div class="chart-box" style="height: ${chartHeightPx(spec)}px"><canvas id="${spec.id}" role="img" aria-label="${escapeHtml(spec.title)}"></canvas></div></figure>`,
    )
    .join('\n');
  const seeds = [...new Set(results.map((result) => result.seed))].join(', ');
  const hostSeconds = results.reduce((total, result) => total + result.wallSeconds, 0);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(meta.title)}</title>
<style>${styles}</style>
</head>
<body>
<header>
<h1>${escapeHtml(meta.title)}</h1>
<p class="muted">Generated <time datetime="${escapeHtml(meta.generatedAt)}">${escapeHtml(meta.generatedAt)}</time> by</p>
<pre><code>${escapeHtml(meta.command)}</code></pre>
<p>${escapeHtml(sharedConfigurationLine(results))}</p>
</header>
<p id="chart-warning" class="warning" hidden>The charts need JavaScript and the inlined Chart.js; the table below has every figure.</p>
<noscript><p class="warning">The charts need JavaScript; the table below has every figure.</p></noscript>
<section class="charts">
${figures}
</section>
<section>
<h2>Results (${results.length} run${results.length === 1 ? '' : 's'})</h2>
<div class="table-scroll">${resultsTable(results)}</div>
<p class="caption">Latency in milliseconds; SLO % is the share of completed requests meeting both the tier’s TTFT and TPOT targets; fleet figures (per GPU, cost, energy, utilisation, KV use, prefix hits) appear on each run’s <em>all</em> row.</p>
</section>
<section>
<h2>Provenance</h2>
<p>${escapeHtml(energyCostProvenance(results))}</p>
<p class="muted">Every run is one deterministic discrete-event simulation (seed ${escapeHtml(seeds || '–')}); no hardware was used. ${results.length} run${results.length === 1 ? '' : 's'} took ${hostSeconds.toFixed(1)} s of host time. The raw results are embedded in this file as JSON (<code>#simulation-results</code>).</p>
</section>
<script type="application/json" id="simulation-results">${jsonForScriptTag(results)}</script>
<script type="application/json" id="chart-configs">${jsonForScriptTag(specs.map(({ id, config }) => ({ id, config })))}</script>
<script>
${readChartJsBundle()}
</script>
<script>${clientScript}</script>
</body>
</html>
`;
}
