import type { ApiKey } from '../admission/api-key.js';
import { type Caller, keyCaller } from '../admission/request-caller.js';
import type { Clock } from '../core/clock.js';
import { errors, type GravityError } from '../core/errors.js';
import type { RequestPipeline } from '../pipeline/request-pipeline.js';
import { type BatchInputLine, parseBatchInput } from './batch-input.js';
import { executeBatchLine, type LineAnswer } from './batch-line-executor.js';
import {
  type BatchStore,
  type LeaseRenewal,
  type LineOutcome,
  newObjectId,
  type StoredBatch,
  type StoredFile,
  terminalBatchStatuses,
} from './batch-store.js';
import { resultLine } from './batch-wire-format.js';

export interface BatchRunnerOptions {
  store: BatchStore;
  /** Lines run through the same request pipeline as HTTP requests: admission, gateway, ledger. */
  pipeline: RequestPipeline;
  /** The key that created a batch, by id (revoked ones too); absent: lines run under the tenant only. */
  findKey?: ((apiKeyId: string) => ApiKey | null) | undefined;
  clock: Clock;
  /** Lines of one batch in flight at once. */
  maxConcurrentLines: number;
  maxLinesPerBatch: number;
  log: (message: string, details: Record<string, unknown>) => void;
  /** How often running batches are checked against their expiry. */
  expiryCheckIntervalMs?: number;
  /** First wait before a line the scheduler pushed back (429, 503 overloaded) is tried again. */
  retryDelayMs?: number;
  /**
   * A shared store's lease (`batch.leaseMs`): a running batch renews it every `leaseMs / 10` (at most
   * every second, so that a cancel accepted by another replica stops the lines here within a second),
   * and the runner looks for batches whose runner went away every `leaseMs / 2`.
   */
  leaseMs?: number;
}

const unfinishedLineErrors = {
  cancelled: {
    code: 'batch_cancelled',
    message: 'This request was not executed because the batch was cancelled.',
  },
  expired: {
    code: 'batch_expired',
    message: 'This request could not be executed before the completion window expired.',
  },
} as const;

/**
 * Runs batches: validates the input file, runs its lines through the gateway with bounded concurrency,
 * records each line's outcome before counting it, and writes the output and error files at the end.
 *
 * Durability: every line's outcome is committed (and only then counted) as soon as it is known, so after
 * a restart `start()` resumes each unfinished batch with the lines that have no outcome yet. A line that
 * was running when the process died runs again: a line runs at most twice per crash, never zero times.
 *
 * Several gateways sharing a store (PostgreSQL): a runner holds a lease on each batch it runs and
 * renews it; when a replica dies, another claims its batches once their leases run out and runs the
 * lines without an outcome. A runner that loses its lease (it stalled, or the store says another holds
 * the batch) aborts its lines at once and records none, so a line's outcome is written by one runner.
 *
 * Cancel and expiry stop dispatching and abort the lines in flight (their capacity goes back to
 * interactive traffic at once; what they generated so far is metered as for a client that left). Lines
 * without an outcome then appear in the error file as `batch_cancelled` / `batch_expired`; they are
 * not counted as failed (they never ran), so `total - completed - failed` is what did not run.
 *
 * Shutdown (`stopDispatching`, then `close`) starts no new line; lines in flight get the gateway's
 * grace period, and those it cancels are left without an outcome, to run again after the restart.
 */
export class BatchRunner {
  private readonly jobs = new Map<string, BatchJob>();
  private stopping = false;
  private expiryTimer: NodeJS.Timeout | undefined;
  private orphanTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: BatchRunnerOptions) {}

  /**
   * Resumes every unfinished batch no live runner holds (after a restart; in a fleet, also those whose
   * replica went away, looked for every `leaseMs / 2`) and starts watching expiries.
   */
  start(): void {
    void this.adoptClaimable();
    this.expiryTimer = setInterval(() => this.expireDue(), this.options.expiryCheckIntervalMs ?? 1000);
    this.expiryTimer.unref();
    if (this.options.store.shared) {
      const everyMs = Math.max(250, (this.options.leaseMs ?? defaultLeaseMs) / 2);
      this.orphanTimer = setInterval(() => void this.adoptClaimable(), everyMs);
      this.orphanTimer.unref();
    }
  }

  private async adoptClaimable(): Promise<void> {
    if (this.stopping) return;
    try {
      for (const batchId of await this.options.store.claimableBatchIds()) this.launch(batchId);
    } catch (error) {
      this.options.log('could not look for batches to run; trying again later', { err: error });
    }
  }

  /** Starts a newly created batch. */
  submit(batchId: string): void {
    this.launch(batchId);
  }

  /** The batch was just marked `cancelling`: stop its lines and write what it has. */
  cancel(batchId: string): void {
    const job = this.jobs.get(batchId);
    if (job) job.end('cancelled');
    else this.launch(batchId);
  }

  /** Shutdown, first step: no new lines from now on; lines in flight carry on. */
  stopDispatching(): void {
    this.stopping = true;
    clearInterval(this.orphanTimer);
    for (const job of this.jobs.values()) job.halt();
  }

  /** Shutdown, last step (after the gateway drained): waits for every batch job to stop. */
  async close(): Promise<void> {
    this.stopDispatching();
    clearInterval(this.expiryTimer);
    await Promise.all([...this.jobs.values()].map((job) => job.done));
  }

  /** Test hook and timer body: ends every batch whose completion window has passed. */
  expireDue(): void {
    const nowSeconds = Math.floor(this.options.clock.epochMs() / 1000);
    for (const job of this.jobs.values()) if (nowSeconds >= job.expiresAt) job.end('expired');
  }

  private launch(batchId: string): void {
    if (this.stopping || this.jobs.has(batchId)) return;
    const job = new BatchJob(batchId, this.options);
    this.jobs.set(batchId, job);
    job.done = job
      .run()
      .catch((error: unknown) => {
        // The batch stays unfinished and is resumed at the next start (or by another replica).
        this.options.log('batch failed to run; it resumes at the next start', { err: error, batchId });
      })
      .finally(async () => {
        job.stopRenewing();
        this.jobs.delete(batchId);
        // Stopped here (finished, halted, or failed): another replica need not wait for the lease.
        await this.options.store.release(batchId).catch(() => {});
      });
  }
}

const defaultLeaseMs = 30_000;

/** One batch being run in this process. */
class BatchJob {
  expiresAt = Number.POSITIVE_INFINITY;
  done: Promise<void> = Promise.resolve();
  private batch!: StoredBatch;
  private renewTimer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<AbortController>();
  /** Aborted at shutdown: lines waiting for a rate limit stop waiting (and run again after the restart). */
  private readonly halting = new AbortController();
  private readonly sleepers = new Set<() => void>();
  private ending: 'cancelled' | 'expired' | null = null;
  private halted = false;
  private lost = false;

  constructor(
    private readonly batchId: string,
    private readonly options: BatchRunnerOptions,
  ) {}

  /** Takes the batch's lease and reads it; false when it is finished or another runner holds it. */
  private async claim(): Promise<boolean> {
    const { store } = this.options;
    if (!(await store.claim(this.batchId))) return false;
    const batch = await store.batch(this.batchId);
    if (!batch || terminalBatchStatuses.has(batch.status)) return false;
    this.batch = batch;
    this.expiresAt = batch.expiresAt;
    if (batch.status === 'cancelling') this.ending = 'cancelled';
    if (store.shared) {
      const leaseMs = this.options.leaseMs ?? defaultLeaseMs;
      this.renewTimer = setInterval(() => void this.renew(), Math.min(1000, leaseMs / 10));
      this.renewTimer.unref();
    }
    return true;
  }

  /** Keeps the lease; learns of a cancel accepted by another replica; stops at once if the lease is gone. */
  private async renew(): Promise<void> {
    let renewal: LeaseRenewal;
    try {
      renewal = await this.options.store.renew(this.batchId);
    } catch (error) {
      // The store is away for a moment: the lease has leaseMs to spare; the next renewal tries again.
      this.options.log('could not renew a batch lease', { err: error, batchId: this.batchId });
      return;
    }
    if (!renewal.held) this.lose();
    else if (renewal.status === 'cancelling') this.end('cancelled');
  }

  stopRenewing(): void {
    clearInterval(this.renewTimer);
  }

  /**
   * The lease is gone (this replica stalled past it, or lost the store for longer): another runner may
   * hold the batch now. Its lines stop here without an outcome; the holder runs them.
   */
  private lose(): void {
    if (this.lost) return;
    this.lost = true;
    this.options.log('lost the lease of a batch; another replica runs it', { batchId: this.batchId });
    this.halt();
    const why = errors.cancelled('The batch moved to another replica.');
    for (const controller of this.inFlight) controller.abort(why);
  }

  /** Cancel or expiry: no new lines, and the running ones are aborted. */
  end(reason: 'cancelled' | 'expired'): void {
    if (this.ending) return;
    this.ending = reason;
    const why = errors.cancelled(`The batch was ${reason} before this request finished.`);
    for (const controller of this.inFlight) controller.abort(why);
    this.wake();
  }

  /** Shutdown: no new lines; the running ones finish (or the gateway cancels them). */
  halt(): void {
    this.halted = true;
    this.halting.abort(errors.shuttingDown());
    this.wake();
  }

  private get stopped(): boolean {
    return this.halted || this.ending !== null;
  }

  private nowSeconds(): number {
    return Math.floor(this.options.clock.epochMs() / 1000);
  }

  async run(): Promise<void> {
    const { store } = this.options;
    if (!(await this.claim())) return;
    const batch = this.batch;
    if (this.nowSeconds() >= this.expiresAt) this.ending ??= 'expired';

    const text = await store.readFileText(batch.inputFileId);
    if (text === undefined) {
      await store.setStatus(batch.id, {
        status: 'failed',
        from: ['validating', 'in_progress', 'finalizing', 'cancelling'],
        stamp: { field: 'failedAt', atSeconds: this.nowSeconds() },
        errors: [
          {
            code: 'file_not_found',
            message: `The input file ${batch.inputFileId} could not be read.`,
            param: 'input_file_id',
            line: null,
          },
        ],
      });
      return;
    }
    // A batch validated before a restart is not failed afterwards by a lower configured limit.
    const maxLines = batch.validated ? Number.POSITIVE_INFINITY : this.options.maxLinesPerBatch;
    const parsed = parseBatchInput(text, batch.endpoint, { maxLines });
    if (!parsed.ok) {
      // A whole-file problem (empty, too many lines, duplicate custom_id): the batch fails validation.
      await store.setStatus(batch.id, {
        status: 'failed',
        from: ['validating', 'cancelling'],
        stamp: { field: 'failedAt', atSeconds: this.nowSeconds() },
        errors: parsed.errors,
      });
      return;
    }
    if (!batch.validated) {
      const started = await store.startBatch(batch.id, {
        total: parsed.lines.length + parsed.malformed.length,
        malformed: parsed.malformed.map(
          (line): LineOutcome => ({
            lineNumber: line.lineNumber,
            succeeded: false,
            usage: null,
            resultLine: resultLine({
              id: newObjectId('batch_req_'),
              customId: line.customId,
              response: null,
              error: { code: line.code, message: line.message },
            }),
          }),
        ),
        atSeconds: this.nowSeconds(),
      });
      if (!started) return this.lose();
    }

    const recorded = await store.recordedLineNumbers(batch.id);
    const pending = parsed.lines.filter((line) => !recorded.has(line.lineNumber));
    const workers = Math.min(this.options.maxConcurrentLines, pending.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: workers }, async () => {
        while (!this.stopped && next < pending.length) await this.runLine(pending[next++] as BatchInputLine);
      }),
    );
    if (this.halted) return; // shutdown: the rest runs after the restart
    await this.finish(parsed.lines);
  }

  /** Runs one line until it has an outcome, or the batch stops; records the outcome, then counts it. */
  private async runLine(line: BatchInputLine): Promise<void> {
    const { store, pipeline } = this.options;
    let retryDelayMs = this.options.retryDelayMs ?? 250;
    for (;;) {
      const controller = new AbortController();
      this.inFlight.add(controller);
      let answer: LineAnswer;
      try {
        answer = await executeBatchLine({
          pipeline,
          endpoint: this.batch.endpoint,
          body: line.body,
          ...this.owner(),
          signal: controller.signal,
          stopWaiting: this.halting.signal,
        });
      } finally {
        this.inFlight.delete(controller);
      }
      // Stopped by cancel or expiry: a finished answer still counts; an aborted one is reported at the end.
      if (controller.signal.aborted && answer.statusCode !== 200) return;
      if (answer.errorCode === 'shutting_down') {
        this.halted = true;
        return;
      }
      if (answer.pushedBack) {
        // The scheduler holds batch work to spare capacity; try again later, backing off to 5 s.
        if (this.stopped) return;
        await this.sleep(retryDelayMs);
        retryDelayMs = Math.min(retryDelayMs * 2, 5000);
        if (this.stopped) return;
        continue;
      }
      const succeeded = answer.statusCode >= 200 && answer.statusCode < 300;
      const recorded = await store.recordLine(this.batch.id, {
        lineNumber: line.lineNumber,
        succeeded,
        usage: answer.usage,
        resultLine: resultLine({
          id: newObjectId('batch_req_'),
          customId: line.customId,
          response: { statusCode: answer.statusCode, requestId: answer.requestId, body: answer.body },
          error: null,
        }),
      });
      if (!recorded) this.lose();
      return;
    }
  }

  /**
   * Who the batch's lines run as: the key that created it (its limits apply, the ledger records its id)
   * and its tenant. A batch from before keys were recorded on batches runs under its tenant's limits.
   * Looked up per line (through the authenticator's cache), so a revoked key stops its batches.
   */
  private owner(): { caller: Caller; refusal: GravityError | null } {
    const { tenant, apiKeyId } = this.batch;
    const findKey = this.options.findKey;
    if (apiKeyId === null || !findKey)
      return { caller: { tenant, apiKeyId, admin: false, key: null }, refusal: null };
    const key = findKey(apiKeyId);
    if (key && key.revokedAtMs === null) return { caller: keyCaller(key), refusal: null };
    return {
      caller: { tenant, apiKeyId, admin: false, key: null },
      refusal: errors.revokedApiKey(key?.prefix ?? `gk-${apiKeyId}-`),
    };
  }

  /**
   * Writes the output and error files and moves the batch to its final status: `completed` (through
   * `finalizing`), `cancelled` or `expired`. Each file exists only when it has lines, as with OpenAI.
   */
  private async finish(lines: readonly BatchInputLine[]): Promise<void> {
    const { store } = this.options;
    const batchId = this.batch.id;
    let status: 'completed' | 'cancelled' | 'expired';
    if (this.ending === 'expired') status = 'expired';
    else if ((await store.batch(batchId))?.status === 'cancelling') status = 'cancelled';
    else if (
      await store.setStatus(batchId, {
        status: 'finalizing',
        from: ['in_progress', 'finalizing'],
        stamp: { field: 'finalizingAt', atSeconds: this.nowSeconds() },
      })
    )
      status = 'completed';
    else status = 'cancelled'; // cancelled between the last line and now

    const output: string[] = [];
    const failed: string[] = [];
    const recorded = new Set<number>();
    for await (const line of store.recordedLines(batchId)) {
      recorded.add(line.lineNumber);
      (line.succeeded ? output : failed).push(line.resultLine);
    }
    if (status !== 'completed') {
      const reason = unfinishedLineErrors[status];
      for (const line of lines) {
        if (recorded.has(line.lineNumber)) continue;
        failed.push(
          resultLine({
            id: newObjectId('batch_req_'),
            customId: line.customId,
            response: null,
            error: reason,
          }),
        );
      }
    }
    const outputFile = await this.writeResultFile('output', output);
    const errorFile = await this.writeResultFile('error', failed);
    await store.finishBatch(batchId, { status, atSeconds: this.nowSeconds(), outputFile, errorFile });
  }

  private async writeResultFile(kind: 'output' | 'error', lines: string[]): Promise<StoredFile | null> {
    if (lines.length === 0) return null;
    const id = newObjectId('file-');
    const bytes = await this.options.store.writeFileBytes(id, `${lines.join('\n')}\n`);
    return {
      id,
      tenant: this.batch.tenant,
      purpose: 'batch_output',
      filename: `${this.batch.id}_${kind}.jsonl`,
      bytes,
      createdAtSeconds: this.nowSeconds(),
    };
  }

  /** A wait that `end` and `halt` cut short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }

  private wake(): void {
    for (const wake of [...this.sleepers]) wake();
  }
}
