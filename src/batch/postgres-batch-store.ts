import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Sql, TransactionSql } from 'postgres';
import { makePrivateDirectory } from '../core/private-files.js';
import {
  type BatchFinish,
  type BatchListQuery,
  type BatchRow,
  type BatchStatus,
  type BatchStore,
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
  unfinishedBatchStatuses,
} from './batch-store.js';

/**
 * File bytes are stored in rows of this size: an upload or a download moves one row at a time, so
 * neither the gateway nor the server holds a whole 100 MiB file in one value.
 */
const chunkBytes = 1024 * 1024;

/** Line outcomes read back per query when a batch's result files are written. */
const recordedLinesPage = 1000;

const batchColumns = `id, tenant, api_key_id, endpoint, input_file_id, completion_window, status, created_at,
  expires_at, in_progress_at, finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at,
  output_file_id, error_file_id, errors_json, metadata_json, validated, total, completed, failed,
  prompt_tokens, cached_prompt_tokens, completion_tokens`;

/**
 * The Batch API's files, batches and line outcomes in the fleet's PostgreSQL (the ledger's database;
 * migration 0002 holds the schema), so that any replica answers for any batch and a batch outlives the
 * replica that ran it.
 *
 * Leases: a batch row names the runner that holds it (`lease_owner`) until `lease_expires_at`, on the
 * database's clock (replicas' clocks never compare). A runner renews every second or so; a replica killed
 * mid-batch stops renewing, and once its lease runs out another replica claims the batch and runs the
 * lines that have no outcome. Writes that depend on owning the batch check the lease in the same
 * statement, so a replica that stalled past its lease cannot record a line its successor records too.
 *
 * File bytes are rows of 1 MiB (`batch_file_chunks`); an upload lands in a local private folder first
 * (`uploadPath`), then goes in with its file row in one transaction.
 */
export class PostgresBatchStore implements BatchStore {
  readonly shared = true;
  /** This runner's name in `lease_owner`: host, process and a random part (a restarted pid differs). */
  readonly owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;

  constructor(
    private readonly sql: Sql,
    private readonly options: {
      /** A private local folder where uploads land before they go into the database. */
      stagingDirectory: string;
      /** How long a claim holds without renewal: a killed replica's batches wait this long for another. */
      leaseMs: number;
    },
  ) {
    makePrivateDirectory(options.stagingDirectory, { owned: true });
  }

  async close(): Promise<void> {
    await this.sql.end({ timeout: 5 });
  }

  uploadPath(fileId: string): string {
    return path.join(this.options.stagingDirectory, `${fileId}.part`);
  }

  async commitUpload(file: StoredFile): Promise<void> {
    await this.sql.begin(async (transaction) => {
      let chunk = 0;
      // Read a chunk at a time: a 100 MiB upload never sits whole in the gateway's memory.
      for await (const bytes of createReadStream(this.uploadPath(file.id), { highWaterMark: chunkBytes })) {
        await transaction`INSERT INTO batch_file_chunks (file_id, chunk, content)
          VALUES (${file.id}, ${chunk++}, ${bytes as Buffer})`;
      }
      await this.insertFile(transaction, file);
    });
  }

  async writeFileBytes(fileId: string, content: string): Promise<number> {
    const bytes = Buffer.from(content, 'utf8');
    // Bytes without a file row are invisible; a replica killed before `finishBatch` leaves them behind,
    // and its successor writes the result files again under new ids.
    await this.sql.begin(async (transaction) => {
      for (let chunk = 0; chunk * chunkBytes < bytes.length || chunk === 0; chunk++) {
        const part = bytes.subarray(chunk * chunkBytes, (chunk + 1) * chunkBytes);
        await transaction`INSERT INTO batch_file_chunks (file_id, chunk, content) VALUES (${fileId}, ${chunk}, ${part})`;
      }
    });
    return bytes.length;
  }

  async readFileText(fileId: string): Promise<string | undefined> {
    const [file] = await this.sql<Array<{ id: string }>>`SELECT id FROM batch_files WHERE id = ${fileId}`;
    if (!file) return undefined;
    const parts: Buffer[] = [];
    for await (const part of this.chunks(fileId)) parts.push(part);
    return Buffer.concat(parts).toString('utf8');
  }

  fileContent(fileId: string): Readable {
    return Readable.from(this.chunks(fileId));
  }

  /** A file's bytes one stored row at a time, in order. */
  private async *chunks(fileId: string): AsyncGenerator<Buffer> {
    for (let chunk = 0; ; chunk++) {
      const [row] = await this.sql<Array<{ content: Buffer }>>`
        SELECT content FROM batch_file_chunks WHERE file_id = ${fileId} AND chunk = ${chunk}`;
      if (!row) return;
      yield row.content;
    }
  }

  private async insertFile(sql: Sql | TransactionSql, file: StoredFile): Promise<void> {
    await sql`INSERT INTO batch_files (id, tenant, purpose, filename, bytes, created_at)
      VALUES (${file.id}, ${file.tenant}, ${file.purpose}, ${file.filename}, ${file.bytes}, ${file.createdAtSeconds})`;
  }

  async file(tenant: string, fileId: string): Promise<StoredFile | undefined> {
    const [row] = await this.sql<FileRow[]>`
      SELECT id, tenant, purpose, filename, bytes, created_at FROM batch_files
      WHERE id = ${fileId} AND tenant = ${tenant}`;
    return row && fileOf(row);
  }

  async listFiles(options: FileListQuery): Promise<ListPage<StoredFile> | undefined> {
    const { tenant, purpose, after, limit, order } = options;
    let afterSeq: number | null = null;
    if (after !== undefined) {
      const [row] = await this.sql<Array<{ seq: number }>>`
        SELECT seq FROM batch_files WHERE id = ${after} AND tenant = ${tenant}`;
      if (!row) return undefined;
      afterSeq = row.seq;
    }
    const sql = this.sql;
    const rows = await sql<FileRow[]>`
      SELECT id, tenant, purpose, filename, bytes, created_at FROM batch_files WHERE tenant = ${tenant}
      ${purpose === undefined ? sql`` : sql`AND purpose = ${purpose}`}
      ${afterSeq === null ? sql`` : order === 'desc' ? sql`AND seq < ${afterSeq}` : sql`AND seq > ${afterSeq}`}
      ORDER BY seq ${order === 'desc' ? sql`DESC` : sql`ASC`} LIMIT ${limit + 1}`;
    return { items: rows.slice(0, limit).map(fileOf), hasMore: rows.length > limit };
  }

  async batchesReading(tenant: string, fileId: string): Promise<string[]> {
    const rows = await this.sql<Array<{ id: string }>>`
      SELECT id FROM batches WHERE tenant = ${tenant} AND input_file_id = ${fileId}
      AND status IN ${this.sql(unfinishedBatchStatuses as BatchStatus[])}`;
    return rows.map((row) => row.id);
  }

  async deleteFile(tenant: string, fileId: string): Promise<boolean> {
    return this.sql.begin(async (transaction) => {
      const deleted = await transaction`DELETE FROM batch_files WHERE id = ${fileId} AND tenant = ${tenant}`;
      if (deleted.count === 0) return false;
      await transaction`DELETE FROM batch_file_chunks WHERE file_id = ${fileId}`;
      return true;
    });
  }

  async insertBatch(batch: StoredBatch): Promise<void> {
    await this.sql`INSERT INTO batches (id, tenant, api_key_id, endpoint, input_file_id, completion_window,
      status, created_at, expires_at, metadata_json) VALUES (${batch.id}, ${batch.tenant}, ${batch.apiKeyId},
      ${batch.endpoint}, ${batch.inputFileId}, ${batch.completionWindow}, ${batch.status}, ${batch.createdAt},
      ${batch.expiresAt}, ${batch.metadata === null ? null : this.sql.json(batch.metadata)})`;
  }

  async batch(batchId: string, tenant?: string): Promise<StoredBatch | undefined> {
    const sql = this.sql;
    const [row] = await sql<BatchRow[]>`
      SELECT ${sql.unsafe(batchColumns)} FROM batches WHERE id = ${batchId}
      ${tenant === undefined ? sql`` : sql`AND tenant = ${tenant}`}`;
    return row && batchOf(row);
  }

  async listBatches(options: BatchListQuery): Promise<ListPage<StoredBatch> | undefined> {
    const { tenant, after, limit } = options;
    const sql = this.sql;
    let afterSeq: number | null = null;
    if (after !== undefined) {
      const [row] = await sql<Array<{ seq: number }>>`
        SELECT seq FROM batches WHERE id = ${after} AND tenant = ${tenant}`;
      if (!row) return undefined;
      afterSeq = row.seq;
    }
    const rows = await sql<BatchRow[]>`
      SELECT ${sql.unsafe(batchColumns)} FROM batches WHERE tenant = ${tenant}
      ${afterSeq === null ? sql`` : sql`AND seq < ${afterSeq}`} ORDER BY seq DESC LIMIT ${limit + 1}`;
    return { items: rows.slice(0, limit).map(batchOf), hasMore: rows.length > limit };
  }

  async claimableBatchIds(): Promise<string[]> {
    const rows = await this.sql<Array<{ id: string }>>`
      SELECT id FROM batches WHERE status IN ${this.sql(unfinishedBatchStatuses as BatchStatus[])}
      AND (lease_owner IS NULL OR lease_expires_at < clock_timestamp() OR lease_owner = ${this.owner})
      ORDER BY seq`;
    return rows.map((row) => row.id);
  }

  async claim(batchId: string): Promise<boolean> {
    const claimed = await this.sql`
      UPDATE batches SET lease_owner = ${this.owner}, lease_expires_at = ${this.leaseEnd()}
      WHERE id = ${batchId} AND status IN ${this.sql(unfinishedBatchStatuses as BatchStatus[])}
      AND (lease_owner IS NULL OR lease_expires_at < clock_timestamp() OR lease_owner = ${this.owner})`;
    return claimed.count > 0;
  }

  async renew(batchId: string): Promise<LeaseRenewal> {
    const [row] = await this.sql<Array<{ status: string }>>`
      UPDATE batches SET lease_expires_at = ${this.leaseEnd()}
      WHERE id = ${batchId} AND lease_owner = ${this.owner} RETURNING status`;
    if (row) return { held: true, status: row.status as BatchStatus };
    const [current] = await this.sql<
      Array<{ status: string }>
    >`SELECT status FROM batches WHERE id = ${batchId}`;
    return { held: false, status: (current?.status as BatchStatus | undefined) ?? null };
  }

  async release(batchId: string): Promise<void> {
    await this.sql`UPDATE batches SET lease_owner = NULL, lease_expires_at = NULL
      WHERE id = ${batchId} AND lease_owner = ${this.owner}`;
  }

  /** `clock_timestamp() + leaseMs` as SQL: the lease's end on the database's clock. */
  private leaseEnd() {
    return this.sql`clock_timestamp() + make_interval(secs => ${this.options.leaseMs / 1000})`;
  }

  /** `AND` the lease is this runner's, for writes only the batch's runner may make. */
  private leaseHeld(sql: Sql | TransactionSql) {
    return sql`lease_owner = ${this.owner} AND lease_expires_at >= clock_timestamp()`;
  }

  async setStatus(batchId: string, options: Parameters<BatchStore['setStatus']>[1]): Promise<boolean> {
    return this.setStatusIn(this.sql, batchId, options);
  }

  private async setStatusIn(
    sql: Sql | TransactionSql,
    batchId: string,
    options: Parameters<BatchStore['setStatus']>[1],
  ): Promise<boolean> {
    const { status, from, stamp, errors } = options;
    const changed = await sql`
      UPDATE batches SET status = ${status}
      ${stamp ? sql`, ${sql(batchTimestampColumns[stamp.field])} = ${stamp.atSeconds}` : sql``}
      ${errors ? sql`, errors_json = ${sql.json(errors as never)}` : sql``}
      WHERE id = ${batchId} AND status IN ${sql(from as BatchStatus[])}`;
    return changed.count > 0;
  }

  async startBatch(
    batchId: string,
    options: { total: number; malformed: LineOutcome[]; atSeconds: number },
  ): Promise<boolean> {
    return this.sql.begin(async (transaction) => {
      const started = await transaction`UPDATE batches SET total = ${options.total}, validated = true
        WHERE id = ${batchId} AND validated = false AND ${this.leaseHeld(transaction)}`;
      // Nothing changed: validated already (a restart), or the lease is gone.
      if (started.count === 0) return this.holds(transaction, batchId);
      await this.recordLinesIn(transaction, batchId, options.malformed);
      // A batch cancelled while validating stays `cancelling`.
      await this.setStatusIn(transaction, batchId, {
        status: 'in_progress',
        from: ['validating'],
        stamp: { field: 'inProgressAt', atSeconds: options.atSeconds },
      });
      return true;
    });
  }

  /** Whether this runner still holds the batch's lease. */
  private async holds(sql: Sql | TransactionSql, batchId: string): Promise<boolean> {
    const [row] = await sql`SELECT 1 FROM batches WHERE id = ${batchId} AND ${this.leaseHeld(sql)}`;
    return row !== undefined;
  }

  async recordLine(batchId: string, outcome: LineOutcome): Promise<boolean> {
    return this.sql.begin(async (transaction) => {
      // Locks the batch row for the transaction: the lease cannot change hands between this check and
      // the insert, so an outcome recorded here was recorded by the batch's one runner.
      const [held] =
        await transaction`SELECT 1 FROM batches WHERE id = ${batchId} AND ${this.leaseHeld(transaction)}
        FOR UPDATE`;
      if (!held) return false;
      await this.recordLinesIn(transaction, batchId, [outcome]);
      return true;
    });
  }

  private async recordLinesIn(
    transaction: TransactionSql,
    batchId: string,
    outcomes: readonly LineOutcome[],
  ): Promise<void> {
    for (const outcome of outcomes) {
      const inserted = await transaction`
        INSERT INTO batch_lines (batch_id, line_number, succeeded, result_line)
        VALUES (${batchId}, ${outcome.lineNumber}, ${outcome.succeeded}, ${outcome.resultLine})
        ON CONFLICT DO NOTHING`;
      // A line recorded twice is counted once.
      if (inserted.count === 0) continue;
      await transaction`UPDATE batches SET
        completed = completed + ${outcome.succeeded ? 1 : 0}, failed = failed + ${outcome.succeeded ? 0 : 1},
        prompt_tokens = prompt_tokens + ${outcome.usage?.promptTokens ?? 0},
        cached_prompt_tokens = cached_prompt_tokens + ${outcome.usage?.cachedPromptTokens ?? 0},
        completion_tokens = completion_tokens + ${outcome.usage?.completionTokens ?? 0}
        WHERE id = ${batchId}`;
    }
  }

  async recordedLineNumbers(batchId: string): Promise<Set<number>> {
    const rows = await this.sql<Array<{ line_number: number }>>`
      SELECT line_number FROM batch_lines WHERE batch_id = ${batchId}`;
    return new Set(rows.map((row) => row.line_number));
  }

  async *recordedLines(
    batchId: string,
  ): AsyncGenerator<{ lineNumber: number; succeeded: boolean; resultLine: string }> {
    let after = -1;
    for (;;) {
      const rows = await this.sql<Array<{ line_number: number; succeeded: boolean; result_line: string }>>`
        SELECT line_number, succeeded, result_line FROM batch_lines
        WHERE batch_id = ${batchId} AND line_number > ${after} ORDER BY line_number LIMIT ${recordedLinesPage}`;
      for (const row of rows)
        yield { lineNumber: row.line_number, succeeded: row.succeeded, resultLine: row.result_line };
      if (rows.length < recordedLinesPage) return;
      after = (rows.at(-1) as { line_number: number }).line_number;
    }
  }

  async finishBatch(batchId: string, options: BatchFinish): Promise<boolean> {
    const { field, from } = batchFinishes[options.status];
    return this.sql.begin(async (transaction) => {
      const [held] =
        await transaction`SELECT 1 FROM batches WHERE id = ${batchId} AND ${this.leaseHeld(transaction)}
        FOR UPDATE`;
      if (!held) return false;
      const changed = await this.setStatusIn(transaction, batchId, {
        status: options.status,
        from,
        stamp: { field, atSeconds: options.atSeconds },
      });
      if (!changed) return false;
      for (const file of [options.outputFile, options.errorFile])
        if (file) await this.insertFile(transaction, file);
      await transaction`UPDATE batches SET output_file_id = ${options.outputFile?.id ?? null},
        error_file_id = ${options.errorFile?.id ?? null}, lease_owner = NULL, lease_expires_at = NULL
        WHERE id = ${batchId}`;
      await transaction`DELETE FROM batch_lines WHERE batch_id = ${batchId}`;
      return true;
    });
  }
}
