import { createReadStream, rmSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { makePrivateDirectory, preparePrivateDatabaseFile, privateFileMode } from '../core/private-files.js';
import type { BatchValidationError } from './batch-input.js';
import {
  type BatchFinish,
  type BatchListQuery,
  type BatchRow,
  type BatchStatus,
  type BatchStore,
  type BatchTimestamps,
  batchFinishes,
  batchOf,
  batchTimestampColumns,
  type FileListQuery,
  type FileRow,
  fileOf,
  type LeaseRenewal,
  type LineOutcome,
  type ListPage,
  type StoredBatch,
  type StoredFile,
} from './batch-store.js';

const schema = `
CREATE TABLE IF NOT EXISTS files (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  tenant TEXT NOT NULL,
  purpose TEXT NOT NULL,
  filename TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS files_tenant ON files (tenant, seq);
CREATE TABLE IF NOT EXISTS batches (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  tenant TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  input_file_id TEXT NOT NULL,
  completion_window TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  in_progress_at INTEGER,
  finalizing_at INTEGER,
  completed_at INTEGER,
  failed_at INTEGER,
  expired_at INTEGER,
  cancelling_at INTEGER,
  cancelled_at INTEGER,
  output_file_id TEXT,
  error_file_id TEXT,
  errors_json TEXT,
  metadata_json TEXT,
  validated INTEGER NOT NULL DEFAULT 0,
  total INTEGER NOT NULL DEFAULT 0,
  completed INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  prompt_tokens INTEGER NOT NULL DEFAULT 0,
  cached_prompt_tokens INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0,
  api_key_id TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS batches_tenant ON batches (tenant, seq);
CREATE TABLE IF NOT EXISTS batch_lines (
  batch_id TEXT NOT NULL,
  line_number INTEGER NOT NULL,
  succeeded INTEGER NOT NULL,
  result_line TEXT NOT NULL,
  PRIMARY KEY (batch_id, line_number)
) STRICT;
`;

/**
 * Columns added after the first release: a store written by an older Gravity gets them (null for the
 * rows it holds), so its batches stay readable and resumable.
 */
function addMissingColumns(database: Database.Database): void {
  const columns = new Set(
    (database.pragma('table_info(batches)') as { name: string }[]).map((column) => column.name),
  );
  if (!columns.has('api_key_id')) database.exec('ALTER TABLE batches ADD COLUMN api_key_id TEXT');
}

/**
 * Files and batches that survive a restart: metadata and each line's outcome in one SQLite file
 * (`batches.sqlite`), file bytes under `files/`. Every change is one transaction; in WAL mode with
 * `synchronous = NORMAL` a committed transaction survives a crash of the process (not a power loss),
 * as the ledger promises. Lookups take the tenant: a tenant sees only its own objects. One gateway owns
 * the folder, so its runner's claims always hold (`shared` is false).
 */
export class SqliteBatchStore implements BatchStore {
  readonly shared = false;
  private readonly database: Database.Database;
  readonly filesDirectory: string;

  constructor(directory: string) {
    this.filesDirectory = path.join(directory, 'files');
    // Tenants' prompts and answers: readable by Gravity's user only (files 0600 in a 0700 folder).
    makePrivateDirectory(this.filesDirectory, { owned: true });
    preparePrivateDatabaseFile(path.join(directory, 'batches.sqlite'));
    this.database = new Database(path.join(directory, 'batches.sqlite'));
    this.database.pragma('journal_mode = WAL');
    this.database.pragma('synchronous = NORMAL');
    this.database.pragma('busy_timeout = 5000');
    this.database.exec(schema);
    addMissingColumns(this.database);
  }

  async close(): Promise<void> {
    this.database.close();
  }

  /** Where a file's bytes live. Ids are generated here, never taken from a client, so no path escapes. */
  filePath(fileId: string): string {
    return path.join(this.filesDirectory, fileId);
  }

  /** A path for bytes still being written; `commitUpload` moves them into place. */
  uploadPath(fileId: string): string {
    return path.join(this.filesDirectory, `${fileId}.part`);
  }

  async commitUpload(file: StoredFile): Promise<void> {
    await rename(this.uploadPath(file.id), this.filePath(file.id));
    this.insertFile(file);
  }

  async writeFileBytes(fileId: string, content: string): Promise<number> {
    const bytes = Buffer.from(content, 'utf8');
    await writeFile(this.uploadPath(fileId), bytes, { mode: privateFileMode });
    await rename(this.uploadPath(fileId), this.filePath(fileId));
    return bytes.length;
  }

  async readFileText(fileId: string): Promise<string | undefined> {
    try {
      return await readFile(this.filePath(fileId), 'utf8');
    } catch {
      return undefined;
    }
  }

  fileContent(fileId: string): Readable {
    return createReadStream(this.filePath(fileId));
  }

  private insertFile(file: StoredFile): void {
    this.database
      .prepare(
        'INSERT INTO files (id, tenant, purpose, filename, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      )
      .run(file.id, file.tenant, file.purpose, file.filename, file.bytes, file.createdAtSeconds);
  }

  async file(tenant: string, fileId: string): Promise<StoredFile | undefined> {
    const row = this.database
      .prepare('SELECT * FROM files WHERE id = ? AND tenant = ?')
      .get(fileId, tenant) as FileRow | undefined;
    return row && fileOf(row);
  }

  async listFiles(options: FileListQuery): Promise<ListPage<StoredFile> | undefined> {
    const { tenant, purpose, after, limit, order } = options;
    let afterSeq: number | undefined;
    if (after !== undefined) {
      const row = this.database
        .prepare('SELECT seq FROM files WHERE id = ? AND tenant = ?')
        .get(after, tenant) as { seq: number } | undefined;
      if (!row) return undefined;
      afterSeq = row.seq;
    }
    const rows = this.database
      .prepare(
        `SELECT * FROM files WHERE tenant = @tenant
         ${purpose === undefined ? '' : 'AND purpose = @purpose'}
         ${afterSeq === undefined ? '' : order === 'desc' ? 'AND seq < @afterSeq' : 'AND seq > @afterSeq'}
         ORDER BY seq ${order === 'desc' ? 'DESC' : 'ASC'} LIMIT @limit`,
      )
      .all({ tenant, purpose, afterSeq, limit: limit + 1 }) as FileRow[];
    return { items: rows.slice(0, limit).map(fileOf), hasMore: rows.length > limit };
  }

  async batchesReading(tenant: string, fileId: string): Promise<string[]> {
    const rows = this.database
      .prepare(
        `SELECT id FROM batches WHERE tenant = ? AND input_file_id = ?
         AND status NOT IN ('failed', 'completed', 'expired', 'cancelled')`,
      )
      .all(tenant, fileId) as { id: string }[];
    return rows.map((row) => row.id);
  }

  async deleteFile(tenant: string, fileId: string): Promise<boolean> {
    const deleted = this.database
      .prepare('DELETE FROM files WHERE id = ? AND tenant = ?')
      .run(fileId, tenant).changes;
    if (deleted > 0) rmSync(this.filePath(fileId), { force: true });
    return deleted > 0;
  }

  async insertBatch(batch: StoredBatch): Promise<void> {
    this.database
      .prepare(
        `INSERT INTO batches (id, tenant, api_key_id, endpoint, input_file_id, completion_window, status,
         created_at, expires_at, metadata_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        batch.id,
        batch.tenant,
        batch.apiKeyId,
        batch.endpoint,
        batch.inputFileId,
        batch.completionWindow,
        batch.status,
        batch.createdAt,
        batch.expiresAt,
        batch.metadata === null ? null : JSON.stringify(batch.metadata),
      );
  }

  async batch(batchId: string, tenant?: string): Promise<StoredBatch | undefined> {
    const row = (
      tenant === undefined
        ? this.database.prepare('SELECT * FROM batches WHERE id = ?').get(batchId)
        : this.database.prepare('SELECT * FROM batches WHERE id = ? AND tenant = ?').get(batchId, tenant)
    ) as BatchRow | undefined;
    return row && batchOf(row);
  }

  async listBatches(options: BatchListQuery): Promise<ListPage<StoredBatch> | undefined> {
    const { tenant, after, limit } = options;
    let afterSeq: number | undefined;
    if (after !== undefined) {
      const row = this.database
        .prepare('SELECT seq FROM batches WHERE id = ? AND tenant = ?')
        .get(after, tenant) as { seq: number } | undefined;
      if (!row) return undefined;
      afterSeq = row.seq;
    }
    const rows = this.database
      .prepare(
        `SELECT * FROM batches WHERE tenant = @tenant ${afterSeq === undefined ? '' : 'AND seq < @afterSeq'}
         ORDER BY seq DESC LIMIT @limit`,
      )
      .all({ tenant, afterSeq, limit: limit + 1 }) as BatchRow[];
    return { items: rows.slice(0, limit).map(batchOf), hasMore: rows.length > limit };
  }

  /** Every unfinished batch: in this process, one runner runs them all. */
  async claimableBatchIds(): Promise<string[]> {
    return this.database
      .prepare(
        `SELECT id FROM batches WHERE status NOT IN ('failed', 'completed', 'expired', 'cancelled') ORDER BY seq`,
      )
      .pluck()
      .all() as string[];
  }

  async claim(): Promise<boolean> {
    return true;
  }

  async renew(batchId: string): Promise<LeaseRenewal> {
    return { held: true, status: (await this.batch(batchId))?.status ?? null };
  }

  async release(): Promise<void> {}

  async setStatus(batchId: string, options: Parameters<BatchStore['setStatus']>[1]): Promise<boolean> {
    return this.setStatusNow(batchId, options);
  }

  /** `setStatus` inside this store's own transactions. */
  private setStatusNow(
    batchId: string,
    options: {
      status: BatchStatus;
      from: readonly BatchStatus[];
      stamp?: { field: keyof BatchTimestamps; atSeconds: number };
      errors?: BatchValidationError[];
    },
  ): boolean {
    const { status, from, stamp, errors } = options;
    const sets = ['status = ?'];
    const values: unknown[] = [status];
    if (stamp) {
      sets.push(`${batchTimestampColumns[stamp.field]} = ?`);
      values.push(stamp.atSeconds);
    }
    if (errors) {
      sets.push('errors_json = ?');
      values.push(JSON.stringify(errors));
    }
    const sql = `UPDATE batches SET ${sets.join(', ')} WHERE id = ? AND status IN (${from.map(() => '?').join(', ')})`;
    return this.database.prepare(sql).run(...values, batchId, ...from).changes > 0;
  }

  async startBatch(
    batchId: string,
    options: { total: number; malformed: LineOutcome[]; atSeconds: number },
  ): Promise<boolean> {
    this.database.transaction(() => {
      this.database
        .prepare('UPDATE batches SET total = ?, validated = 1 WHERE id = ? AND validated = 0')
        .run(options.total, batchId);
      this.recordLinesUnchecked(batchId, options.malformed);
      // A batch cancelled while validating stays `cancelling`.
      this.setStatusNow(batchId, {
        status: 'in_progress',
        from: ['validating'],
        stamp: { field: 'inProgressAt', atSeconds: options.atSeconds },
      });
    })();
    return true;
  }

  async recordLine(batchId: string, outcome: LineOutcome): Promise<boolean> {
    this.database.transaction(() => this.recordLinesUnchecked(batchId, [outcome]))();
    return true;
  }

  private recordLinesUnchecked(batchId: string, outcomes: readonly LineOutcome[]): void {
    const insert = this.database.prepare(
      'INSERT OR IGNORE INTO batch_lines (batch_id, line_number, succeeded, result_line) VALUES (?, ?, ?, ?)',
    );
    const count = this.database.prepare(
      `UPDATE batches SET completed = completed + @completed, failed = failed + @failed,
       prompt_tokens = prompt_tokens + @promptTokens,
       cached_prompt_tokens = cached_prompt_tokens + @cachedPromptTokens,
       completion_tokens = completion_tokens + @completionTokens WHERE id = @batchId`,
    );
    for (const outcome of outcomes) {
      const inserted = insert.run(
        batchId,
        outcome.lineNumber,
        outcome.succeeded ? 1 : 0,
        outcome.resultLine,
      ).changes;
      // A line recorded twice (a re-run after a crash raced a late write) is counted once.
      if (inserted === 0) continue;
      count.run({
        batchId,
        completed: outcome.succeeded ? 1 : 0,
        failed: outcome.succeeded ? 0 : 1,
        promptTokens: outcome.usage?.promptTokens ?? 0,
        cachedPromptTokens: outcome.usage?.cachedPromptTokens ?? 0,
        completionTokens: outcome.usage?.completionTokens ?? 0,
      });
    }
  }

  async recordedLineNumbers(batchId: string): Promise<Set<number>> {
    const rows = this.database
      .prepare('SELECT line_number FROM batch_lines WHERE batch_id = ?')
      .pluck()
      .all(batchId) as number[];
    return new Set(rows);
  }

  async *recordedLines(
    batchId: string,
  ): AsyncGenerator<{ lineNumber: number; succeeded: boolean; resultLine: string }> {
    const statement = this.database.prepare(
      'SELECT line_number, succeeded, result_line FROM batch_lines WHERE batch_id = ? ORDER BY line_number',
    );
    for (const row of statement.iterate(batchId) as Iterable<{
      line_number: number;
      succeeded: number;
      result_line: string;
    }>) {
      yield { lineNumber: row.line_number, succeeded: row.succeeded === 1, resultLine: row.result_line };
    }
  }

  async finishBatch(batchId: string, options: BatchFinish): Promise<boolean> {
    const { field, from } = batchFinishes[options.status];
    return this.database.transaction(() => {
      const changed = this.setStatusNow(batchId, {
        status: options.status,
        from,
        stamp: { field, atSeconds: options.atSeconds },
      });
      if (!changed) return false;
      for (const file of [options.outputFile, options.errorFile]) if (file) this.insertFile(file);
      this.database
        .prepare('UPDATE batches SET output_file_id = ?, error_file_id = ? WHERE id = ?')
        .run(options.outputFile?.id ?? null, options.errorFile?.id ?? null, batchId);
      this.database.prepare('DELETE FROM batch_lines WHERE batch_id = ?').run(batchId);
      return true;
    })();
  }
}
