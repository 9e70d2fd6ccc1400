import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BatchStore, newObjectId, type StoredBatch, type StoredFile } from './batch-store.js';

let store: BatchStore;
let directory: string;
beforeEach(() => {
  directory = mkdtempSync(path.join(tmpdir(), 'gravity-batch-store-'));
  store = new BatchStore(directory);
});
afterEach(() => store.close());

async function addFile(tenant: string, purpose: StoredFile['purpose'] = 'batch'): Promise<StoredFile> {
  const file: StoredFile = {
    id: newObjectId('file-'),
    tenant,
    purpose,
    filename: 'in.jsonl',
    bytes: 2,
    createdAtSeconds: 1,
  };
  writeFileSync(store.uploadPath(file.id), '{}');
  await store.commitUpload(file);
  return file;
}

function addBatch(tenant: string, inputFileId: string, apiKeyId: string | null = null): StoredBatch {
  const batch: StoredBatch = {
    id: newObjectId('batch_'),
    tenant,
    apiKeyId,
    endpoint: '/v1/chat/completions',
    inputFileId,
    completionWindow: '24h',
    status: 'validating',
    createdAt: 1,
    expiresAt: 86_401,
    inProgressAt: null,
    finalizingAt: null,
    completedAt: null,
    failedAt: null,
    expiredAt: null,
    cancellingAt: null,
    cancelledAt: null,
    outputFileId: null,
    errorFileId: null,
    errors: null,
    metadata: { job: 'nightly' },
    validated: false,
    total: 0,
    completed: 0,
    failed: 0,
    promptTokens: 0,
    cachedPromptTokens: 0,
    completionTokens: 0,
  };
  store.insertBatch(batch);
  return batch;
}

const outcome = (lineNumber: number, succeeded: boolean) => ({
  lineNumber,
  succeeded,
  resultLine: `{"line":${lineNumber}}`,
  usage: succeeded ? { promptTokens: 3, cachedPromptTokens: 1, completionTokens: 5 } : null,
});

describe('BatchStore', () => {
  it('shows a tenant only its own files and batches', async () => {
    const mine = await addFile('acme');
    const theirs = await addFile('globex');
    const batch = addBatch('acme', mine.id);
    expect(store.file('acme', mine.id)?.id).toBe(mine.id);
    expect(store.file('acme', theirs.id)).toBeUndefined();
    expect(
      store.listFiles({ tenant: 'acme', limit: 10, order: 'desc' })?.items.map((file) => file.id),
    ).toEqual([mine.id]);
    expect(store.batch(batch.id, 'globex')).toBeUndefined();
    expect(store.listBatches({ tenant: 'globex', limit: 10 })?.items).toEqual([]);
    expect(store.deleteFile('globex', mine.id)).toBe(false);
    // A cursor from another tenant is no cursor at all.
    expect(store.listBatches({ tenant: 'globex', after: batch.id, limit: 10 })).toBeUndefined();
  });

  it('pages newest first with after and has_more, and filters files by purpose', async () => {
    const input = await addFile('acme');
    await addFile('acme', 'batch_output');
    const ids = [addBatch('acme', input.id).id, addBatch('acme', input.id).id, addBatch('acme', input.id).id];
    const first = store.listBatches({ tenant: 'acme', limit: 2 });
    expect(first?.items.map((batch) => batch.id)).toEqual([ids[2], ids[1]]);
    expect(first?.hasMore).toBe(true);
    const second = store.listBatches({ tenant: 'acme', after: ids[1], limit: 2 });
    expect(second?.items.map((batch) => batch.id)).toEqual([ids[0]]);
    expect(second?.hasMore).toBe(false);
    expect(
      store
        .listFiles({ tenant: 'acme', purpose: 'batch', limit: 10, order: 'asc' })
        ?.items.map((file) => file.id),
    ).toEqual([input.id]);
  });

  it('counts each line once, even when its outcome is recorded twice (a re-run after a crash)', async () => {
    const input = await addFile('acme');
    const batch = addBatch('acme', input.id);
    store.startBatch(batch.id, { total: 3, malformed: [outcome(2, false)], atSeconds: 5 });
    store.recordLine(batch.id, outcome(1, true));
    store.recordLine(batch.id, outcome(1, true));
    expect(store.batch(batch.id)).toMatchObject({
      status: 'in_progress',
      inProgressAt: 5,
      validated: true,
      total: 3,
      completed: 1,
      failed: 1,
      promptTokens: 3,
      cachedPromptTokens: 1,
      completionTokens: 5,
    });
    expect([...store.recordedLineNumbers(batch.id)].sort()).toEqual([1, 2]);
  });

  it('lets a cancel and the runner race without overwriting each other', async () => {
    const input = await addFile('acme');
    const batch = addBatch('acme', input.id);
    expect(
      store.setStatus(batch.id, {
        status: 'cancelling',
        from: ['validating', 'in_progress'],
        stamp: { field: 'cancellingAt', atSeconds: 2 },
      }),
    ).toBe(true);
    // Validation finishing later leaves the batch cancelling.
    store.startBatch(batch.id, { total: 1, malformed: [], atSeconds: 3 });
    expect(store.batch(batch.id)).toMatchObject({ status: 'cancelling', inProgressAt: null, total: 1 });
    expect(
      store.finishBatch(batch.id, { status: 'completed', atSeconds: 4, outputFile: null, errorFile: null }),
    ).toBe(false);
    expect(
      store.finishBatch(batch.id, { status: 'cancelled', atSeconds: 4, outputFile: null, errorFile: null }),
    ).toBe(true);
    expect(store.batch(batch.id)).toMatchObject({ status: 'cancelled', cancelledAt: 4, cancellingAt: 2 });
    expect(store.unfinishedBatches()).toEqual([]);
    expect(store.batchesReading('acme', input.id)).toEqual([]);
  });

  it('keeps the key that created a batch, and reads batches stored before keys were recorded', async () => {
    const input = await addFile('acme');
    const keyed = addBatch('acme', input.id, '0123456789ab');
    expect(store.batch(keyed.id)?.apiKeyId).toBe('0123456789ab');

    // A store written by an older Gravity: the batches table has no api_key_id column.
    store.close();
    const older = new Database(path.join(directory, 'batches.sqlite'));
    older.exec('ALTER TABLE batches DROP COLUMN api_key_id');
    older
      .prepare(
        `INSERT INTO batches (id, tenant, endpoint, input_file_id, completion_window, status, created_at,
         expires_at) VALUES ('batch_old', 'acme', '/v1/chat/completions', ?, '24h', 'in_progress', 1, 86401)`,
      )
      .run(input.id);
    older.close();
    store = new BatchStore(directory);
    expect(store.batch('batch_old')).toMatchObject({ tenant: 'acme', apiKeyId: null, status: 'in_progress' });
    expect(store.unfinishedBatches().map((batch) => batch.id)).toContain('batch_old');
    const after = addBatch('acme', input.id, 'ba9876543210');
    expect(store.batch(after.id)?.apiKeyId).toBe('ba9876543210');
  });
});
