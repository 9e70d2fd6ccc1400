import type { UsageRecord } from '../usage-record.js';
import type { LedgerStore } from './ledger-store.js';

/**
 * Group commit for the ledger: records that end in the same turn of the event loop are written in one
 * transaction, after the per-token path has finished with them. Each `write` resolves once its record is
 * committed, so the gateway can hold a response's last bytes until its record is durable without paying
 * a transaction per request.
 */
export class LedgerWriter {
  private pending: Array<{ record: UsageRecord; resolve: () => void }> = [];
  private scheduled = false;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: LedgerStore,
    private readonly log: (message: string, details: Record<string, unknown>) => void,
  ) {}

  write(record: UsageRecord): Promise<void> {
    return new Promise<void>((resolve) => {
      this.pending.push({ record, resolve });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.flushing = this.flushing.then(() => this.flush());
        });
      }
    });
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    try {
      await this.store.append(batch.map((entry) => entry.record));
    } catch (error) {
      // One bad record must not take its batch down: retry one by one and report only what fails.
      for (const entry of batch) {
        await this.store.append([entry.record]).catch((singleError: Error) => {
          this.log('ledger write failed', {
            requestId: entry.record.requestId,
            error: singleError.message,
            batchError: (error as Error).message,
          });
        });
      }
    }
    for (const entry of batch) entry.resolve();
  }

  /** Writes everything still pending. */
  async drain(): Promise<void> {
    while (this.pending.length > 0 || this.scheduled) {
      this.flushing = this.flushing.then(() => this.flush());
      await this.flushing;
    }
    await this.flushing;
  }
}
