/** Number formats, one per unit, so the same figure reads the same everywhere on the page. */

export const tierColours: Readonly<Record<string, string>> = {
  priority: '#9c27b0',
  default: '#1f77b4',
  flex: '#2ca02c',
  batch: '#e07b00',
};

export function tierColour(tier: string): string {
  return tierColours[tier] ?? '#666666';
}

export function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

export function formatRate(value: number): string {
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

export function formatMs(value: number | null): string {
  if (value === null) return '—';
  return value >= 100 ? `${value.toFixed(0)} ms` : `${value.toFixed(1)} ms`;
}

export function formatUsd(value: number | null): string {
  if (value === null) return '—';
  const digits = Math.abs(value) >= 1 ? 2 : 6;
  return `${value < 0 ? '−' : ''}$${Math.abs(value).toFixed(digits)}`;
}

export function formatJoules(value: number | null): string {
  if (value === null) return '—';
  if (Math.abs(value) >= 1_000_000) return `${(value / 1_000_000).toFixed(2)} MJ`;
  if (Math.abs(value) >= 1_000) return `${(value / 1_000).toFixed(2)} kJ`;
  return `${value.toFixed(2)} J`;
}

export function formatPercent(fraction: number | null): string {
  return fraction === null ? '—' : `${(fraction * 100).toFixed(1)} %`;
}

/**
 * Where energy figures come from: `measured:nvml` and `measured:rapl` are read from the hardware, the
 * rest are modelled. Shown next to every joule figure.
 */
export function energyProvenance(allSources: readonly string[]): string {
  // `none`: a request refused before it ran drew nothing, so it says nothing about where joules come from.
  const sources = allSources.filter((source) => source !== 'none');
  const kinds = new Set(sources.map((source) => source.split(':')[0]));
  if (sources.length === 0) return 'no energy data';
  const detail = sources
    .map((source) => (kinds.size === 1 ? source.slice(source.indexOf(':') + 1) : source))
    .join(', ');
  if (kinds.size === 1 && kinds.has('measured')) return `measured (${detail})`;
  if (kinds.size === 1 && kinds.has('estimated')) return `estimated (${detail})`;
  return `mixed (${detail})`;
}

export function timeOfDay(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(11, 19);
}
