import { quantileOfSorted } from '../core/quantile.js';
import type { UsageRecord } from './usage-record.js';

export const usageGroupKeys = ['tenant', 'model', 'tier', 'engine', 'hour', 'day'] as const;
export type UsageGroupKey = (typeof usageGroupKeys)[number];

/** Totals for one group of records; the same figures back `/v1/usage` and `gravity report`. */
export interface UsageGroup {
  group: Partial<Record<UsageGroupKey, string>>;
  requests: number;
  failedRequests: number;
  promptTokens: number;
  cachedPromptTokens: number;
  completionTokens: number;
  ttftP50Ms: number | null;
  ttftP95Ms: number | null;
  energyJoules: number;
  /** Energy per generated token (the ML.ENERGY convention); null without completion tokens. */
  joulesPerCompletionToken: number | null;
  energySources: string[];
  costUsd: number;
  priceUsd: number;
  marginUsd: number;
  carbonGrams: number;
}

function groupValue(record: UsageRecord, key: UsageGroupKey): string {
  switch (key) {
    case 'hour':
      return `${new Date(record.receivedAtMs).toISOString().slice(0, 13)}:00Z`;
    case 'day':
      return new Date(record.receivedAtMs).toISOString().slice(0, 10);
    case 'engine':
      return record.engine ?? '(none)';
    default:
      return record[key];
  }
}

/** Groups records by the given keys (none: one group of everything) and totals each group. */
export function aggregateUsage(
  records: readonly UsageRecord[],
  groupBy: readonly UsageGroupKey[],
): UsageGroup[] {
  const groups = new Map<string, { group: UsageGroup['group']; records: UsageRecord[] }>();
  for (const record of records) {
    const group: UsageGroup['group'] = {};
    for (const key of groupBy) group[key] = groupValue(record, key);
    const id = JSON.stringify(group);
    let entry = groups.get(id);
    if (!entry) {
      entry = { group, records: [] };
      groups.set(id, entry);
    }
    entry.records.push(record);
  }
  return [...groups.values()].map(({ group, records: members }) => {
    const ttfts = members
      .flatMap((record) => (record.ttftMs === null ? [] : [record.ttftMs]))
      .sort((a, b) => a - b);
    const sum = (
      field:
        | 'promptTokens'
        | 'cachedPromptTokens'
        | 'completionTokens'
        | 'energyJoules'
        | 'costUsd'
        | 'priceUsd'
        | 'marginUsd'
        | 'carbonGrams',
    ) => members.reduce((total, record) => total + record[field], 0);
    const completionTokens = sum('completionTokens');
    const energyJoules = sum('energyJoules');
    return {
      group,
      requests: members.length,
      failedRequests: members.filter((record) => record.status !== 200 || record.errorCode !== null).length,
      promptTokens: sum('promptTokens'),
      cachedPromptTokens: sum('cachedPromptTokens'),
      completionTokens,
      ttftP50Ms: quantileOfSorted(ttfts, 0.5),
      ttftP95Ms: quantileOfSorted(ttfts, 0.95),
      energyJoules,
      joulesPerCompletionToken: completionTokens > 0 ? energyJoules / completionTokens : null,
      energySources: [...new Set(members.map((record) => record.energySource))].sort(),
      costUsd: sum('costUsd'),
      priceUsd: sum('priceUsd'),
      marginUsd: sum('marginUsd'),
      carbonGrams: sum('carbonGrams'),
    };
  });
}

/** The OpenAI-style JSON shape of a group (snake_case), as `/v1/usage` and `gravity report --format json` print it. */
export function usageGroupJson(group: UsageGroup) {
  return {
    ...group.group,
    requests: group.requests,
    failed_requests: group.failedRequests,
    prompt_tokens: group.promptTokens,
    cached_prompt_tokens: group.cachedPromptTokens,
    completion_tokens: group.completionTokens,
    ttft_p50_ms: group.ttftP50Ms,
    ttft_p95_ms: group.ttftP95Ms,
    energy_joules: group.energyJoules,
    joules_per_completion_token: group.joulesPerCompletionToken,
    energy_sources: group.energySources,
    cost_usd: group.costUsd,
    price_usd: group.priceUsd,
    margin_usd: group.marginUsd,
    carbon_grams: group.carbonGrams,
  };
}

/** The figure columns of `usageGroupJson`, in order (after the group keys), for CSV headers. */
export const usageFigureColumns = [
  'requests',
  'failed_requests',
  'prompt_tokens',
  'cached_prompt_tokens',
  'completion_tokens',
  'ttft_p50_ms',
  'ttft_p95_ms',
  'energy_joules',
  'joules_per_completion_token',
  'energy_sources',
  'cost_usd',
  'price_usd',
  'margin_usd',
  'carbon_grams',
] as const satisfies ReadonlyArray<keyof ReturnType<typeof usageGroupJson>>;

/** A replica's periods in a range, totalled. */
export interface ReplicaTotal {
  replica: string;
  energyJoules: number;
  idleEnergyJoules: number;
  /** The energy source of the replica's first period in the range. */
  energySource: string;
  costUsd: number;
  idleCostUsd: number;
}

/**
 * Sums replica periods (the ledger's `ReplicaPeriod`s: each has a total's fields) per replica: what each
 * replica drew in the range, and how much of it was idle. The reference for `LedgerStore.replicaSummary`,
 * which totals in the store.
 */
export function replicaTotals(periods: readonly ReplicaTotal[]): ReplicaTotal[] {
  const totals = new Map<string, ReplicaTotal>();
  for (const period of periods) {
    const total = totals.get(period.replica) ?? {
      replica: period.replica,
      energyJoules: 0,
      idleEnergyJoules: 0,
      energySource: period.energySource,
      costUsd: 0,
      idleCostUsd: 0,
    };
    total.energyJoules += period.energyJoules;
    total.idleEnergyJoules += period.idleEnergyJoules;
    total.costUsd += period.costUsd;
    total.idleCostUsd += period.idleCostUsd;
    totals.set(period.replica, total);
  }
  return [...totals.values()];
}

/** The JSON shape of a replica's totals (snake_case), as `/v1/usage` and `gravity report` print it. */
export function replicaTotalJson(total: ReplicaTotal) {
  return {
    replica: total.replica,
    energy_joules: total.energyJoules,
    idle_energy_joules: total.idleEnergyJoules,
    energy_source: total.energySource,
    cost_usd: total.costUsd,
    idle_cost_usd: total.idleCostUsd,
  };
}
