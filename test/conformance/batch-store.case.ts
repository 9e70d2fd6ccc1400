import { writeFileSync } from 'node:fs';
import { buffer } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type BatchStore,
  newObjectId,
  type StoredBatch,
  type StoredFile,
} from '../../src/batch/batch-store.js';

/**
 * What every batch store promises (`src/batch/batch-store.ts`), run against SQLite and PostgreSQL alike.
 * `newDatabase` gives each test an empty store's backing database, and opens stores on it: two opened on
 * one database are two gateways sharing it (a shared store's leases are checked that way).
 */
export type OpenBatchStore = (options?: { leaseMs?: number }) => Promise<BatchStore>;

export function describeBatchStoreConformance(
  name: string,
  newDatabase: () => Promise<OpenBatchStore>,
): void {
  describe(name, () => {
    const opened: BatchStore[] = [];
    let open: OpenBatchStore;
    let store: BatchStore;
    const openStore: OpenBatchStore = async (options) => {
      const next = await open(options);
      opened.push(next);
      return next;
    };
    const fresh = async () => {
      open = await newDatabase();
      store = await openStore();
    };
    afterEach(async () => {
      for (const each of opened.splice(0)) await each.close();
    });

    async function addFile(
      tenant: string,
      purpose: StoredFile['purpose'] = 'batch',
      content = '{}',
      into: BatchStore = store,
    ): Promise<StoredFile> {
      const file: StoredFile = {
        id: newObjectId('file-'),
        tenant,
        purpose,
        filename: 'in.jsonl',
        bytes: Buffer.byteLength(content),
        createdAtSeconds: 1,
      };
      writeFileSync(into.uploadPath(file.id), content);
      await into.commitUpload(file);
      return file;
    }

    async function addBatch(tenant: string, inputFileId: string, apiKeyId: string | null = null) {
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
      await store.insertBatch(batch);
      return batch;
    }

    const outcome = (lineNumber: number, succeeded: boolean) => ({
      lineNumber,
      succeeded,
      resultLine: `{"line":${lineNumber}}`,
      usage: succeeded ? { promptTokens: 3, cachedPromptTokens: 1, completionTokens: 5 } : null,
    });

    it('shows a tenant only its own files and batches', async () => {
      await fresh();
      const mine = await addFile('acme');
      const theirs = await addFile('globex');
      const batch = await addBatch('acme', mine.id);
      expect((await store.file('acme', mine.id))?.id).toBe(mine.id);
      expect(await store.file('acme', theirs.id)).toBeUndefined();
      expect(
        (await store.listFiles({ tenant: 'acme', limit: 10, order: 'desc' }))?.items.map((file) => file.id),
      ).toEqual([mine.id]);
      expect(await store.batch(batch.id, 'globex')).toBeUndefined();
      expect((await store.listBatches({ tenant: 'globex', limit: 10 }))?.items).toEqual([]);
      expect(await store.deleteFile('globex', mine.id)).toBe(false);
      // A cursor from another tenant is no cursor at all.
      expect(await store.listBatches({ tenant: 'globex', after: batch.id, limit: 10 })).toBeUndefined();
      expect(await store.batch(batch.id)).toMatchObject({ metadata: { job: 'nightly' }, validated: false });
    });

    it('pages newest first with after and has_more, and filters files by purpose', async () => {
      await fresh();
      const input = await addFile('acme');
      await addFile('acme', 'batch_output');
      const ids: string[] = [];
      for (let index = 0; index < 3; index++) ids.push((await addBatch('acme', input.id)).id);
      const first = await store.listBatches({ tenant: 'acme', limit: 2 });
      expect(first?.items.map((batch) => batch.id)).toEqual([ids[2], ids[1]]);
      expect(first?.hasMore).toBe(true);
      const second = await store.listBatches({ tenant: 'acme', after: ids[1], limit: 2 });
      expect(second?.items.map((batch) => batch.id)).toEqual([ids[0]]);
      expect(second?.hasMore).toBe(false);
      expect(
        (await store.listFiles({ tenant: 'acme', purpose: 'batch', limit: 10, order: 'asc' }))?.items.map(
          (file) => file.id,
        ),
      ).toEqual([input.id]);
    });

    it('gives back a file byte for byte (several MiB), as text and as a stream, and deletes it', async () => {
      await fresh();
      // Past the PostgreSQL store's 1 MiB rows, with a multi-byte character across a row boundary.
      const content = `${'x'.repeat(1024 * 1024 - 1)}é${'y'.repeat(2 * 1024 * 1024)}\n`;
      const file = await addFile('acme', 'batch', content);
      expect(await store.readFileText(file.id)).toBe(content);
      expect((await buffer(store.fileContent(file.id))).equals(Buffer.from(content))).toBe(true);
      const bytes = await store.writeFileBytes('file-result', '{"id":"x"}\n');
      expect(bytes).toBe(11);
      expect(await store.readFileText('file-nothing')).toBeUndefined();
      expect(await store.deleteFile('acme', file.id)).toBe(true);
      expect(await store.file('acme', file.id)).toBeUndefined();
      expect(await store.readFileText(file.id)).toBeUndefined();
    });

    it('counts each line once, even when its outcome is recorded twice (a re-run after a crash)', async () => {
      await fresh();
      const input = await addFile('acme');
      const batch = await addBatch('acme', input.id);
      expect(await store.claim(batch.id)).toBe(true);
      expect(
        await store.startBatch(batch.id, { total: 3, malformed: [outcome(2, false)], atSeconds: 5 }),
      ).toBe(true);
      expect(await store.recordLine(batch.id, outcome(1, true))).toBe(true);
      await store.recordLine(batch.id, outcome(1, true));
      expect(await store.batch(batch.id)).toMatchObject({
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
      expect([...(await store.recordedLineNumbers(batch.id))].sort()).toEqual([1, 2]);
      const lines: number[] = [];
      for await (const line of store.recordedLines(batch.id)) lines.push(line.lineNumber);
      expect(lines).toEqual([1, 2]);
    });

    it('lets a cancel and the runner race without overwriting each other', async () => {
      await fresh();
      const input = await addFile('acme');
      const batch = await addBatch('acme', input.id);
      expect(await store.claim(batch.id)).toBe(true);
      expect(
        await store.setStatus(batch.id, {
          status: 'cancelling',
          from: ['validating', 'in_progress'],
          stamp: { field: 'cancellingAt', atSeconds: 2 },
        }),
      ).toBe(true);
      // Validation finishing later leaves the batch cancelling.
      await store.startBatch(batch.id, { total: 1, malformed: [], atSeconds: 3 });
      expect(await store.batch(batch.id)).toMatchObject({
        status: 'cancelling',
        inProgressAt: null,
        total: 1,
      });
      expect((await store.renew(batch.id)).status).toBe('cancelling');
      expect(
        await store.finishBatch(batch.id, {
          status: 'completed',
          atSeconds: 4,
          outputFile: null,
          errorFile: null,
        }),
      ).toBe(false);
      expect(
        await store.finishBatch(batch.id, {
          status: 'cancelled',
          atSeconds: 4,
          outputFile: null,
          errorFile: null,
        }),
      ).toBe(true);
      expect(await store.batch(batch.id)).toMatchObject({
        status: 'cancelled',
        cancelledAt: 4,
        cancellingAt: 2,
      });
      expect(await store.claimableBatchIds()).toEqual([]);
      expect(await store.batchesReading('acme', input.id)).toEqual([]);
    });

    it('keeps the key that created a batch', async () => {
      await fresh();
      const input = await addFile('acme');
      const keyed = await addBatch('acme', input.id, '0123456789ab');
      expect((await store.batch(keyed.id))?.apiKeyId).toBe('0123456789ab');
      expect(await store.claimableBatchIds()).toEqual([keyed.id]);
    });

    it('when shared: one runner holds a batch; a lapsed lease passes on, and its holder can write no more', async (context) => {
      await fresh();
      if (!store.shared) {
        context.skip();
        return;
      }
      const input = await addFile('acme');
      const batch = await addBatch('acme', input.id);
      const first = await openStore({ leaseMs: 1000 });
      const second = await openStore({ leaseMs: 1000 });
      expect(await first.claim(batch.id)).toBe(true);
      expect(await second.claim(batch.id)).toBe(false);
      expect(await second.claimableBatchIds()).toEqual([]);
      expect(await first.renew(batch.id)).toEqual({ held: true, status: 'validating' });
      expect(await first.startBatch(batch.id, { total: 2, malformed: [], atSeconds: 3 })).toBe(true);
      expect(await first.recordLine(batch.id, outcome(0, true))).toBe(true);
      // The second may not write for a batch it does not hold.
      expect(await second.recordLine(batch.id, outcome(1, true))).toBe(false);

      // The first stops renewing (killed): after its lease, the second takes the batch over.
      await new Promise((resolve) => setTimeout(resolve, 1200));
      expect(await second.claimableBatchIds()).toEqual([batch.id]);
      expect(await second.claim(batch.id)).toBe(true);
      expect(await first.renew(batch.id)).toEqual({ held: false, status: 'in_progress' });
      expect(await first.recordLine(batch.id, outcome(1, false))).toBe(false);
      expect(await second.recordLine(batch.id, outcome(1, true))).toBe(true);
      expect(await store.batch(batch.id)).toMatchObject({ completed: 2, failed: 0 });

      // A release frees the batch at once.
      await second.release(batch.id);
      expect(await first.claim(batch.id)).toBe(true);
    });
  });
}
