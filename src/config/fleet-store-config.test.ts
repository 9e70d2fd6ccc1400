import { describe, expect, it } from 'vitest';
import { configFile } from '../../test/support/config-file.js';
import { problemsOf } from '../../test/support/config-problems.js';
import { batchStoreKind } from '../batch/batch-api.js';
import { responseStoreKind } from '../responses/open-response-store.js';
import { loadConfig } from './load-config.js';

describe('where batches and stored responses live', () => {
  it('follows the ledger: SQLite beside one gateway, PostgreSQL for a fleet, unless told', () => {
    expect(batchStoreKind(loadConfig({}, {}))).toBe('sqlite');
    expect(responseStoreKind(loadConfig({}, {}))).toBe('sqlite');
    const fleet = loadConfig({}, { GRAVITY_LEDGER_URL: 'postgres://gravity@db/gravity' });
    expect(batchStoreKind(fleet)).toBe('postgres');
    expect(responseStoreKind(fleet)).toBe('postgres');
    expect(fleet.batch.leaseMs).toBe(30_000);
    const local = loadConfig(
      { configPath: configFile('batch:\n  store: sqlite\n') },
      { GRAVITY_LEDGER_URL: 'postgres://gravity@db/gravity' },
    );
    expect(batchStoreKind(local)).toBe('sqlite');
  });

  it('refuses a PostgreSQL batch store without a PostgreSQL ledger, and a lease under a second', () => {
    expect(
      problemsOf(() => loadConfig({ configPath: configFile('batch:\n  store: postgres\n') }, {})),
    ).toEqual([
      "batch.store: postgres keeps batches in the ledger's database: set ledger.store: postgres and its url",
    ]);
    expect(
      problemsOf(() => loadConfig({ configPath: configFile('responses:\n  store: postgres\n') }, {})),
    ).toEqual([
      "responses.store: postgres keeps responses in the ledger's database: set ledger.store: postgres and its url",
    ]);
    expect(
      problemsOf(() => loadConfig({ configPath: configFile('batch:\n  leaseMs: 10\n') }, {}))[0],
    ).toMatch(/^batch\.leaseMs: /);
  });
});
