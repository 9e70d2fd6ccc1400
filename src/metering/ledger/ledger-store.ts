import type { UsageRecord } from '../usage-record.js';

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
  /** Records in the range, oldest first. */
  records(query: LedgerQuery): Promise<UsageRecord[]>;
  replicaPeriods(query: Omit<LedgerQuery, 'tenant'>): Promise<ReplicaPeriod[]>;
  /**
   * The sum of `priceUsd` over the records in the range, for one tenant (and one of its keys when
   * `apiKeyId` is given): what admission's spend budgets start a period from.
   */
  spentUsd(query: LedgerQuery & { tenant: string; apiKeyId?: string | undefined }): Promise<number>;
  close(): Promise<void>;
}
