import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PostgresBatchStore } from '../../src/batch/postgres-batch-store.js';
import { migrateLedger, postgresConnection } from '../../src/metering/ledger/postgres-migrations.js';
import { usePostgresServer } from '../support/postgres-server.js';
import { describeBatchStoreConformance } from './batch-store.case.js';

const server = usePostgresServer();

describeBatchStoreConformance('PostgresBatchStore (real server, a fresh database per test)', async () => {
  const url = await server().createDatabase();
  const setup = await postgresConnection(url);
  await migrateLedger(setup);
  await setup.end();
  const stagingDirectory = mkdtempSync(path.join(tmpdir(), 'gravity-batch-uploads-'));
  return async (options) =>
    new PostgresBatchStore(await postgresConnection(url, { max: 2 }), {
      stagingDirectory,
      leaseMs: options?.leaseMs ?? 30_000,
    });
});
