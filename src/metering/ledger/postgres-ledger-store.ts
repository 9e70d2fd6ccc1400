import type { Sql, TransactionSql } from 'postgres';
import { defaults } from '../../core/defaults.js';
import { errors } from '../../core/errors.js';
import type { UsageRecord } from '../usage-record.js';
import type { ReplicaTotal, UsageGroup, UsageGroupKey } from '../usage-report.js';
import {
  defaultReplayPageSize,
  type LedgerQuery,
  type LedgerStore,
  type ReplayOptions,
  type ReplicaPeriod,
} from './ledger-store.js';
import { migratedPostgres, postgresConnection } from './postgres-migrations.js';
import { postgresReplicaSummaryStatement, postgresUsageSummaryStatement } from './postgres-summary-sql.js';
import { recordColumns } from './record-columns.js';
import { replicaTotalsFromRows, type SqlRow, usageGroupsFromRows } from './usage-summary-sql.js';

const recordColumnNames = recordColumns.map(([column]) => column);
const recordSelectList = recordColumns.map(([column, field]) => `${column} AS "${field}"`).join(', ');

/**
 * Records in one INSERT: a statement takes at most 65,535 parameters and a record is 36 (its columns and
 * its request id's row), so larger batches go as several statements, in one transaction.
 */
const rowsPerInsert = 1_000;

const dayMs = 86_400_000;
const hourMs = 3_600_000;

/** The prefix of each day's partition of `usage_records`; the day follows as YYYYMMDD (UTC). */
const partitionPrefix = 'usage_records_d';

/**
 * The advisory lock taken while creating or dropping a day's partition ("glpd" in ASCII), so that
 * replicas creating the same new day at midnight, or one creating while another drops, never collide.
 */
const partitionLockKey = 0x676c7064;

export interface PostgresLedgerStoreOptions {
  /** Apply pending migrations at open (default); false: refuse to open a schema that is behind. */
  migrate?: boolean;
  /** Days of records kept: whole day partitions older are dropped at open and every hour. null: all kept. */
  retentionDays?: number | null;
  /** Usage and replica summaries running or waiting at once; one more is refused with a 503. */
  maxPendingSummaries?: number;
}

/**
 * The ledger in PostgreSQL, for gateways running as several replicas: each appends its batches (one
 * multi-row INSERT per batch, committed before `append` resolves, ADR 0001) and every replica reads the
 * same totals, aggregated by the server.
 *
 * Two small pools: the writer's (appends, replica periods, admission's spend reads, all short and on the
 * request path) and the reader's (summaries over ranges that may take seconds), so that an append never
 * queues behind a long `/v1/usage` query for a connection.
 */
export class PostgresLedgerStore implements LedgerStore {
  /** Days (their start, epoch ms) whose partition this process knows exists. */
  private readonly knownDays = new Set<number>();
  private pendingSummaries = 0;
  private retentionTimer: NodeJS.Timeout | undefined;
  /** The last failure of the hourly retention pass, if any (it retries the next hour). */
  lastRetentionError: Error | undefined;

  private constructor(
    private readonly writer: Sql,
    private readonly reader: Sql,
    private readonly retentionDays: number | null,
    private readonly maxPendingSummaries: number,
  ) {}

  /**
   * Connects (failing with an error naming the URL, password hidden, when the server cannot be
   * reached), migrates or checks the schema, and starts retention when `retentionDays` is set.
   */
  static async open(url: string, options: PostgresLedgerStoreOptions = {}): Promise<PostgresLedgerStore> {
    const writer = await migratedPostgres(url, { migrate: options.migrate ?? true, max: 2 });
    const reader = await postgresConnection(url, { max: 2 }).catch(async (error: unknown) => {
      await writer.end({ timeout: 0 });
      throw error;
    });
    const store = new PostgresLedgerStore(
      writer,
      reader,
      options.retentionDays ?? null,
      options.maxPendingSummaries ?? defaults.metering.maxPendingUsageQueries,
    );
    if (store.retentionDays !== null) {
      await store.dropExpired(Date.now()).catch(async (error: unknown) => {
        await store.close();
        throw error;
      });
      store.retentionTimer = setInterval(() => {
        store.dropExpired(Date.now()).then(
          () => {
            store.lastRetentionError = undefined;
          },
          (error: Error) => {
            store.lastRetentionError = error;
          },
        );
      }, hourMs);
      store.retentionTimer.unref();
    }
    return store;
  }

  /**
   * Appends the batch atomically: its request ids (a duplicate, in the batch or already in the ledger on
   * any day, fails it all) and its records as one multi-row INSERT — one statement, or one transaction of
   * several past `rowsPerInsert` records. Resolves after COMMIT. A day's partition that another
   * replica's retention dropped meanwhile is created again.
   */
  async append(records: readonly UsageRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.ensurePartitions(records);
    try {
      await this.insertRecords(records);
    } catch (error) {
      // 23514: no partition for a row — this process believed the day existed, but it was dropped.
      if ((error as { code?: string }).code !== '23514') throw error;
      this.knownDays.clear();
      await this.ensurePartitions(records);
      await this.insertRecords(records);
    }
  }

  private async insertRecords(records: readonly UsageRecord[]): Promise<void> {
    // One statement is atomic on its own: a batch that fits in one needs no BEGIN/COMMIT round trips
    // (bench:ledger, batches of 16: about 16,000 rows/s with them, 23,000 without).
    if (records.length <= rowsPerInsert) return this.insertChunk(this.writer, records);
    await this.writer.begin(async (transaction) => {
      for (let start = 0; start < records.length; start += rowsPerInsert)
        await this.insertChunk(transaction, records.slice(start, start + rowsPerInsert));
    });
  }

  /**
   * The request ids and the records in one statement: the ids' insert runs as a data-modifying WITH
   * (executed whether or not the outer query reads it), so a duplicate id fails the records' insert too.
   */
  private async insertChunk(sql: Sql | TransactionSql, records: readonly UsageRecord[]): Promise<void> {
    const ids = records.map((record) => ({
      request_id: record.requestId,
      received_at_ms: record.receivedAtMs,
    }));
    await sql`WITH ids AS (INSERT INTO usage_request_ids ${sql(ids, 'request_id', 'received_at_ms')})
      INSERT INTO usage_records ${sql(records.map(recordRow), recordColumnNames)}`;
  }

  /** Creates the partition of each day the batch touches that this process has not seen yet. */
  private async ensurePartitions(records: readonly UsageRecord[]): Promise<void> {
    const days = new Set<number>();
    for (const record of records) {
      const dayStartMs = floorToDay(record.receivedAtMs);
      if (!this.knownDays.has(dayStartMs)) days.add(dayStartMs);
    }
    for (const dayStartMs of days) {
      // Under the lock, IF NOT EXISTS settles a race between replicas creating the same day (without
      // it, both can pass the existence check and the second fails on the catalogue's unique index).
      await this.writer.begin(async (transaction) => {
        await transaction`SELECT pg_advisory_xact_lock(${partitionLockKey})`;
        await transaction.unsafe(
          `CREATE TABLE IF NOT EXISTS ${partitionName(dayStartMs)} PARTITION OF usage_records
           FOR VALUES FROM (${dayStartMs}) TO (${dayStartMs + dayMs})`,
        );
      });
      this.knownDays.add(dayStartMs);
    }
  }

  async appendReplicaPeriods(periods: readonly ReplicaPeriod[]): Promise<void> {
    if (periods.length === 0) return;
    const rows = periods.map((period) => ({
      replica: period.replica,
      period_start_ms: period.periodStartMs,
      period_end_ms: period.periodEndMs,
      energy_joules: period.energyJoules,
      idle_energy_joules: period.idleEnergyJoules,
      energy_source: period.energySource,
      cost_usd: period.costUsd,
      idle_cost_usd: period.idleCostUsd,
    }));
    await this.writer`INSERT INTO replica_periods ${this.writer(rows)}`;
  }

  /**
   * Drops each day partition that ends at or before `nowMs` − retentionDays, with its request ids and
   * the replica periods that started before the kept days; returns how many partitions were dropped.
   * Without retention it drops nothing.
   */
  async dropExpired(nowMs: number): Promise<number> {
    if (this.retentionDays === null) return 0;
    const cutoffMs = nowMs - this.retentionDays * dayMs;
    const partitions = await this.writer<Array<{ name: string }>>`
      SELECT child.relname AS name FROM pg_inherits
      JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
      JOIN pg_class child ON child.oid = pg_inherits.inhrelid
      WHERE parent.relname = 'usage_records' AND parent.relnamespace = to_regnamespace(current_schema())`;
    const expiredDays = partitions
      .map(({ name }) => dayOfPartition(name))
      .filter((dayStartMs): dayStartMs is number => dayStartMs !== null && dayStartMs + dayMs <= cutoffMs)
      .sort((a, b) => a - b);
    for (const dayStartMs of expiredDays) {
      await this.writer.begin(async (transaction) => {
        await transaction`SELECT pg_advisory_xact_lock(${partitionLockKey})`;
        await transaction`DELETE FROM usage_request_ids
          WHERE received_at_ms >= ${dayStartMs} AND received_at_ms < ${dayStartMs + dayMs}`;
        await transaction.unsafe(`DROP TABLE IF EXISTS ${partitionName(dayStartMs)}`);
      });
      this.knownDays.delete(dayStartMs);
    }
    if (expiredDays.length > 0) {
      const keptFromMs = (expiredDays.at(-1) as number) + dayMs;
      await this.writer`DELETE FROM replica_periods WHERE period_start_ms < ${keptFromMs}`;
    }
    return expiredDays.length;
  }

  async records(query: LedgerQuery): Promise<UsageRecord[]> {
    const params: Array<string | number> = [query.fromMs ?? 0, query.toMs ?? Number.MAX_SAFE_INTEGER];
    if (query.tenant !== undefined) params.push(query.tenant);
    return (await this.reader.unsafe(
      `SELECT ${recordSelectList} FROM usage_records WHERE received_at_ms >= $1 AND received_at_ms < $2
       ${query.tenant === undefined ? '' : 'AND tenant = $3'} ORDER BY received_at_ms, request_id`,
      params,
    )) as unknown as UsageRecord[];
  }

  /**
   * Keyset pages on the reader's pool: each page one indexed range read of `pageSize` rows, and no
   * cursor or transaction held between pages, so a replay of the whole ledger never pins a connection
   * (or old row versions) while the simulator consumes it.
   */
  async *replayRequests(query: LedgerQuery, options: ReplayOptions = {}): AsyncGenerator<UsageRecord> {
    const pageSize = options.pageSize ?? defaultReplayPageSize;
    // The first page: every id at fromMs is after the empty one.
    let afterMs = query.fromMs ?? 0;
    let afterId = '';
    for (;;) {
      const params: Array<string | number> = [
        query.toMs ?? Number.MAX_SAFE_INTEGER,
        afterMs,
        afterId,
        pageSize,
      ];
      if (query.tenant !== undefined) params.push(query.tenant);
      const rows = (await this.reader.unsafe(
        `SELECT ${recordSelectList} FROM usage_records WHERE status = 200 AND received_at_ms < $1
           AND (received_at_ms, request_id) > ($2, $3)
           ${query.tenant === undefined ? '' : 'AND tenant = $5'}
         ORDER BY received_at_ms, request_id LIMIT $4`,
        params,
      )) as unknown as UsageRecord[];
      yield* rows;
      const last = rows.at(-1);
      if (!last || rows.length < pageSize) return;
      afterMs = last.receivedAtMs;
      afterId = last.requestId;
    }
  }

  async replicaPeriods(query: Omit<LedgerQuery, 'tenant'>): Promise<ReplicaPeriod[]> {
    return (await this.reader`
      SELECT replica, period_start_ms AS "periodStartMs", period_end_ms AS "periodEndMs",
        energy_joules AS "energyJoules", idle_energy_joules AS "idleEnergyJoules", energy_source AS "energySource",
        cost_usd AS "costUsd", idle_cost_usd AS "idleCostUsd"
      FROM replica_periods
      WHERE period_start_ms >= ${query.fromMs ?? 0} AND period_start_ms < ${query.toMs ?? Number.MAX_SAFE_INTEGER}
      ORDER BY period_start_ms, replica`) as unknown as ReplicaPeriod[];
  }

  /** On the writer's pool: admission waits for it (once per budget period), never behind a summary. */
  async spentUsd(query: LedgerQuery & { tenant: string; apiKeyId?: string | undefined }): Promise<number> {
    const params: Array<string | number> = [
      query.fromMs ?? 0,
      query.toMs ?? Number.MAX_SAFE_INTEGER,
      query.tenant,
    ];
    if (query.apiKeyId !== undefined) params.push(query.apiKeyId);
    const [row] = await this.writer.unsafe(
      `SELECT COALESCE(SUM(price_usd), 0) AS spent FROM usage_records
       WHERE received_at_ms >= $1 AND received_at_ms < $2 AND tenant = $3
       ${query.apiKeyId === undefined ? '' : 'AND api_key_id = $4'}`,
      params,
    );
    return Number(row?.spent ?? 0);
  }

  async usageSummary(query: LedgerQuery, groupBy: readonly UsageGroupKey[]): Promise<UsageGroup[]> {
    const statement = postgresUsageSummaryStatement(query, groupBy);
    const rows = await this.boundedRead(statement.sql, statement.params);
    return usageGroupsFromRows(groupBy, rows, []);
  }

  async replicaSummary(query: Omit<LedgerQuery, 'tenant'>): Promise<ReplicaTotal[]> {
    const statement = postgresReplicaSummaryStatement(query);
    return replicaTotalsFromRows(await this.boundedRead(statement.sql, statement.params));
  }

  /** A summary on the reader's pool, refused with the SQLite store's 503 past `maxPendingSummaries`. */
  private async boundedRead(text: string, params: Array<string | number>): Promise<SqlRow[]> {
    if (this.pendingSummaries >= this.maxPendingSummaries)
      throw errors.usageQueriesBusy(this.maxPendingSummaries);
    this.pendingSummaries++;
    try {
      return (await this.reader.unsafe(text, params)) as unknown as SqlRow[];
    } finally {
      this.pendingSummaries--;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.retentionTimer);
    // Queries in flight (an append being committed) finish first; then the connections close.
    await Promise.all([this.writer.end({ timeout: 5 }), this.reader.end({ timeout: 5 })]);
  }
}

/** A record as the insert's row: column names as keys, absent optional fields as NULL. */
function recordRow(record: UsageRecord): Record<string, string | number | boolean | null> {
  const row: Record<string, string | number | boolean | null> = {};
  for (const [column, field] of recordColumns) row[column] = record[field] ?? null;
  return row;
}

/** The start of the UTC day `ms` falls in, also before 1970. */
function floorToDay(ms: number): number {
  return ms - (((ms % dayMs) + dayMs) % dayMs);
}

function partitionName(dayStartMs: number): string {
  return `${partitionPrefix}${new Date(dayStartMs).toISOString().slice(0, 10).replaceAll('-', '')}`;
}

/** The day a partition holds, from its name; null for a table that is not one of ours. */
function dayOfPartition(name: string): number | null {
  const match = /^usage_records_d(\d{4})(\d{2})(\d{2})$/.exec(name);
  if (!match) return null;
  return Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]));
}
