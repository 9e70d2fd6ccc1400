import { z } from 'zod';
import { defaults } from '../core/defaults.js';

/** The `batch` section of Gravity's config: the Batch API's files, limits and concurrency. */
export const batchConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** Where uploaded and result files and `batches.sqlite` live; defaults to `<dataDir>`. */
    directory: z.string().min(1).optional(),
    maxConcurrentLines: z.number().int().min(1).max(1024).default(defaults.batch.maxConcurrentLines),
    /** Largest file `POST /v1/files` accepts (its own limit: `server.bodyLimitBytes` is for JSON). */
    fileLimitBytes: z.number().int().min(1024).default(defaults.batch.fileLimitBytes),
    maxLinesPerBatch: z.number().int().min(1).default(defaults.batch.maxLinesPerBatch),
    /**
     * Where batches and files live: `sqlite` (beside this gateway, in `directory`) or `postgres` (the
     * ledger's database, shared by every replica). Unset: the ledger's choice.
     */
    store: z.enum(['sqlite', 'postgres']).optional(),
    /**
     * With a shared store, how long a replica's claim on a batch holds without renewal: a killed
     * replica's batches are taken over by another within about this long.
     */
    leaseMs: z.number().int().min(1000).max(600_000).default(defaults.batch.leaseMs),
  })
  .prefault({});

export type BatchConfig = z.output<typeof batchConfigSchema>;
