import { PostgresLedgerStore } from '../../src/metering/ledger/postgres-ledger-store.js';
import { usePostgresServer } from '../support/postgres-server.js';
import { describeLedgerStoreConformance } from './ledger-store.case.js';

const server = usePostgresServer();

describeLedgerStoreConformance('PostgresLedgerStore (real server, a fresh database per store)', async () =>
  PostgresLedgerStore.open(await server().createDatabase()),
);
