import path from 'node:path';
import type { Admission } from '../admission/admission.js';
import type { Clock } from '../core/clock.js';
import { StartupError } from '../core/startup-error.js';
import { migratedPostgres } from '../metering/ledger/postgres-migrations.js';
import type { LedgerConfig } from '../metering/metering-config.js';
import type { RequestPipeline } from '../pipeline/request-pipeline.js';
import type { BatchConfig } from './batch-config.js';
import type { BatchRoutesOptions } from './batch-routes.js';
import { BatchRunner } from './batch-runner.js';
import type { BatchStore } from './batch-store.js';
import { PostgresBatchStore } from './postgres-batch-store.js';
import { SqliteBatchStore } from './sqlite-batch-store.js';

/** The Batch API's parts, as the server wires them: routes for the HTTP edge, a runner to start and stop. */
export interface BatchApi {
  routes: BatchRoutesOptions;
  /** Resumes unfinished batches; call once the gateway has started. */
  start(): void;
  /** Shutdown, before the gateway drains: no new batch lines. */
  stopDispatching(): void;
  /** Shutdown, after the gateway drained: waits for the runner, then closes the store. */
  close(): Promise<void>;
}

interface BatchStoreSettings {
  batch: BatchConfig;
  ledger: LedgerConfig;
  dataDir: string;
}

/** Which store keeps batches: `batch.store`, or by default the ledger's (a fleet's ledger is shared). */
export function batchStoreKind(config: BatchStoreSettings): 'sqlite' | 'postgres' {
  return config.batch.store ?? (config.ledger.store === 'postgres' ? 'postgres' : 'sqlite');
}

/**
 * The configured batch store, opened: SQLite in `batch.directory`, or the fleet's PostgreSQL (the
 * ledger's URL), its schema migrated (or checked, with `ledger.migrate: false`). A PostgreSQL that cannot
 * be reached fails here naming its URL (password hidden), as the ledger does.
 */
export async function openBatchStore(config: BatchStoreSettings): Promise<BatchStore> {
  const directory = config.batch.directory ?? config.dataDir;
  if (batchStoreKind(config) === 'sqlite') return new SqliteBatchStore(directory);
  try {
    // The config requires the ledger's URL for a PostgreSQL batch store.
    const sql = await migratedPostgres(config.ledger.url as string, {
      migrate: config.ledger.migrate,
      max: 4,
    });
    return new PostgresBatchStore(sql, {
      stagingDirectory: path.join(directory, 'uploads'),
      leaseMs: config.batch.leaseMs,
    });
  } catch (error) {
    throw new StartupError(`batch: ${(error as Error).message}`, { cause: error });
  }
}

export async function createBatchApi(options: {
  config: BatchStoreSettings;
  pipeline: RequestPipeline;
  /** Finds the key that created a batch; absent (no admission): lines run under their tenant alone. */
  admission?: Admission | undefined;
  clock: Clock;
  log: (message: string, details: Record<string, unknown>) => void;
}): Promise<BatchApi> {
  const { config, pipeline, admission, clock, log } = options;
  const store = await openBatchStore(config);
  const runner = new BatchRunner({
    store,
    pipeline,
    findKey: admission && ((apiKeyId) => admission.keyById(apiKeyId)),
    clock,
    maxConcurrentLines: config.batch.maxConcurrentLines,
    maxLinesPerBatch: config.batch.maxLinesPerBatch,
    leaseMs: config.batch.leaseMs,
    log,
  });
  return {
    routes: { store, runner, clock, fileLimitBytes: config.batch.fileLimitBytes },
    start: () => runner.start(),
    stopDispatching: () => runner.stopDispatching(),
    async close() {
      await runner.close();
      await store.close();
    },
  };
}
