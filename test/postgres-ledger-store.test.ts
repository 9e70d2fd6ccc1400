import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { GravityError } from '../src/core/errors.js';
import type { ReplicaPeriod } from '../src/metering/ledger/ledger-store.js';
import { PostgresLedgerStore } from '../src/metering/ledger/postgres-ledger-store.js';
import {
  ledgerMigrations,
  migrateLedger,
  postgresConnection,
} from '../src/metering/ledger/postgres-migrations.js';
import { usageRecord } from './conformance/ledger-store.case.js';
import { freeLoopbackPort } from './support/free-port.js';
import { usePostgresServer } from './support/postgres-server.js';

// What the ledger store contract (test/conformance/ledger-store.case.ts) does not cover: PostgreSQL's
// day partitions, retention, migrations, and several replicas sharing one database.

const dayMs = 86_400_000;
const day = (index: number) => Date.UTC(2026, 11, 1) + index * dayMs;

const server = usePostgresServer();

/** The partitions of usage_records in the database at `url`, by name. */
async function partitions(url: string): Promise<string[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql<Array<{ name: string }>>`
      SELECT child.relname AS name FROM pg_inherits
      JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
      JOIN pg_class child ON child.oid = pg_inherits.inhrelid
      WHERE parent.relname = 'usage_records' ORDER BY child.relname`;
    return rows.map((row) => row.name);
  } finally {
    await sql.end();
  }
}

async function countRows(url: string, table: string): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql.unsafe(`SELECT COUNT(*)::int AS count FROM ${table}`);
    return Number(row?.count);
  } finally {
    await sql.end();
  }
}

describe('PostgresLedgerStore', () => {
  it('creates one partition per UTC day a batch touches, 1969 included', async () => {
    const url = await server().createDatabase();
    const store = await PostgresLedgerStore.open(url);
    try {
      await store.append([
        usageRecord({ requestId: 'a', receivedAtMs: -1 }),
        usageRecord({ requestId: 'b', receivedAtMs: 0 }),
        usageRecord({ requestId: 'c', receivedAtMs: day(0) + 5 }),
        usageRecord({ requestId: 'd', receivedAtMs: day(0) + dayMs - 1 }),
      ]);
      await store.append([usageRecord({ requestId: 'e', receivedAtMs: day(1) })]);
      expect(await partitions(url)).toEqual([
        'usage_records_d19691231',
        'usage_records_d19700101',
        'usage_records_d20261201',
        'usage_records_d20261202',
      ]);
      expect((await store.records({ fromMs: -dayMs })).map((record) => record.requestId)).toEqual([
        'a',
        'b',
        'c',
        'd',
        'e',
      ]);
    } finally {
      await store.close();
    }
  });

  it('refuses a request id already in the ledger on another day, and the whole batch with it', async () => {
    const url = await server().createDatabase();
    const store = await PostgresLedgerStore.open(url);
    try {
      const first = usageRecord({ requestId: 'req-1', receivedAtMs: day(0) });
      await store.append([first]);
      await expect(
        store.append([
          usageRecord({ requestId: 'req-2', receivedAtMs: day(2) }),
          usageRecord({ requestId: 'req-1', receivedAtMs: day(1) }),
        ]),
      ).rejects.toThrow(/duplicate key/);
      expect(await store.records({})).toEqual([first]);
    } finally {
      await store.close();
    }
  });

  it('keeps a batch larger than one INSERT atomic: a duplicate in its last rows stores none of it', async () => {
    const url = await server().createDatabase();
    const store = await PostgresLedgerStore.open(url);
    try {
      await store.append([usageRecord({ requestId: 'taken', receivedAtMs: day(0) })]);
      const batch = Array.from({ length: 2500 }, (_, index) =>
        usageRecord({ requestId: index === 2499 ? 'taken' : `r${index}`, receivedAtMs: day(1) + index }),
      );
      await expect(store.append(batch)).rejects.toThrow(/duplicate key/);
      expect((await store.records({})).map((record) => record.requestId)).toEqual(['taken']);
      await store.append(batch.slice(0, 2499));
      expect((await store.records({})).length).toBe(2500);
    } finally {
      await store.close();
    }
  });

  it('drops whole day partitions past retention with their request ids and old replica periods, keeping newer days', async () => {
    const url = await server().createDatabase();
    const store = await PostgresLedgerStore.open(url, { retentionDays: 2 });
    const period: ReplicaPeriod = {
      replica: 'h100-0',
      periodStartMs: day(0),
      periodEndMs: day(0) + 10_000,
      energyJoules: 1,
      idleEnergyJoules: 0,
      energySource: 'measured:nvml',
      costUsd: 0,
      idleCostUsd: 0,
    };
    try {
      await store.append([
        usageRecord({ requestId: 'old', receivedAtMs: day(0) + 1000 }),
        usageRecord({ requestId: 'older', receivedAtMs: day(1) }),
        usageRecord({ requestId: 'kept', receivedAtMs: day(2) + 1000 }),
        usageRecord({ requestId: 'new', receivedAtMs: day(4) }),
      ]);
      await store.appendReplicaPeriods([period, { ...period, periodStartMs: day(3) }]);
      // Two days kept before day(4) + 12 h: day(2) ends after the cutoff (day(2) + 12 h) and stays.
      expect(await store.dropExpired(day(4) + dayMs / 2)).toBe(2);
      expect(await partitions(url)).toEqual(['usage_records_d20261203', 'usage_records_d20261205']);
      expect((await store.records({})).map((record) => record.requestId)).toEqual(['kept', 'new']);
      expect(await countRows(url, 'usage_request_ids')).toBe(2);
      expect((await store.replicaPeriods({})).map((kept) => kept.periodStartMs)).toEqual([day(3)]);
      // The dropped day's ids are gone: the day can be written again.
      await store.append([usageRecord({ requestId: 'old', receivedAtMs: day(0) })]);
      expect(await store.dropExpired(day(4))).toBe(1);
      await store.append([
        usageRecord({ requestId: 'in-1970', receivedAtMs: 3000 }),
        usageRecord({ requestId: 'today', receivedAtMs: Date.now() }),
      ]);
    } finally {
      await store.close();
    }
    // open runs retention at once: 1970 is long past 30 days, today is not.
    const reopened = await PostgresLedgerStore.open(url, { retentionDays: 30 });
    try {
      const left = (await reopened.records({})).map((record) => record.requestId);
      expect(left).toContain('today');
      expect(left).not.toContain('in-1970');
      expect(await partitions(url)).not.toContain('usage_records_d19700101');
    } finally {
      await reopened.close();
    }
  });

  it('lets two replicas append to the same new days at once', async () => {
    const url = await server().createDatabase();
    const [first, second] = await Promise.all([PostgresLedgerStore.open(url), PostgresLedgerStore.open(url)]);
    try {
      // Each batch touches every one of 20 new days, so both stores create the same partitions at once.
      const batch = (replica: string, batchIndex: number) =>
        Array.from({ length: 20 }, (_, dayIndex) =>
          usageRecord({
            requestId: `${replica}-${batchIndex}-${dayIndex}`,
            receivedAtMs: day(dayIndex) + batchIndex,
          }),
        );
      await Promise.all(
        Array.from({ length: 3 }, (_, batchIndex) => [
          first.append(batch('a', batchIndex)),
          second.append(batch('b', batchIndex)),
        ]).flat(),
      );
      expect((await first.records({})).length).toBe(120);
      expect((await partitions(url)).length).toBe(20);
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  });

  it("appends to a day another replica's retention dropped, creating its partition again", async () => {
    const url = await server().createDatabase();
    const [writing, retaining] = await Promise.all([
      PostgresLedgerStore.open(url),
      PostgresLedgerStore.open(url, { retentionDays: 1 }),
    ]);
    try {
      await writing.append([usageRecord({ requestId: 'first', receivedAtMs: day(0) })]);
      expect(await retaining.dropExpired(day(3))).toBe(1);
      // `writing` still believes day(0) has its partition.
      await writing.append([usageRecord({ requestId: 'late', receivedAtMs: day(0) + 1 })]);
      expect((await writing.records({})).map((record) => record.requestId)).toEqual(['late']);
    } finally {
      await Promise.all([writing.close(), retaining.close()]);
    }
  });

  it('applies each migration once when two replicas migrate at once, and nothing the second time', async () => {
    const url = await server().createDatabase();
    const [first, second] = await Promise.all([postgresConnection(url), postgresConnection(url)]);
    try {
      const applied = await Promise.all([migrateLedger(first), migrateLedger(second)]);
      const names = ledgerMigrations.map((migration) => migration.name);
      expect(applied.flat()).toEqual(names);
      expect(await migrateLedger(first)).toEqual([]);
      expect(await countRows(url, 'gravity_schema_migrations')).toBe(names.length);
    } finally {
      await Promise.all([first.end(), second.end()]);
    }
  });

  it('fails to open an unreachable server with an error naming its URL, password hidden', async () => {
    const port = await freeLoopbackPort();
    const error = await PostgresLedgerStore.open(`postgres://gravity:s3cret@127.0.0.1:${port}/ledger`).catch(
      (caught: Error) => caught,
    );
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toContain(`postgres://gravity:***@127.0.0.1:${port}/ledger`);
    expect(message).toMatch(/ECONNREFUSED/);
    expect(message).not.toContain('s3cret');
  });

  it('refuses to open a database whose schema is behind without migrating, saying to run gravity migrate', async () => {
    const url = await server().createDatabase();
    await expect(PostgresLedgerStore.open(url, { migrate: false })).rejects.toThrow(/run gravity migrate/);
    const migrated = await PostgresLedgerStore.open(url);
    await migrated.close();
    const store = await PostgresLedgerStore.open(url, { migrate: false });
    await store.close();
  });

  it('commits appends while long summaries hold every reader connection, and refuses summaries past the bound', async () => {
    const url = await server().createDatabase();
    const store = await PostgresLedgerStore.open(url, { maxPendingSummaries: 3 });
    const blocker = postgres(url, { max: 1, onnotice: () => {} });
    try {
      // A transaction holding replica_periods locked stands for a summary that takes long: the summaries
      // behind it wait, holding the reader's connections.
      let releaseLock: () => void = () => {};
      const locked = new Promise<void>((resolve) => {
        blocker
          .begin(async (transaction) => {
            await transaction`LOCK TABLE replica_periods IN ACCESS EXCLUSIVE MODE`;
            resolve();
            await new Promise<void>((release) => {
              releaseLock = release;
            });
          })
          .catch(() => {});
      });
      await locked;
      const summaries = [store.replicaSummary({}), store.replicaSummary({}), store.replicaSummary({})];
      await new Promise((resolve) => setTimeout(resolve, 200));
      const refused = await store.replicaSummary({}).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(GravityError);
      expect((refused as GravityError).status).toBe(503);
      const appended = store.append([usageRecord({ requestId: 'during', receivedAtMs: day(0) })]);
      const outcome = await Promise.race([
        appended.then(() => 'committed'),
        new Promise((resolve) => setTimeout(() => resolve('waiting'), 3000)),
      ]);
      releaseLock();
      await Promise.all(summaries);
      await appended;
      expect(outcome).toBe('committed');
    } finally {
      await blocker.end();
      await store.close();
    }
  });
});
