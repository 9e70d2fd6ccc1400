import { migratedPostgres } from '../../src/metering/ledger/postgres-migrations.js';
import { PostgresResponseStore } from '../../src/responses/postgres-response-store.js';
import { usePostgresServer } from '../support/postgres-server.js';
import { describeResponseStoreConformance } from './response-store.case.js';

const server = usePostgresServer();

describeResponseStoreConformance(
  'PostgresResponseStore (real server, a fresh database per test)',
  async ({ retentionDays, now }) =>
    new PostgresResponseStore(
      await migratedPostgres(await server().createDatabase(), { migrate: true, max: 2 }),
      {
        retentionDays,
        nowSeconds: now,
      },
    ),
);
