import { afterAll, beforeAll } from 'vitest';
import { PostgresLedgerStore } from '../../src/metering/ledger/postgres-ledger-store.js';
import { type PostgresServer, startPostgres } from '../support/postgres-server.js';
import { describeLedgerStoreConformance } from './ledger-store.case.js';

let server: PostgresServer;
beforeAll(async () => {
  server = await startPostgres();
}, 60_000);
afterAll(async () => {
  await server?.close();
});

describeLedgerStoreConformance('PostgresLedgerStore (real server, a fresh database per store)', async () =>
  PostgresLedgerStore.open(await server.createDatabase()),
);
