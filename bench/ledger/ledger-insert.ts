// Ledger insert throughput (issue 15): rows/s appended to the PostgreSQL ledger against the SQLite one,
// in batches of 16 and 256 records (what the LedgerWriter's group commit hands a store under light and
// heavy load), one batch in flight (one gateway) and several (several replicas, or a gateway whose
// batches overlap). Each round gets a fresh SQLite file and a fresh PostgreSQL database; the two stores
// alternate within a round so that a noisy neighbour hits both. PostgreSQL is a throwaway local cluster
// (test/support/postgres-server.ts) with fsync off: like SQLite's WAL at synchronous = NORMAL, a commit
// survives a killed process but not a power cut, so the two pay for the same durability.
// Run with `npm run bench:ledger -- --help`.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { medianOf } from '../../src/core/quantile.js';
import type { LedgerStore } from '../../src/metering/ledger/ledger-store.js';
import { PostgresLedgerStore } from '../../src/metering/ledger/postgres-ledger-store.js';
import { SqliteLedgerStore } from '../../src/metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../../src/metering/usage-record.js';
import { usageRecord } from '../../test/conformance/ledger-store.case.js';
import { startPostgres } from '../../test/support/postgres-server.js';
import {
  fixed,
  formatTable,
  integer,
  integers,
  printPreamble,
  ratio,
  readOptions,
} from '../support/report-format.js';

const options = readOptions('bench:ledger', 'Ledger insert rows/s, PostgreSQL against SQLite', {
  rows: integer(16_384, 'rows appended per store, batch size and round', { quick: 1_024 }),
  batchSizes: integers([16, 256], 'records per append'),
  inFlight: integers([1, 4], 'appends in flight at once'),
  rounds: integer(3, 'rounds (the median is reported)', { quick: 1 }),
});
printPreamble('Ledger insert', 'bench:ledger', [
  `settings: ${options.rows} rows per measurement; records per append: ${options.batchSizes.join(', ')}; appends in flight: ${options.inFlight.join(', ')}; ${options.rounds} rounds (median)`,
  'stores:   SQLite file (WAL, synchronous = NORMAL, writer thread) | PostgreSQL 15 on loopback (fsync off, 2 writer connections)',
]);

const dayStartMs = Date.UTC(2026, 11, 1);
let nextRequest = 0;

function batches(rows: number, batchSize: number): UsageRecord[][] {
  const all = Array.from({ length: rows }, (_, index) =>
    usageRecord({ requestId: `bench-${nextRequest++}`, receivedAtMs: dayStartMs + index * 1000 }),
  );
  const result: UsageRecord[][] = [];
  for (let start = 0; start < all.length; start += batchSize)
    result.push(all.slice(start, start + batchSize));
  return result;
}

/** Rows/s appending `work` with `inFlight` appends outstanding, after one warm-up batch (its day's partition). */
async function measure(store: LedgerStore, work: UsageRecord[][], inFlight: number): Promise<number> {
  const [warmUp, ...rest] = work;
  await store.append(warmUp as UsageRecord[]);
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < rest.length) await store.append(rest[next++] as UsageRecord[]);
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const seconds = (performance.now() - started) / 1000;
  return rest.reduce((total, batch) => total + batch.length, 0) / seconds;
}

const server = await startPostgres();
const directory = mkdtempSync(path.join(os.tmpdir(), 'gravity-bench-ledger-'));
try {
  const rows: string[][] = [];
  let file = 0;
  for (const batchSize of options.batchSizes) {
    for (const inFlight of options.inFlight) {
      const sqliteRates: number[] = [];
      const postgresRates: number[] = [];
      for (let round = 0; round < options.rounds; round++) {
        const sqlite = new SqliteLedgerStore(path.join(directory, `ledger-${file++}.sqlite`));
        sqliteRates.push(await measure(sqlite, batches(options.rows, batchSize), inFlight));
        await sqlite.close();
        const postgresStore = await PostgresLedgerStore.open(await server.createDatabase());
        postgresRates.push(await measure(postgresStore, batches(options.rows, batchSize), inFlight));
        await postgresStore.close();
      }
      const sqliteRate = medianOf(sqliteRates);
      const postgresRate = medianOf(postgresRates);
      rows.push([
        String(batchSize),
        String(inFlight),
        fixed(sqliteRate),
        fixed(postgresRate),
        ratio(postgresRate, sqliteRate),
      ]);
    }
  }
  console.log(
    formatTable(
      ['records per append', 'in flight', 'SQLite rows/s', 'PostgreSQL rows/s', 'PostgreSQL / SQLite'],
      rows,
    ),
  );
} finally {
  await server.close();
  rmSync(directory, { recursive: true, force: true });
}
