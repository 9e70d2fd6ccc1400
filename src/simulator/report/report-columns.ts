import type { SimulationResult, TierResult } from '../simulation-result.js';

/**
 * The figures every simulation report shows, defined once so the terminal table and the HTML table
 * agree on headers, order and rounding. Headers carry their units; `\n` splits a header over two lines
 * in the terminal (the HTML table shows it as a space).
 */

/** Three significant figures, no exponent for ordinary magnitudes; `–` for missing values. */
export function formatSignificant(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  if (value === 0) return '0';
  const magnitude = Math.floor(Math.log10(Math.abs(value)));
  if (magnitude < -6) return value.toExponential(digits - 1);
  return value.toFixed(Math.max(0, digits - 1 - magnitude));
}

/** A share in [0, 1] as a percentage with one decimal. */
export function formatPercent(share: number | null | undefined): string {
  if (share === null || share === undefined || !Number.isFinite(share)) return '–';
  return (share * 100).toFixed(1);
}

/** Large counts with an SI suffix: 1234567 → `1.23M`. */
export function formatCompact(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  const magnitude = Math.abs(value);
  if (magnitude >= 1e9) return `${formatSignificant(value / 1e9)}G`;
  if (magnitude >= 1e6) return `${formatSignificant(value / 1e6)}M`;
  if (magnitude >= 1e4) return `${formatSignificant(value / 1e3)}k`;
  return formatSignificant(value);
}

export interface TierColumn {
  header: string;
  cell: (tier: TierResult) => string;
}

export interface FleetColumn {
  header: string;
  cell: (result: SimulationResult) => string;
}

/**
 * Per-tier latency, throughput and goodput: one value per run × tier. Latencies past saturation run to six
 * digits of milliseconds; `212k` reads faster than `212337` in a narrow column.
 */
export const refusedColumnHeader = 'refused\n%';
/** Refused because no replica serves a feature the request uses (a mixed fleet); part of `refused`. */
export const unservedColumnHeader = 'unserved\n%';

export const tierColumns: readonly TierColumn[] = [
  { header: 'req/s', cell: (tier) => formatSignificant(tier.requestsPerSecond) },
  { header: 'goodput\nreq/s', cell: (tier) => formatSignificant(tier.goodputRequestsPerSecond) },
  { header: 'SLO\n%', cell: (tier) => formatPercent(tier.sloAttainment) },
  {
    header: refusedColumnHeader,
    cell: (tier) => formatPercent(tier.submitted > 0 ? tier.rejected / tier.submitted : 0),
  },
  {
    header: unservedColumnHeader,
    cell: (tier) => formatPercent(tier.submitted > 0 ? tier.unserved / tier.submitted : 0),
  },
  { header: 'TTFT\np50 ms', cell: (tier) => formatCompact(tier.ttft.p50Ms) },
  { header: 'TTFT\np90 ms', cell: (tier) => formatCompact(tier.ttft.p90Ms) },
  { header: 'TTFT\np99 ms', cell: (tier) => formatCompact(tier.ttft.p99Ms) },
  { header: 'TPOT\np50 ms', cell: (tier) => formatCompact(tier.tpot.p50Ms) },
  { header: 'TPOT\np90 ms', cell: (tier) => formatCompact(tier.tpot.p90Ms) },
  { header: 'ITL\np50 ms', cell: (tier) => formatCompact(tier.itl.p50Ms) },
  { header: 'ITL\np99 ms', cell: (tier) => formatCompact(tier.itl.p99Ms) },
  { header: 'E2E\np50 ms', cell: (tier) => formatCompact(tier.e2e.p50Ms) },
  { header: 'queue\np50 ms', cell: (tier) => formatCompact(tier.queue.p50Ms) },
  { header: 'output\ntok/s', cell: (tier) => formatSignificant(tier.outputTokensPerSecond) },
];

/** Fleet-wide figures: one value per run, shown only beside the run's `all` row. */
export const fleetColumns: readonly FleetColumn[] = [
  { header: 'tok/s\nper GPU', cell: (result) => formatSignificant(result.fleet.outputTokensPerSecondPerGpu) },
  {
    header: '$ per 1M\nout tok',
    cell: (result) => formatSignificant(result.fleet.usdPerMillionOutputTokens),
  },
  { header: 'J per\nout tok', cell: (result) => formatSignificant(result.fleet.joulesPerOutputToken) },
  { header: 'out tok\nper kWh', cell: (result) => formatCompact(result.fleet.outputTokensPerKwh) },
  { header: 'util\n%', cell: (result) => formatPercent(result.fleet.utilisation) },
  { header: 'mean KV\nuse %', cell: (result) => formatPercent(result.fleet.meanKvUse) },
  { header: 'prefix\nhit %', cell: (result) => formatPercent(result.fleet.prefixHitRate) },
];

/** The run's overall row first, then each tier that had requests. */
export function reportedTiers(result: SimulationResult): TierResult[] {
  return [result.overall, ...result.tiers.filter((tier) => tier.tier !== 'all' && tier.submitted > 0)];
}

function distinct(values: Iterable<string>): string[] {
  return [...new Set(values)];
}

/**
 * Where the joules and dollars come from, in one line: the simulator never measures them, so every
 * report says which model produced them and which price list it used.
 */
export function energyCostProvenance(results: readonly SimulationResult[]): string {
  const energySources = distinct(results.map((result) => result.fleet.energySource));
  return (
    `J and $ are estimated by the performance model, not measured (energy: ${energySources.join(', ') || 'none'}; ` +
    `cost: ${mergeSources(results.map((result) => result.fleet.costSource)) || 'none'}); ` +
    'hourly prices from src/performance-model/hardware-profiles.ts.'
  );
}

/** `m (a)`, `m (b)` → `m (a; b)`: one cost model priced per hardware reads once, not once per GPU type. */
function mergeSources(sources: readonly string[]): string {
  const details = new Map<string, string[]>();
  for (const source of distinct(sources)) {
    const match = /^(.*?) \((.*)\)$/.exec(source);
    const [name, detail] = match ? [match[1]!, match[2]!] : [source, undefined];
    const list = details.get(name) ?? [];
    if (detail !== undefined) list.push(detail);
    details.set(name, list);
  }
  return [...details]
    .map(([name, list]) => (list.length > 0 ? `${name} (${list.join('; ')})` : name))
    .join(', ');
}
