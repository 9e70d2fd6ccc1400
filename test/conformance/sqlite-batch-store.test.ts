import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SqliteBatchStore } from '../../src/batch/sqlite-batch-store.js';
import { describeBatchStoreConformance } from './batch-store.case.js';

describeBatchStoreConformance('SqliteBatchStore (a fresh folder per test)', async () => {
  const directory = mkdtempSync(path.join(tmpdir(), 'gravity-batch-store-'));
  return async () => new SqliteBatchStore(directory);
});
