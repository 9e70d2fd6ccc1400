import type { UsageGroupKey } from '../usage-report.js';
import type { LedgerQuery } from './ledger-store.js';
import { groupKeySql, ttftQuantiles } from './usage-summary-sql.js';

/**
 * `/v1/usage`, `gravity report` and the replica totals as PostgreSQL statements. They give rows of the
 * shape usage-summary-sql.ts's statements give SQLite (`usageGroupsFromRows` and `replicaTotalsFromRows`
 * turn both into groups), so the two stores share the rendering and must only agree on the figures:
 * the conformance suite checks them against `aggregateUsage`.
 */

export interface PostgresStatement {
  sql: string;
  params: Array<string | number>;
}

/** `$1`/`$2` the range, `$3` the tenant when the query names one. */
function rangeFilter(query: LedgerQuery, alias: string): { where: string; params: Array<string | number> } {
  const params: Array<string | number> = [query.fromMs ?? 0, query.toMs ?? Number.MAX_SAFE_INTEGER];
  let where = `${alias}.received_at_ms >= $1 AND ${alias}.received_at_ms < $2`;
  if (query.tenant !== undefined) {
    where += ` AND ${alias}.tenant = $3`;
    params.push(query.tenant);
  }
  return { where, params };
}

/**
 * One statement: each group's totals, its TTFT quantiles (`percentile_cont` interpolates between the two
 * closest ranks, type 7, the arithmetic of src/core/quantile.ts) as the JSON array `usageGroupsFromRows`
 * reads, and its energy sources as a JSON array. Groups are listed in the order of their first record
 * (received_at_ms, then request_id), as aggregateUsage lists them: the earliest time comes with the
 * aggregate; the smallest request id at that millisecond from the index on received_at_ms.
 */
export function postgresUsageSummaryStatement(
  query: LedgerQuery,
  groupBy: readonly UsageGroupKey[],
): PostgresStatement {
  const { where, params } = rangeFilter(query, 'r');
  const keys = groupBy.map((key, index) => ({ key, alias: `g${index}`, sql: groupKeySql(key, 'r') }));
  const keyColumns = keys.map(({ alias, sql }) => `${sql} AS ${alias}, `).join('');
  const groupClause = keys.length === 0 ? '' : `GROUP BY ${keys.map(({ alias }) => alias).join(', ')}`;
  const firstRequestIdSql = `(SELECT MIN(f.request_id) FROM usage_records f WHERE f.received_at_ms = groups.first_ms${
    query.tenant === undefined ? '' : ' AND f.tenant = $3'
  }${keys.map(({ key, alias }) => ` AND ${groupKeySql(key, 'f')} = groups.${alias}`).join('')})`;
  const quantiles = ttftQuantiles
    .map((quantile) => `percentile_cont(${quantile}) WITHIN GROUP (ORDER BY r.ttft_ms)`)
    .join(', ');
  return {
    // HAVING keeps an empty range without GROUP BY from answering one group of zero requests.
    sql: `WITH groups AS (
        SELECT ${keyColumns}
          COUNT(*) AS requests,
          COUNT(*) FILTER (WHERE r.status <> 200 OR r.error_code IS NOT NULL) AS failed_requests,
          SUM(r.prompt_tokens) AS prompt_tokens,
          SUM(r.cached_prompt_tokens) AS cached_prompt_tokens,
          SUM(r.completion_tokens) AS completion_tokens,
          COUNT(r.ttft_ms) AS ttft_count,
          json_build_array(${quantiles})::text AS ttft_quantiles,
          SUM(r.energy_joules) AS energy_joules,
          json_agg(DISTINCT r.energy_source)::text AS energy_sources,
          SUM(r.cost_usd) AS cost_usd,
          SUM(r.price_usd) AS price_usd,
          SUM(r.margin_usd) AS margin_usd,
          SUM(r.carbon_grams) AS carbon_grams,
          MIN(r.received_at_ms) AS first_ms
        FROM usage_records r WHERE ${where} ${groupClause} HAVING COUNT(*) > 0)
      SELECT groups.*, ${firstRequestIdSql} AS first_request_id FROM groups
      ORDER BY groups.first_ms, first_request_id`,
    params,
  };
}

/**
 * Each replica's periods in the range, totalled; replicas in the order of their first period, each with
 * its first period's energy source (DISTINCT ON picks that row, as SQLite's bare column beside MIN does).
 */
export function postgresReplicaSummaryStatement(query: Omit<LedgerQuery, 'tenant'>): PostgresStatement {
  const range = 'period_start_ms >= $1 AND period_start_ms < $2';
  return {
    sql: `WITH totals AS (
        SELECT replica, MIN(period_start_ms) AS first_start_ms,
          SUM(energy_joules) AS energy_joules, SUM(idle_energy_joules) AS idle_energy_joules,
          SUM(cost_usd) AS cost_usd, SUM(idle_cost_usd) AS idle_cost_usd
        FROM replica_periods WHERE ${range} GROUP BY replica),
      firsts AS (
        SELECT DISTINCT ON (replica) replica, energy_source FROM replica_periods
        WHERE ${range} ORDER BY replica, period_start_ms)
      SELECT totals.*, firsts.energy_source FROM totals JOIN firsts USING (replica)
      ORDER BY totals.first_start_ms, totals.replica`,
    params: [query.fromMs ?? 0, query.toMs ?? Number.MAX_SAFE_INTEGER],
  };
}
