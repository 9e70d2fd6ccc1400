import { createRequire } from 'node:module';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { defaults } from '../../core/defaults.js';
import { errors } from '../../core/errors.js';
import { preparePrivateDatabaseFile } from '../../core/private-files.js';
import type { UsageRecord } from '../usage-record.js';
import type { ReplicaTotal, UsageGroup, UsageGroupKey } from '../usage-report.js';
import {
  defaultReplayPageSize,
  type LedgerQuery,
  type LedgerStore,
  type ReplayOptions,
  type ReplicaPeriod,
} from './ledger-store.js';
import { recordColumns } from './record-columns.js';
import {
  replicaSummaryStatement,
  replicaTotalsFromRows,
  type SqlRow,
  type SqlStatement,
  ttftQuantiles,
  ttftQuantilesFunction,
  usageGroupsFromRows,
  usageSummaryStatements,
} from './usage-summary-sql.js';

const schema = `
CREATE TABLE IF NOT EXISTS usage_records (
  request_id TEXT PRIMARY KEY,
  received_at_ms INTEGER NOT NULL,
  finished_at_ms INTEGER NOT NULL,
  endpoint TEXT NOT NULL,
  tenant TEXT NOT NULL,
  api_key_id TEXT,
  model TEXT NOT NULL,
  engine TEXT,
  replica TEXT,
  tier TEXT NOT NULL,
  stream INTEGER NOT NULL,
  status INTEGER NOT NULL,
  error_code TEXT,
  finish_reason TEXT,
  prompt_tokens INTEGER NOT NULL,
  cached_prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  usage_source TEXT NOT NULL,
  queue_wait_ms REAL,
  ttft_ms REAL,
  itl_mean_ms REAL,
  itl_p50_ms REAL,
  itl_p95_ms REAL,
  itl_max_ms REAL,
  e2e_ms REAL NOT NULL,
  energy_joules REAL NOT NULL,
  energy_source TEXT NOT NULL,
  cost_usd REAL NOT NULL,
  cost_source TEXT NOT NULL,
  price_usd REAL NOT NULL,
  margin_usd REAL NOT NULL,
  carbon_grams REAL NOT NULL,
  route TEXT,
  partial INTEGER NOT NULL DEFAULT 0,
  client_request_id TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS usage_records_received ON usage_records (received_at_ms);
CREATE TABLE IF NOT EXISTS replica_periods (
  replica TEXT NOT NULL,
  period_start_ms INTEGER NOT NULL,
  period_end_ms INTEGER NOT NULL,
  energy_joules REAL NOT NULL,
  idle_energy_joules REAL NOT NULL,
  energy_source TEXT NOT NULL,
  cost_usd REAL NOT NULL,
  idle_cost_usd REAL NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS replica_periods_start ON replica_periods (period_start_ms);
`;

/**
 * The embedded ledger: one SQLite file in WAL mode. `synchronous = NORMAL` makes each committed
 * transaction survive a crash of the process (kill -9), which is what the ledger promises; surviving
 * power loss as well would need FULL, at a cost on every commit.
 */
export interface SqliteLedgerStoreOptions {
  /**
   * Usage summaries running or waiting on a file ledger's reader thread at once; one more is refused
   * with a 503 (`metering.maxPendingUsageQueries`).
   */
  maxPendingSummaries?: number;
  /**
   * TTFT samples one summary may hold in memory on the reader thread (8 bytes each) to take its
   * quantiles in one scan; past it, SQLite sorts them (spilling to disk) instead, slower but bounded.
   */
  ttftSampleLimit?: number;
}

/** 32 MiB of samples: a summary over 4 million requests still takes its quantiles in one scan. */
const defaultTtftSampleLimit = 4_000_000;

export class SqliteLedgerStore implements LedgerStore {
  private readonly database: Database.Database;
  private readonly file: string;
  private readonly maxPendingSummaries: number;
  private readonly ttftSampleLimit: number;
  /** For a file ledger, once a summary is asked for: the thread that reads them. */
  private readerThread: LedgerReaderThread | undefined;
  private readonly insertRecord: Database.Statement;
  private readonly insertPeriod: Database.Statement;
  private readonly appendBatch: (records: readonly UsageRecord[]) => void;
  /** For a file ledger: the thread that writes records and checkpoints the WAL. */
  private readonly writerThread: LedgerWriterThread | undefined;

  constructor(file: string, options: SqliteLedgerStoreOptions = {}) {
    this.file = file;
    this.maxPendingSummaries = options.maxPendingSummaries ?? defaults.metering.maxPendingUsageQueries;
    this.ttftSampleLimit = options.ttftSampleLimit ?? defaultTtftSampleLimit;
    preparePrivateDatabaseFile(file);
    this.database = new Database(file);
    this.database.pragma('journal_mode = WAL');
    this.database.pragma('synchronous = NORMAL');
    this.database.pragma('busy_timeout = 5000');
    this.database.exec(schema);
    addMissingColumns(this.database);
    const insertSql = `INSERT INTO usage_records (${recordColumns.map(([column]) => column).join(', ')}) VALUES (${recordColumns.map(() => '?').join(', ')})`;
    this.insertRecord = this.database.prepare(insertSql);
    // A file ledger writes its records on a worker thread with its own connection: inserts, commits and
    // WAL checkpoints then cost the gateway's event loop only a message (bench/metering measured the
    // inserts and SQLite's automatic checkpoints on the request path). An in-memory ledger cannot be
    // shared between threads and writes here.
    if (file !== ':memory:') {
      this.database.pragma('wal_autocheckpoint = 0');
      this.writerThread = new LedgerWriterThread(path.resolve(file), insertSql);
    }
    this.insertPeriod = this.database.prepare(
      `INSERT INTO replica_periods VALUES (@replica, @periodStartMs, @periodEndMs, @energyJoules, @idleEnergyJoules, @energySource, @costUsd, @idleCostUsd)`,
    );
    this.appendBatch = this.database.transaction((records: readonly UsageRecord[]) => {
      // Positional values: binding 32 named parameters from an object cost more than the insert itself.
      for (const record of records) this.insertRecord.run(rowValues(record));
    });
  }

  async append(records: readonly UsageRecord[]): Promise<void> {
    if (this.writerThread) await this.writerThread.append(records.map(rowValues));
    else this.appendBatch(records);
  }

  async appendReplicaPeriods(periods: readonly ReplicaPeriod[]): Promise<void> {
    this.database.transaction(() => {
      for (const period of periods) this.insertPeriod.run(period);
    })();
  }

  async records(query: LedgerQuery): Promise<UsageRecord[]> {
    const rows = this.database
      .prepare(
        `SELECT * FROM usage_records WHERE received_at_ms >= @fromMs AND received_at_ms < @toMs
         ${query.tenant === undefined ? '' : 'AND tenant = @tenant'} ORDER BY received_at_ms, request_id`,
      )
      .all({
        fromMs: query.fromMs ?? 0,
        toMs: query.toMs ?? Number.MAX_SAFE_INTEGER,
        tenant: query.tenant,
      }) as Array<Record<string, unknown>>;
    return rows.map(recordFromRow);
  }

  /**
   * Keyset pages on the main connection: each page is one indexed range read of `pageSize` rows, short
   * enough to run on the event loop, and nothing is held open between pages (a statement iterated across
   * awaits would pin a read transaction and keep the writer's checkpoints from finishing).
   */
  async *replayRequests(query: LedgerQuery, options: ReplayOptions = {}): AsyncGenerator<UsageRecord> {
    const pageSize = options.pageSize ?? defaultReplayPageSize;
    const page = this.database.prepare(
      `SELECT * FROM usage_records WHERE status = 200 AND received_at_ms >= @fromMs AND received_at_ms < @toMs
         AND (received_at_ms > @afterMs OR (received_at_ms = @afterMs AND request_id > @afterId))
         ${query.tenant === undefined ? '' : 'AND tenant = @tenant'}
       ORDER BY received_at_ms, request_id LIMIT @pageSize`,
    );
    // The first page: every id at fromMs is after the empty one.
    let afterMs = query.fromMs ?? 0;
    let afterId = '';
    for (;;) {
      const rows = page.all({
        fromMs: query.fromMs ?? 0,
        toMs: query.toMs ?? Number.MAX_SAFE_INTEGER,
        afterMs,
        afterId,
        tenant: query.tenant,
        pageSize,
      }) as Array<Record<string, unknown>>;
      for (const row of rows) yield recordFromRow(row);
      const last = rows.at(-1);
      if (!last || rows.length < pageSize) return;
      afterMs = last.received_at_ms as number;
      afterId = last.request_id as string;
    }
  }

  /**
   * A period's spend scans that period of the ledger: on the reader thread for a file ledger, like the
   * usage summaries, but never refused by their bound (admission waits for it, once per period).
   */
  async spentUsd(query: LedgerQuery & { tenant: string; apiKeyId?: string | undefined }): Promise<number> {
    const params: SqlStatement['params'] = {
      fromMs: query.fromMs ?? 0,
      toMs: query.toMs ?? Number.MAX_SAFE_INTEGER,
      tenant: query.tenant,
    };
    if (query.apiKeyId !== undefined) params.apiKeyId = query.apiKeyId;
    const [rows] = await this.runReadOnly(
      [
        {
          sql: `SELECT COALESCE(SUM(price_usd), 0) AS spent FROM usage_records
            WHERE received_at_ms >= @fromMs AND received_at_ms < @toMs AND tenant = @tenant
            ${query.apiKeyId === undefined ? '' : 'AND api_key_id = @apiKeyId'}`,
          params,
        },
      ],
      { bounded: false },
    );
    return Number(rows?.[0]?.spent ?? 0);
  }

  async replicaPeriods(query: Omit<LedgerQuery, 'tenant'>): Promise<ReplicaPeriod[]> {
    return this.database
      .prepare(
        `SELECT replica, period_start_ms AS periodStartMs, period_end_ms AS periodEndMs, energy_joules AS energyJoules,
                idle_energy_joules AS idleEnergyJoules, energy_source AS energySource, cost_usd AS costUsd, idle_cost_usd AS idleCostUsd
         FROM replica_periods WHERE period_start_ms >= @fromMs AND period_start_ms < @toMs ORDER BY period_start_ms, replica`,
      )
      .all({ fromMs: query.fromMs ?? 0, toMs: query.toMs ?? Number.MAX_SAFE_INTEGER }) as ReplicaPeriod[];
  }

  async usageSummary(query: LedgerQuery, groupBy: readonly UsageGroupKey[]): Promise<UsageGroup[]> {
    const onReaderThread = this.file !== ':memory:';
    const [totals, ttftSamples] = usageSummaryStatements(query, groupBy, { ttftAggregate: onReaderThread });
    // The reader thread's aggregate gives the quantiles in the totals' scan; the samples statement runs
    // only if it ran out of room. Without the thread, the samples statement always answers them.
    const [totalsRows, ttftRows] = onReaderThread
      ? await this.runReadOnly([totals], { bounded: true, whenTtftSamplesOverflow: ttftSamples })
      : await this.runReadOnly([totals, ttftSamples], { bounded: true });
    return usageGroupsFromRows(groupBy, totalsRows ?? [], ttftRows ?? []);
  }

  async replicaSummary(query: Omit<LedgerQuery, 'tenant'>): Promise<ReplicaTotal[]> {
    const [rows] = await this.runReadOnly([replicaSummaryStatement(query)], { bounded: true });
    return replicaTotalsFromRows(rows ?? []);
  }

  /**
   * Runs read-only statements that scan a range of the ledger. A file ledger runs them on its reader
   * thread, so that a summary over millions of rows costs the event loop only the messages; an
   * in-memory ledger cannot be shared between threads and runs them here (it is small, or a test).
   */
  private runReadOnly(statements: readonly SqlStatement[], options: ReadOptions): Promise<SqlRow[][]> {
    if (this.file === ':memory:') {
      return Promise.resolve(
        statements.map(({ sql, params }) => this.database.prepare(sql).all(params) as SqlRow[]),
      );
    }
    // A reader that died (its thread crashed) is replaced rather than failing every later summary.
    if (!this.readerThread || this.readerThread.broken)
      this.readerThread = new LedgerReaderThread(path.resolve(this.file), {
        maxPending: this.maxPendingSummaries,
        ttftSampleLimit: this.ttftSampleLimit,
      });
    return this.readerThread.run(statements, options);
  }

  async close(): Promise<void> {
    await this.readerThread?.close();
    await this.writerThread?.close();
    // Closing the last connection checkpoints the WAL into the database file.
    if (this.database.open) this.database.close();
  }
}

/** A row of `usage_records` as the record it holds (SQLite keeps booleans as 0 and 1). */
function recordFromRow(row: Record<string, unknown>): UsageRecord {
  const record: Record<string, unknown> = {};
  for (const [column, field] of recordColumns) record[field] = row[column];
  record.stream = row.stream === 1;
  record.partial = row.partial === 1;
  return record as unknown as UsageRecord;
}

/** A record as positional values in column order: binding 32 named parameters cost more than the insert. */
function rowValues(record: UsageRecord): unknown[] {
  return recordColumns.map(([, field]) => {
    if (field === 'stream') return record.stream ? 1 : 0;
    if (field === 'partial') return record.partial ? 1 : 0;
    return record[field] ?? null;
  });
}

/**
 * Columns added after the first ledger format, with their definitions: a ledger file written by an
 * older Gravity gets them (ALTER TABLE … ADD COLUMN) when opened, its old rows reading the defaults.
 */
const addedColumns: ReadonlyArray<readonly [string, string]> = [
  ['route', 'TEXT'],
  ['partial', 'INTEGER NOT NULL DEFAULT 0'],
  ['client_request_id', 'TEXT'],
];

function addMissingColumns(database: Database.Database): void {
  const present = new Set(
    (database.prepare('PRAGMA table_info(usage_records)').all() as Array<{ name: string }>).map(
      (column) => column.name,
    ),
  );
  for (const [column, definition] of addedColumns)
    if (!present.has(column)) database.exec(`ALTER TABLE usage_records ADD COLUMN ${column} ${definition}`);
}

const checkpointPeriodMs = 1000;

/**
 * The ledger's writer thread: inserts each batch in one transaction and answers once it is committed;
 * every second it copies the WAL into the database file (PASSIVE: never blocks writers or readers).
 * The worker's code is a string so that it runs the same from the TypeScript sources and from dist/.
 */
class LedgerWriterThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  private nextBatchId = 1;

  constructor(file: string, insertSql: string) {
    const betterSqlite3 = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const Database = require(workerData.betterSqlite3);
       const database = new Database(workerData.file);
       database.pragma('synchronous = NORMAL');
       database.pragma('busy_timeout = 5000');
       database.pragma('wal_autocheckpoint = 0');
       const insert = database.prepare(workerData.insertSql);
       const insertAll = database.transaction((rows) => { for (const row of rows) insert.run(row); });
       parentPort.on('message', ({ batchId, rows }) => {
         try { insertAll(rows); parentPort.postMessage({ batchId }); }
         catch (error) { parentPort.postMessage({ batchId, error: String(error && error.message || error) }); }
       });
       setInterval(() => { try { database.pragma('wal_checkpoint(PASSIVE)'); } catch {} }, workerData.periodMs).unref();`,
      {
        eval: true,
        workerData: { file, betterSqlite3, insertSql, periodMs: checkpointPeriodMs },
        name: 'gravity-ledger-writer',
      },
    );
    this.worker.on('message', ({ batchId, error }: { batchId: number; error?: string }) => {
      const waiter = this.pending.get(batchId);
      this.pending.delete(batchId);
      if (this.pending.size === 0) this.worker.unref();
      if (error) waiter?.reject(new Error(error));
      else waiter?.resolve();
    });
    this.worker.on('error', (error) => {
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
    });
    // Idle, the writer must not keep the process alive; with batches in flight it must.
    this.worker.unref();
  }

  append(rows: unknown[][]): Promise<void> {
    const batchId = this.nextBatchId++;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(batchId, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ batchId, rows });
    });
  }

  async close(): Promise<void> {
    while (this.pending.size > 0) await new Promise((resolve) => setTimeout(resolve, 5));
    await this.worker.terminate();
  }
}

interface ReadOptions {
  /** Counted against the bound on pending summaries (refused past it); false for admission's spend reads. */
  bounded: boolean;
  /** Run after the statements when the TTFT aggregate ran out of room for its samples. */
  whenTtftSamplesOverflow?: SqlStatement | undefined;
}

/**
 * The ledger's reader thread: its own read-only connection (WAL lets it read beside the writer) runs one
 * summary at a time, and at most `maxPending` summaries may be running or waiting; one more is refused
 * at once, so that callers cannot pile up behind a long scan. SQLite's temporary files stay on disk
 * (`temp_store = FILE`), so a sort over the whole ledger spills there instead of growing the heap.
 *
 * TTFT quantiles: SQLite sorting a million samples by group costs seconds, so the connection has an
 * aggregate (`ttftQuantilesFunction`) that keeps each group's samples in a Float64Array during the totals'
 * scan and sorts them natively, giving exactly `quantileOfSorted`'s figures. The samples of one summary
 * are bounded (`ttftSampleLimit`); past it the aggregate answers NULL and the window statement, which
 * sorts in SQLite and spills to disk, answers instead.
 * The worker's code is a string so that it runs the same from the TypeScript sources and from dist/.
 */
class LedgerReaderThread {
  private readonly worker: Worker;
  private readonly pending = new Map<
    number,
    { bounded: boolean; resolve: (rows: SqlRow[][]) => void; reject: (error: Error) => void }
  >();
  private boundedPending = 0;
  private nextQueryId = 1;
  private failed: Error | undefined;
  private readonly maxPending: number;

  constructor(file: string, options: { maxPending: number; ttftSampleLimit: number }) {
    this.maxPending = options.maxPending;
    const betterSqlite3 = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const Database = require(workerData.betterSqlite3);
       const database = new Database(workerData.file, { readonly: true, fileMustExist: true });
       database.pragma('busy_timeout = 5000');
       database.pragma('temp_store = FILE');
       // Two helper threads for SQLite's sorter: a grouped summary over a million rows is mostly its
       // GROUP BY sort; they take it from ~1.2 s to ~0.9 s on 1M rows (2 cores; bench:usage). They are
       // threads of this worker, not of the gateway's event loop, and exist only while a sort runs.
       database.pragma('threads = 2');
       let samplesLeft = 0;
       let overflowed = false;
       database.aggregate(workerData.ttftFunction, {
         start: () => ({ values: new Float64Array(16), count: 0 }),
         step: (state, value) => {
           if (value === null || overflowed) return;
           if (--samplesLeft < 0) { overflowed = true; state.values = new Float64Array(0); return; }
           if (state.count === state.values.length) {
             const grown = new Float64Array(state.count * 2);
             grown.set(state.values);
             state.values = grown;
           }
           state.values[state.count++] = value;
         },
         result: (state) => {
           if (overflowed) return null;
           const sorted = state.values.subarray(0, state.count).sort();
           // Type 7, as src/core/quantile.ts: linear between the two closest ranks.
           return JSON.stringify(workerData.quantiles.map((quantile) => {
             if (state.count === 0) return null;
             const position = (state.count - 1) * quantile;
             const lower = Math.floor(position);
             const low = sorted[lower];
             const high = sorted[Math.ceil(position)];
             return low + (high - low) * (position - lower);
           }));
         },
       });
       parentPort.on('message', ({ queryId, statements, whenTtftSamplesOverflow }) => {
         try {
           samplesLeft = workerData.ttftSampleLimit;
           overflowed = false;
           // One read transaction: every statement of a summary sees the same ledger.
           const results = database.transaction(() => {
             const rows = statements.map(({ sql, params }) => database.prepare(sql).all(params));
             if (overflowed && whenTtftSamplesOverflow)
               rows.push(database.prepare(whenTtftSamplesOverflow.sql).all(whenTtftSamplesOverflow.params));
             return rows;
           })();
           parentPort.postMessage({ queryId, results });
         } catch (error) {
           parentPort.postMessage({ queryId, error: String((error && error.message) || error) });
         }
       });`,
      {
        eval: true,
        workerData: {
          file,
          betterSqlite3,
          ttftFunction: ttftQuantilesFunction,
          quantiles: ttftQuantiles,
          ttftSampleLimit: options.ttftSampleLimit,
        },
        name: 'gravity-ledger-reader',
      },
    );
    this.worker.on(
      'message',
      ({ queryId, results, error }: { queryId: number; results?: SqlRow[][]; error?: string }) => {
        const waiter = this.pending.get(queryId);
        this.pending.delete(queryId);
        if (waiter?.bounded) this.boundedPending--;
        if (this.pending.size === 0) this.worker.unref();
        if (error !== undefined) waiter?.reject(new Error(error));
        else waiter?.resolve(results ?? []);
      },
    );
    const fail = (error: Error) => {
      this.failed = error;
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
      this.boundedPending = 0;
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`the ledger reader thread exited (code ${code})`)));
    // Idle, the reader must not keep the process alive.
    this.worker.unref();
  }

  get broken(): boolean {
    return this.failed !== undefined;
  }

  /** Runs `statements` in one read transaction; `whenTtftSamplesOverflow` after them if it is needed. */
  run(statements: readonly SqlStatement[], options: ReadOptions): Promise<SqlRow[][]> {
    if (options.bounded && this.boundedPending >= this.maxPending)
      return Promise.reject(errors.usageQueriesBusy(this.maxPending));
    const queryId = this.nextQueryId++;
    return new Promise<SqlRow[][]>((resolve, reject) => {
      this.pending.set(queryId, { bounded: options.bounded, resolve, reject });
      if (options.bounded) this.boundedPending++;
      this.worker.ref();
      this.worker.postMessage({
        queryId,
        statements,
        whenTtftSamplesOverflow: options.whenTtftSamplesOverflow,
      });
    });
  }

  async close(): Promise<void> {
    while (this.pending.size > 0 && !this.failed) await new Promise((resolve) => setTimeout(resolve, 5));
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}
