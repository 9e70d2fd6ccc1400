import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { newObjectId, type StoredFile } from './batch-store.js';
import { SqliteBatchStore } from './sqlite-batch-store.js';

// What every batch store promises is in test/conformance/batch-store.case.ts; this is SQLite's own past.
describe('SqliteBatchStore', () => {
  it('reads batches stored before keys were recorded, and records keys for new ones', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'gravity-batch-store-'));
    let store = new SqliteBatchStore(directory);
    const input: StoredFile = {
      id: newObjectId('file-'),
      tenant: 'acme',
      purpose: 'batch',
      filename: 'in.jsonl',
      bytes: 2,
      createdAtSeconds: 1,
    };
    writeFileSync(store.uploadPath(input.id), '{}');
    await store.commitUpload(input);
    await store.close();

    // A store written by an older Gravity: the batches table has no api_key_id column.
    const older = new Database(path.join(directory, 'batches.sqlite'));
    older.exec('ALTER TABLE batches DROP COLUMN api_key_id');
    older
      .prepare(
        `INSERT INTO batches (id, tenant, endpoint, input_file_id, completion_window, status, created_at,
         expires_at) VALUES ('batch_old', 'acme', '/v1/chat/completions', ?, '24h', 'in_progress', 1, 86401)`,
      )
      .run(input.id);
    older.close();
    store = new SqliteBatchStore(directory);
    try {
      expect(await store.batch('batch_old')).toMatchObject({
        tenant: 'acme',
        apiKeyId: null,
        status: 'in_progress',
      });
      expect(await store.claimableBatchIds()).toContain('batch_old');
    } finally {
      await store.close();
    }
  });
});
