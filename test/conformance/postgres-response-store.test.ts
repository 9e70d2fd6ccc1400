import { afterAll, beforeAll } from 'vitest';
import { migratedPostgres } from '../../src/metering/ledger/postgres-migrations.js';
import { PostgresResponseStore } from '../../src/responses/postgres-response-store.js';
import { type PostgresServer, startPostgres } from '../support/postgres-server.js';
import { describeResponseStoreConformance } from './response-store.case.js';

let server: PostgresServer;
beforeAll(async () => {
  server = await startPostgres();
}, 60_000);
afterAll(async () => {
  await server?.close();
});

describeResponseStoreConformance(
  'PostgresResponseStore (real server, a fresh database per test)',
  async ({ retentionDays, now }) =>
    new PostgresResponseStore(
      await migratedPostgres(await server.createDatabase(), { migrate: true, max: 2 }),
      {
        retentionDays,
        nowSeconds: now,
      },
    ),
);
