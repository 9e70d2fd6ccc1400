import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { BatchEndpoint, BatchValidationError } from './batch-input.js';

export type FilePurpose = 'batch' | 'batch_output';

export interface StoredFile {
  id: string;
  tenant: string;
  purpose: FilePurpose;
  filename: string;
  bytes: number;
  createdAtSeconds: number;
}

export type BatchStatus =
  | 'validating'
  | 'failed'
  | 'in_progress'
  | 'finalizing'
  | 'completed'
  | 'expired'
  | 'cancelling'
  | 'cancelled';

/** Statuses a batch never leaves. */
export const terminalBatchStatuses: ReadonlySet<BatchStatus> = new Set([
  'failed',
  'completed',
  'expired',
  'cancelled',
]);

/** The timestamps OpenAI's batch object carries, in Unix seconds; null until the batch gets there. */
export interface BatchTimestamps {
  inProgressAt: number | null;
  finalizingAt: number | null;
  completedAt: number | null;
  failedAt: number | null;
  expiredAt: number | null;
  cancellingAt: number | null;
  cancelledAt: number | null;
}

export interface StoredBatch extends BatchTimestamps {
  id: string;
  tenant: string;
  /**
   * The key that created the batch: its lines run under its limits and carry its id in the ledger. Null
   * in open mode, and for batches stored before Gravity recorded it (they run under the tenant alone).
   */
  apiKeyId: string | null;
  endpoint: BatchEndpoint;
  inputFileId: string;
  completionWindow: string;
  status: BatchStatus;
  createdAt: number;
  expiresAt: number;
  outputFileId: string | null;
  errorFileId: string | null;
  errors: BatchValidationError[] | null;
  metadata: Record<string, string> | null;
  /** The input file was read and its malformed lines recorded (a restart need not do it again). */
  validated: boolean;
  total: number;
  completed: number;
  failed: number;
  promptTokens: number;
  cachedPromptTokens: number;
  completionTokens: number;
}

/** One line's final outcome: the line as it will appear in the output or error file. */
export interface LineOutcome {
  lineNumber: number;
  /** True: output file (a 2xx response). False: error file. */
  succeeded: boolean;
  /** The JSON text of the line, `{id, custom_id, response, error}`. */
  resultLine: string;
  usage: { promptTokens: number; cachedPromptTokens: number; completionTokens: number } | null;
}

/** Random ids in OpenAI's shapes: `file-…`, `batch_…`, `batch_req_…`. */
export function newObjectId(prefix: 'file-' | 'batch_' | 'batch_req_'): string {
  return `${prefix}${randomBytes(12).toString('hex')}`;
}

/** A page of a tenant's files: newest first by default; `after` is the last id of the previous page. */
export interface FileListQuery {
  tenant: string;
  purpose?: string | undefined;
  after?: string | undefined;
  limit: number;
  order: 'asc' | 'desc';
}

/** A page of a tenant's batches, newest first; `after` is the last id of the previous page. */
export interface BatchListQuery {
  tenant: string;
  after?: string | undefined;
  limit: number;
}

export interface ListPage<T> {
  items: T[];
  hasMore: boolean;
}

/** Each status time's column, alike in both stores. */
export const batchTimestampColumns: Record<keyof BatchTimestamps, string> = {
  inProgressAt: 'in_progress_at',
  finalizingAt: 'finalizing_at',
  completedAt: 'completed_at',
  failedAt: 'failed_at',
  expiredAt: 'expired_at',
  cancellingAt: 'cancelling_at',
  cancelledAt: 'cancelled_at',
};

/**
 * A `batches` row as either store reads it: SQLite gives JSON columns as text and booleans as 0/1,
 * PostgreSQL parsed JSON (jsonb) and booleans.
 */
export interface BatchRow {
  id: string;
  tenant: string;
  api_key_id: string | null;
  endpoint: string;
  input_file_id: string;
  completion_window: string;
  status: string;
  created_at: number;
  expires_at: number;
  in_progress_at: number | null;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  expired_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  output_file_id: string | null;
  error_file_id: string | null;
  errors_json: string | BatchValidationError[] | null;
  metadata_json: string | Record<string, string> | null;
  validated: number | boolean;
  total: number;
  completed: number;
  failed: number;
  prompt_tokens: number;
  cached_prompt_tokens: number;
  completion_tokens: number;
}

export function batchOf(row: BatchRow): StoredBatch {
  return {
    id: row.id,
    tenant: row.tenant,
    apiKeyId: row.api_key_id,
    endpoint: row.endpoint as BatchEndpoint,
    inputFileId: row.input_file_id,
    completionWindow: row.completion_window,
    status: row.status as BatchStatus,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    inProgressAt: row.in_progress_at,
    finalizingAt: row.finalizing_at,
    completedAt: row.completed_at,
    failedAt: row.failed_at,
    expiredAt: row.expired_at,
    cancellingAt: row.cancelling_at,
    cancelledAt: row.cancelled_at,
    outputFileId: row.output_file_id,
    errorFileId: row.error_file_id,
    errors: jsonColumn(row.errors_json),
    metadata: jsonColumn(row.metadata_json),
    validated: row.validated === 1 || row.validated === true,
    total: row.total,
    completed: row.completed,
    failed: row.failed,
    promptTokens: row.prompt_tokens,
    cachedPromptTokens: row.cached_prompt_tokens,
    completionTokens: row.completion_tokens,
  };
}

export interface FileRow {
  id: string;
  tenant: string;
  purpose: string;
  filename: string;
  bytes: number;
  created_at: number;
}

export function fileOf(row: FileRow): StoredFile {
  return {
    id: row.id,
    tenant: row.tenant,
    purpose: row.purpose as FilePurpose,
    filename: row.filename,
    bytes: row.bytes,
    createdAtSeconds: row.created_at,
  };
}

/** A JSON column's value: parsed already (PostgreSQL's jsonb), or text to parse (SQLite). */
function jsonColumn<Value>(value: string | Value | null): Value | null {
  return typeof value === 'string' ? (JSON.parse(value) as Value) : value;
}

/** What a batch's runner learns when it renews its lease. */
export interface LeaseRenewal {
  /** False: the lease ran out and another replica may have taken the batch; stop running it here. */
  held: boolean;
  /** The batch's status now (a cancel accepted by another replica shows here as `cancelling`). */
  status: BatchStatus | null;
}

/**
 * Where files, batches and line outcomes live: `SqliteBatchStore` beside one gateway (the embedded
 * default), or `PostgresBatchStore`, shared by every replica of a fleet. Both keep the same promises:
 * a line's outcome is committed before it is counted, counted once, and a listed file always has bytes.
 *
 * Leases decide which replica runs a batch. A runner claims a batch before running it and renews the
 * claim while it runs; writes that depend on owning the batch (a line's outcome, the start, the end) are
 * refused once the lease is lost, so a replica that stalled past its lease cannot record a line that its
 * successor records too. In SQLite one gateway owns the file, so its claims always succeed.
 */
export interface BatchStore {
  /** True when other gateways share the store: the runner looks for batches whose owner went away. */
  readonly shared: boolean;
  close(): Promise<void>;

  /** A local path where an upload's bytes land as they arrive (never buffered whole); `commitUpload` takes them. */
  uploadPath(fileId: string): string;
  /** Makes an uploaded file visible: its bytes first, then its row, so a listed file always has bytes. */
  commitUpload(file: StoredFile): Promise<void>;
  /** Stores a result file's bytes; its row comes with the batch's final state (`finishBatch`). */
  writeFileBytes(fileId: string, content: string): Promise<number>;
  /** A file's bytes as text; undefined when they are gone. */
  readFileText(fileId: string): Promise<string | undefined>;
  /** A file's bytes as a stream (a download, never read whole into memory). */
  fileContent(fileId: string): Readable;
  file(tenant: string, fileId: string): Promise<StoredFile | undefined>;
  /** Newest first by default, as OpenAI lists; `after` is the id of the last file of the previous page. */
  listFiles(options: FileListQuery): Promise<ListPage<StoredFile> | undefined>;
  /** Ids of unfinished batches that read this file (a file in use must not disappear under them). */
  batchesReading(tenant: string, fileId: string): Promise<string[]>;
  deleteFile(tenant: string, fileId: string): Promise<boolean>;

  insertBatch(batch: StoredBatch): Promise<void>;
  /** A batch by id for its owner; without a tenant, any batch (the runner's view). */
  batch(batchId: string, tenant?: string): Promise<StoredBatch | undefined>;
  /** Newest first, as OpenAI lists batches; `after` is the id of the last batch of the previous page. */
  listBatches(options: BatchListQuery): Promise<ListPage<StoredBatch> | undefined>;
  /** Unfinished batches no live runner holds (every unfinished one after a restart), oldest first. */
  claimableBatchIds(): Promise<string[]>;
  /** Takes the batch for this runner: true when it is now ours (it was free, its lease had run out, or ours). */
  claim(batchId: string): Promise<boolean>;
  /** Extends this runner's lease on a batch it runs. */
  renew(batchId: string): Promise<LeaseRenewal>;
  /** Gives the batch up (it stopped here), so that another replica need not wait for the lease to run out. */
  release(batchId: string): Promise<void>;
  /**
   * Moves a batch to `status` if it is in one of `from`, stamping the status's time. Conditional, so that
   * a cancel and the runner's own next step cannot overwrite each other: the one that comes second
   * finds the batch moved on and gets false.
   */
  setStatus(
    batchId: string,
    options: {
      status: BatchStatus;
      from: readonly BatchStatus[];
      stamp?: { field: keyof BatchTimestamps; atSeconds: number };
      errors?: BatchValidationError[];
    },
  ): Promise<boolean>;
  /**
   * Validation passed: the request count, the malformed lines' outcomes and `in_progress`, in one
   * transaction, so a restart either validates again or finds all three. False: the lease was lost.
   */
  startBatch(
    batchId: string,
    options: { total: number; malformed: LineOutcome[]; atSeconds: number },
  ): Promise<boolean>;
  /**
   * Persists a line's outcome and counts it, in one transaction: a counted line is always stored, and a
   * line recorded twice is counted once. False: this runner no longer holds the batch's lease.
   */
  recordLine(batchId: string, outcome: LineOutcome): Promise<boolean>;
  /** Line numbers whose outcome is on record: a resumed batch skips them. */
  recordedLineNumbers(batchId: string): Promise<Set<number>>;
  /** Every recorded line, in input order, read a page at a time. */
  recordedLines(
    batchId: string,
  ): AsyncIterable<{ lineNumber: number; succeeded: boolean; resultLine: string }>;
  /**
   * The batch's end: its result files' rows, their ids on the batch, and its final status, in one
   * transaction (the files' bytes are written before). Finishing twice is a no-op (false).
   */
  finishBatch(batchId: string, options: BatchFinish): Promise<boolean>;
}

/** A batch's end, as `finishBatch` records it. */
export interface BatchFinish {
  status: 'completed' | 'expired' | 'cancelled';
  atSeconds: number;
  outputFile: StoredFile | null;
  errorFile: StoredFile | null;
}

/** Each end's time stamp, and the statuses a batch may reach it from (both stores apply them alike). */
export const batchFinishes: Record<
  BatchFinish['status'],
  { field: keyof BatchTimestamps; from: readonly BatchStatus[] }
> = {
  completed: { field: 'completedAt', from: ['finalizing'] },
  cancelled: { field: 'cancelledAt', from: ['cancelling'] },
  expired: { field: 'expiredAt', from: ['validating', 'in_progress', 'finalizing', 'cancelling'] },
};

/** Statuses a batch may still leave (the SQL of both stores lists them from here). */
export const unfinishedBatchStatuses: readonly BatchStatus[] = [
  'validating',
  'in_progress',
  'finalizing',
  'cancelling',
];
