import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { LedgerStore } from '../../metering/ledger/ledger-store.js';
import { PostgresLedgerStore } from '../../metering/ledger/postgres-ledger-store.js';
import { SqliteLedgerStore } from '../../metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../../metering/usage-record.js';
import type { Scenario } from '../scenario-schema.js';
import { type ReplayedRequest, readTraceFile } from './replay-workload.js';

/** A ledger named by URL rather than by file: `postgres://…` or `postgresql://…`. */
export function isPostgresLedgerUrl(source: string): boolean {
  return /^postgres(ql)?:\/\//i.test(source);
}

/**
 * Gravity's own ledger, read through its store (`LedgerStore.replayRequests`, a SQLite file or the
 * PostgreSQL every replica shares) for `gravity sim`: completed requests in arrival order, with their
 * tenants and tiers. Embeddings replay as prefill-only work, one sequence of their prompt tokens with the
 * single step that ends its prefill, as the emulated engine runs each input (the ledger keeps no split by
 * input, so a request of several inputs replays as one longer sequence).
 *
 * A store reads asynchronously and a simulation runs synchronously on its virtual clock, so the records
 * are read before the run, a page at a time, into a spool file in the temporary folder (the trace format,
 * `readTraceFile`'s); each run then reads that file line by line as the simulation reaches it, as a trace
 * replay does. Memory stays one page while reading and one line while replaying, whatever the ledger's
 * size, and every run of a sweep replays the same records. `close` removes the spool file.
 */
export class LedgerReplay {
  private constructor(
    private readonly directory: string,
    private readonly spoolPath: string,
    /** Requests the replay holds. */
    readonly count: number,
  ) {}

  /** Reads the ledger at `source` (a SQLite file or a PostgreSQL URL); the store is closed after. */
  static async read(source: string, options: { pageSize?: number } = {}): Promise<LedgerReplay> {
    const store = await openLedgerForReplay(source);
    const directory = mkdtempSync(path.join(os.tmpdir(), 'gravity-ledger-replay-'));
    const spoolPath = path.join(directory, 'requests.jsonl');
    try {
      const spool = await open(spoolPath, 'w');
      let count = 0;
      try {
        let lines = '';
        for await (const record of store.replayRequests({}, options)) {
          const request = replayedRequest(record);
          if (!request) continue;
          count++;
          lines += `${JSON.stringify({
            arrival_ms: request.arrivalMs,
            input_length: request.promptTokens,
            output_length: request.outputTokens,
            tenant: request.tenant,
            tier: request.tier,
          })}\n`;
          if (lines.length >= 1 << 16) {
            await spool.write(lines);
            lines = '';
          }
        }
        await spool.write(lines);
      } finally {
        await spool.close();
      }
      return new LedgerReplay(directory, spoolPath, count);
    } catch (error) {
      rmSync(directory, { recursive: true, force: true });
      throw error;
    } finally {
      await store.close();
    }
  }

  /** The requests, in arrival order, read as they are taken: one run's worth; call again for each run. */
  records(): Generator<ReplayedRequest> {
    return readTraceFile(this.spoolPath);
  }

  close(): void {
    rmSync(this.directory, { recursive: true, force: true });
  }
}

/** The ledger a scenario replays, read (`LedgerReplay.read`); undefined when its workload is not a ledger. */
export async function readScenarioLedger(scenario: Scenario): Promise<LedgerReplay | undefined> {
  const arrivals = scenario.workload.arrivals;
  return arrivals.process === 'ledger' ? LedgerReplay.read(arrivals.path) : undefined;
}

/**
 * A replayable request: one that produced tokens (or an embeddings input); its output at least the one
 * step that ends its prefill.
 */
function replayedRequest(record: UsageRecord): ReplayedRequest | null {
  const embeddings = record.endpoint === 'embeddings';
  if (!(record.completionTokens > 0 || (embeddings && record.promptTokens > 0))) return null;
  return {
    arrivalMs: record.receivedAtMs,
    promptTokens: record.promptTokens,
    outputTokens: Math.max(1, record.completionTokens),
    tenant: record.tenant,
    tier: record.tier as ReplayedRequest['tier'],
    hashIds: null,
  };
}

/**
 * The store, opened to read: a PostgreSQL ledger is not migrated (a simulation never changes a shared
 * schema; one that is behind is refused, naming `gravity migrate`), and a SQLite file must exist.
 */
async function openLedgerForReplay(source: string): Promise<LedgerStore> {
  if (isPostgresLedgerUrl(source)) return PostgresLedgerStore.open(source, { migrate: false });
  if (!existsSync(source)) throw new Error(`no ledger at ${source}`);
  return new SqliteLedgerStore(source);
}
