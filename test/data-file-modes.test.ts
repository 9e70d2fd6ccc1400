import { existsSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteBatchStore } from '../src/batch/sqlite-batch-store.js';
import { type Harness, startHarness } from './support/gravity-harness.js';

/**
 * Gravity's data files hold tenants' prompts (batch files, stored responses), their usage (the ledger)
 * and key hashes: only the user Gravity runs as may read them, even under the usual umask 022 that makes
 * new files world-readable (issue 14). Folders Gravity creates are 0700, files 0600, SQLite's -wal and
 * -shm files included.
 */
const modeOf = (file: string) => statSync(file).mode & 0o777;

let previousUmask: number | undefined;
beforeAll(() => {
  // The usual umask, so that a store that forgot its modes makes 0755 folders and 0644 files here.
  try {
    previousUmask = process.umask(0o022);
  } catch {
    // Worker threads cannot set the umask; the default of a login shell is 022 anyway.
  }
});
afterAll(() => {
  if (previousUmask !== undefined) process.umask(previousUmask);
});

describe('data files', () => {
  let harness: Harness;
  let dataDirectory: string;
  beforeAll(async () => {
    dataDirectory = path.join(mkdtempSync(path.join(tmpdir(), 'gravity-modes-')), 'data');
    harness = await startHarness(
      (config) => {
        config.metering.ledgerPath = path.join(dataDirectory, 'ledger', 'ledger.sqlite');
        config.auth.keysPath = path.join(dataDirectory, 'keys', 'keys.sqlite');
        config.batch.directory = path.join(dataDirectory, 'batch');
        config.responses.directory = path.join(dataDirectory, 'responses');
      },
      {
        engines: { solo: { type: 'emulated', hardware: 'h200', model: 'llama-3.1-8b', weightDtype: 'fp8' } },
        models: { 'llama-3.1-8b': { engine: 'solo' } },
      },
    );
  });
  afterAll(async () => {
    await harness?.close();
  });

  it('are created 0600 in 0700 folders by a running Gravity', async () => {
    await harness.client.chat.completions.create({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 2,
    });
    const uploaded = await harness.client.files.create({
      file: await toFile(Buffer.from('{"custom_id":"a"}\n'), 'in.jsonl'),
      purpose: 'batch',
    });

    const folders = ['ledger', 'keys', 'batch', 'batch/files', 'responses'].map((folder) =>
      path.join(dataDirectory, folder),
    );
    for (const folder of folders) expect([folder, modeOf(folder).toString(8)]).toEqual([folder, '700']);
    const files = [
      path.join(dataDirectory, 'batch', 'files', uploaded.id),
      ...folders.flatMap((folder) =>
        readdirSync(folder)
          .filter((name) => name !== 'files')
          .map((name) => path.join(folder, name)),
      ),
    ];
    // The ledger with its WAL files, the key store, the batch store, the responses store, the upload.
    expect(files.filter((file) => /\.sqlite(-wal|-shm)?$/.test(file)).length).toBeGreaterThanOrEqual(8);
    expect(existsSync(path.join(dataDirectory, 'ledger', 'ledger.sqlite-wal'))).toBe(true);
    for (const file of files) expect([file, modeOf(file).toString(8)]).toEqual([file, '600']);
  });

  it('keeps a batch result file 0600', async () => {
    const store = new SqliteBatchStore(path.join(dataDirectory, 'results'));
    try {
      await store.writeFileBytes('file-result', '{"id":"x"}\n');
      expect(modeOf(store.filePath('file-result')).toString(8)).toBe('600');
      expect(modeOf(store.filesDirectory).toString(8)).toBe('700');
    } finally {
      await store.close();
    }
  });
});
