import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SqliteResponseStore } from '../../src/responses/sqlite-response-store.js';
import { describeResponseStoreConformance } from './response-store.case.js';

describeResponseStoreConformance(
  'SqliteResponseStore (a fresh file per test)',
  async ({ retentionDays, now }) => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'gravity-responses-')), 'responses.sqlite');
    return new SqliteResponseStore({ path: file, retentionDays, nowSeconds: now });
  },
);
