import type { Admission } from '../admission/admission.js';
import type { Clock } from '../core/clock.js';
import type { RequestPipeline } from '../pipeline/request-pipeline.js';
import type { BatchConfig } from './batch-config.js';
import type { BatchRoutesOptions } from './batch-routes.js';
import { BatchRunner } from './batch-runner.js';
import { BatchStore } from './batch-store.js';

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

export function createBatchApi(options: {
  config: { batch: BatchConfig; dataDir: string };
  pipeline: RequestPipeline;
  /** Finds the key that created a batch; absent (no admission): lines run under their tenant alone. */
  admission?: Admission | undefined;
  clock: Clock;
  log: (message: string, details: Record<string, unknown>) => void;
}): BatchApi {
  const { config, pipeline, admission, clock, log } = options;
  const store = new BatchStore(config.batch.directory ?? config.dataDir);
  const runner = new BatchRunner({
    store,
    pipeline,
    findKey: admission && ((apiKeyId) => admission.keyById(apiKeyId)),
    clock,
    maxConcurrentLines: config.batch.maxConcurrentLines,
    maxLinesPerBatch: config.batch.maxLinesPerBatch,
    log,
  });
  return {
    routes: { store, runner, clock, fileLimitBytes: config.batch.fileLimitBytes },
    start: () => runner.start(),
    stopDispatching: () => runner.stopDispatching(),
    async close() {
      await runner.close();
      store.close();
    },
  };
}
