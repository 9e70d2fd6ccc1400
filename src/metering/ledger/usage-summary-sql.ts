import type { ReplicaTotal, UsageGroup, UsageGroupKey } from '../usage-report.js';
import type { LedgerQuery } from './ledger-store.js';

/**
 * `/v1/usage` and `gravity report` as SQL: the ledger totals its groups itself, so a query holds a row
 * per group, never a row per record. The statements are plain data (SQL text and parameters) so that
 * the same ones run on the gateway's connection (an in-memory ledger) or on a reader thread's (a file).
 * They must give exactly what `aggregateUsage` gives over `records()` (checked by the conformance suite),
 * groups in the same order: the order in which each group's first record appears.
 */

export interface SqlStatement {
  sql: string;
  params: Record<string, string | number>;
}

export type SqlRow = Record<string, string | number | null>;

const hourMs = 3_600_000;
const dayMs = 86_400_000;

/** The start (epoch ms) of the hour or day a row's `received_at_ms` falls in, floored also below 1970. */
function flooredSql(column: string, unitMs: number): string {
  return `(${column} - ((${column} % ${unitMs}) + ${unitMs}) % ${unitMs})`;
}

/**
 * A group key's value as SQL over the columns of `alias`; hours and days stay numbers until rendered.
 * The same text in SQLite and PostgreSQL (postgres-summary-sql.ts), so both group alike.
 */
export function groupKeySql(key: UsageGroupKey, alias: string): string {
  switch (key) {
    case 'hour':
      return flooredSql(`${alias}.received_at_ms`, hourMs);
    case 'day':
      return flooredSql(`${alias}.received_at_ms`, dayMs);
    case 'engine':
      return `COALESCE(${alias}.engine, '(none)')`;
    default:
      return `${alias}.${key}`;
  }
}

/** A group key's value as `aggregateUsage` writes it (hours `2026-12-02T21:00Z`, days `2026-12-02`). */
function renderGroupKey(key: UsageGroupKey, value: string | number | null): string {
  if (key === 'hour') return `${new Date(Number(value)).toISOString().slice(0, 13)}:00Z`;
  if (key === 'day') return new Date(Number(value)).toISOString().slice(0, 10);
  return String(value);
}

function rangeFilter(query: LedgerQuery, alias: string): { where: string; params: SqlStatement['params'] } {
  const params: SqlStatement['params'] = {
    fromMs: query.fromMs ?? 0,
    toMs: query.toMs ?? Number.MAX_SAFE_INTEGER,
  };
  let where = `${alias}.received_at_ms >= @fromMs AND ${alias}.received_at_ms < @toMs`;
  if (query.tenant !== undefined) {
    where += ` AND ${alias}.tenant = @tenant`;
    params.tenant = query.tenant;
  }
  return { where, params };
}

/** The TTFT quantiles each group reports (p50, p95), in the order of `ttftQuantilesFunction`'s answer. */
export const ttftQuantiles = [0.5, 0.95] as const;

/**
 * An aggregate a reader thread registers on its connection: a group's TTFT quantiles as a JSON array
 * (`ttftQuantiles`' order), or NULL when the query's samples passed its bound and the window statement
 * must answer instead. See `LedgerReaderThread`.
 */
export const ttftQuantilesFunction = 'gravity_ttft_quantiles';

/**
 * Two statements: the totals of each group, and the few TTFT samples each group's p50 and p95 lie
 * between. Both stream through SQLite's sorter, which spills to temporary files past its cache, so the
 * memory a query takes does not grow with the ledger. With `ttftAggregate`, the totals also carry each
 * group's quantiles from `ttftQuantilesFunction` (one scan, no sort of the samples by SQLite); the second
 * statement is then only needed when that answers NULL.
 */
export function usageSummaryStatements(
  query: LedgerQuery,
  groupBy: readonly UsageGroupKey[],
  options: { ttftAggregate: boolean },
): [totals: SqlStatement, ttftSamples: SqlStatement] {
  const { where, params } = rangeFilter(query, 'r');
  const keys = groupBy.map((key, index) => ({ key, alias: `g${index}`, sql: groupKeySql(key, 'r') }));
  const keyColumns = keys.map(({ alias, sql }) => `${sql} AS ${alias}, `).join('');
  const groupClause = keys.length === 0 ? '' : `GROUP BY ${keys.map(({ alias }) => alias).join(', ')}`;
  // Groups are listed in the order of their first record (received_at_ms, then request_id), as
  // aggregateUsage lists them: the earliest time comes with the aggregate; among records at that one
  // millisecond, the index on received_at_ms finds the smallest request id cheaply.
  const firstRequestIdSql = `(SELECT MIN(f.request_id) FROM usage_records f WHERE f.received_at_ms = groups.first_ms${
    query.tenant === undefined ? '' : ' AND f.tenant = @tenant'
  }${keys.map(({ key, alias }) => ` AND ${groupKeySql(key, 'f')} = groups.${alias}`).join('')})`;
  const totals: SqlStatement = {
    sql: `WITH groups AS (
        SELECT ${keyColumns}
          COUNT(*) AS requests,
          SUM(r.status != 200 OR r.error_code IS NOT NULL) AS failed_requests,
          SUM(r.prompt_tokens) AS prompt_tokens,
          SUM(r.cached_prompt_tokens) AS cached_prompt_tokens,
          SUM(r.completion_tokens) AS completion_tokens,
          COUNT(r.ttft_ms) AS ttft_count,
          TOTAL(r.energy_joules) AS energy_joules,
          json_group_array(DISTINCT r.energy_source) AS energy_sources,
          TOTAL(r.cost_usd) AS cost_usd,
          TOTAL(r.price_usd) AS price_usd,
          TOTAL(r.margin_usd) AS margin_usd,
          TOTAL(r.carbon_grams) AS carbon_grams,
          MIN(r.received_at_ms) AS first_ms${
            options.ttftAggregate ? `, ${ttftQuantilesFunction}(r.ttft_ms) AS ttft_quantiles` : ''
          }
        FROM usage_records r WHERE ${where} ${groupClause})
      SELECT groups.*, ${firstRequestIdSql} AS first_request_id FROM groups
      WHERE groups.requests > 0 ORDER BY groups.first_ms, first_request_id`,
    params,
  };
  // Type-7 quantiles (src/core/quantile.ts) need the samples at ranks floor((n − 1)·q) and the one
  // after; a window numbers each group's samples in order and keeps only those (four rows a group).
  const partition = keys.length === 0 ? '' : `PARTITION BY ${keys.map(({ alias }) => alias).join(', ')}`;
  const wantedRanks = ttftQuantiles
    .flatMap((quantile) => [
      `CAST((n - 1) * ${quantile} AS INTEGER)`,
      `CAST((n - 1) * ${quantile} AS INTEGER) + 1`,
    ])
    .join(', ');
  const ttftSamples: SqlStatement = {
    sql: `SELECT ${keys.map(({ alias }) => `${alias}, `).join('')}rank, ttft_ms FROM (
        SELECT ${keys.map(({ alias }) => `${alias}, `).join('')}ttft_ms,
          ROW_NUMBER() OVER (${partition} ORDER BY ttft_ms) - 1 AS rank,
          COUNT(*) OVER (${partition}) AS n
        FROM (SELECT ${keyColumns}r.ttft_ms AS ttft_ms FROM usage_records r
              WHERE ${where} AND r.ttft_ms IS NOT NULL))
      WHERE rank IN (${wantedRanks})`,
    params,
  };
  return [totals, ttftSamples];
}

/**
 * The groups, from the rows of `usageSummaryStatements`' statements: the quantiles the totals carry, or
 * else those the TTFT samples give.
 */
export function usageGroupsFromRows(
  groupBy: readonly UsageGroupKey[],
  totalsRows: readonly SqlRow[],
  ttftRows: readonly SqlRow[],
): UsageGroup[] {
  const groupId = (row: SqlRow) => JSON.stringify(groupBy.map((_, index) => row[`g${index}`]));
  const samplesByGroup = new Map<string, Map<number, number>>();
  for (const row of ttftRows) {
    const id = groupId(row);
    let samples = samplesByGroup.get(id);
    if (!samples) {
      samples = new Map();
      samplesByGroup.set(id, samples);
    }
    samples.set(Number(row.rank), Number(row.ttft_ms));
  }
  return totalsRows.map((row) => {
    const group: UsageGroup['group'] = {};
    groupBy.forEach((key, index) => {
      group[key] = renderGroupKey(key, row[`g${index}`] ?? null);
    });
    const samples = samplesByGroup.get(groupId(row));
    const ttftCount = Number(row.ttft_count);
    const aggregated =
      typeof row.ttft_quantiles === 'string'
        ? (JSON.parse(row.ttft_quantiles) as Array<number | null>)
        : null;
    const quantile = (q: (typeof ttftQuantiles)[number]): number | null => {
      if (aggregated) return aggregated[ttftQuantiles.indexOf(q)] ?? null;
      if (ttftCount === 0 || !samples) return null;
      // The same arithmetic as quantileOfSorted, over the two samples SQL kept.
      const position = (ttftCount - 1) * q;
      const lower = Math.floor(position);
      const low = samples.get(lower) as number;
      const high = samples.get(Math.ceil(position)) as number;
      return low + (high - low) * (position - lower);
    };
    const completionTokens = Number(row.completion_tokens);
    const energyJoules = Number(row.energy_joules);
    return {
      group,
      requests: Number(row.requests),
      failedRequests: Number(row.failed_requests),
      promptTokens: Number(row.prompt_tokens),
      cachedPromptTokens: Number(row.cached_prompt_tokens),
      completionTokens,
      ttftP50Ms: quantile(0.5),
      ttftP95Ms: quantile(0.95),
      energyJoules,
      joulesPerCompletionToken: completionTokens > 0 ? energyJoules / completionTokens : null,
      energySources: (JSON.parse(String(row.energy_sources)) as string[]).sort(),
      costUsd: Number(row.cost_usd),
      priceUsd: Number(row.price_usd),
      marginUsd: Number(row.margin_usd),
      carbonGrams: Number(row.carbon_grams),
    };
  });
}

/**
 * Each replica's periods in the range, totalled; replicas in the order of their first period, each
 * with its first period's energy source (SQLite takes a bare column from the row MIN() picked).
 */
export function replicaSummaryStatement(query: Omit<LedgerQuery, 'tenant'>): SqlStatement {
  return {
    sql: `SELECT replica, MIN(period_start_ms) AS first_start_ms, energy_source,
        TOTAL(energy_joules) AS energy_joules, TOTAL(idle_energy_joules) AS idle_energy_joules,
        TOTAL(cost_usd) AS cost_usd, TOTAL(idle_cost_usd) AS idle_cost_usd
      FROM replica_periods WHERE period_start_ms >= @fromMs AND period_start_ms < @toMs
      GROUP BY replica ORDER BY first_start_ms, replica`,
    params: { fromMs: query.fromMs ?? 0, toMs: query.toMs ?? Number.MAX_SAFE_INTEGER },
  };
}

export function replicaTotalsFromRows(rows: readonly SqlRow[]): ReplicaTotal[] {
  return rows.map((row) => ({
    replica: String(row.replica),
    energyJoules: Number(row.energy_joules),
    idleEnergyJoules: Number(row.idle_energy_joules),
    energySource: String(row.energy_source),
    costUsd: Number(row.cost_usd),
    idleCostUsd: Number(row.idle_cost_usd),
  }));
}
