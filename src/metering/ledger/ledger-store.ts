import type { UsageRecord } from '../usage-record.js';
import type { ReplicaTotal, UsageGroup, UsageGroupKey } from '../usage-report.js';

/** A replica's energy and cost over one period, split into what its requests got and what was idle. */
export interface ReplicaPeriod {
  replica: string;
  periodStartMs: number;
  periodEndMs: number;
  energyJoules: number;
  idleEnergyJoules: number;
  energySource: string;
  costUsd: number;
  idleCostUsd: number;
}

export interface LedgerQuery {
  /** Inclusive lower bound on `receivedAtMs` (epoch ms). */
  fromMs?: number | undefined;
  /** Exclusive upper bound on `receivedAtMs`. */
  toMs?: number | undefined;
  /** Only this tenant's records. */
  tenant?: string | undefined;
}

export interface ReplayOptions {
  /** Records read per query (default `defaultReplayPageSize`). */
  pageSize?: number;
}

export const defaultReplayPageSize = 1_000;

/**
 * Where usage records live. Implementations (SQLite now, PostgreSQL later) must pass the shared
 * conformance suite in test/conformance/ledger-store.case.ts.
 */
export interface LedgerStore {
  /**
   * Appends records atomically: all or none. A request id already in the ledger fails the whole batch —
   * the ledger never holds two records for one request.
   */
  append(records: readonly UsageRecord[]): Promise<void>;
  appendReplicaPeriods(periods: readonly ReplicaPeriod[]): Promise<void>;
  /**
   * Records in the range, oldest first. Every row in memory at once: for tests and small ranges; totals
   * over the ledger go through `usageSummary`.
   */
  records(query: LedgerQuery): Promise<UsageRecord[]>;
  /**
   * The completed requests (status 200) in the range, in arrival order (`receivedAtMs`, then `requestId`),
   * read a page of `pageSize` records at a time (default 1,000): memory bounded by a page whatever the
   * size of the ledger, and each page one short query, so appends go on between pages. For replaying a
   * ledger in `gravity sim`. Records appended meanwhile after the last page read may or may not be seen.
   */
  replayRequests(query: LedgerQuery, options?: ReplayOptions): AsyncIterable<UsageRecord>;
  replicaPeriods(query: Omit<LedgerQuery, 'tenant'>): Promise<ReplicaPeriod[]>;
  /**
   * The records in the range grouped and totalled: exactly `aggregateUsage(await records(query), groupBy)`,
   * groups in the same order, but computed by the store in memory that does not grow with the ledger,
   * and (for a file ledger) off the caller's event loop. May refuse with a 503 GravityError when too
   * many summaries are already running or waiting.
   */
  usageSummary(query: LedgerQuery, groupBy: readonly UsageGroupKey[]): Promise<UsageGroup[]>;
  /** Each replica's periods in the range totalled: exactly `replicaTotals(await replicaPeriods(query))`. */
  replicaSummary(query: Omit<LedgerQuery, 'tenant'>): Promise<ReplicaTotal[]>;
  /**
   * The sum of `priceUsd` over the records in the range, for one tenant (and one of its keys when
   * `apiKeyId` is given): what admission's spend budgets start a period from.
   */
  spentUsd(query: LedgerQuery & { tenant: string; apiKeyId?: string | undefined }): Promise<number>;
  close(): Promise<void>;
}
