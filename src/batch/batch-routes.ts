import { createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { requestCaller } from '../admission/request-caller.js';
import { describeZodError } from '../api/request-schemas.js';
import type { Clock } from '../core/clock.js';
import { errors, GravityError } from '../core/errors.js';
import { privateFileMode } from '../core/private-files.js';
import { batchEndpoints } from './batch-input.js';
import type { BatchRunner } from './batch-runner.js';
import { type BatchStore, newObjectId, type StoredBatch } from './batch-store.js';
import { batchObject, fileObject, listObject } from './batch-wire-format.js';
import { assertMayUseBatchTier, requestTenant } from './request-tenant.js';

export interface BatchRoutesOptions {
  store: BatchStore;
  runner: BatchRunner;
  clock: Clock;
  /** Largest file `POST /v1/files` accepts. */
  fileLimitBytes: number;
}

const completionWindowSeconds = 24 * 60 * 60;

const createBatchSchema = z.strictObject({
  input_file_id: z.string().min(1),
  endpoint: z.enum(batchEndpoints),
  completion_window: z.literal('24h'),
  // OpenAI's metadata: up to 16 pairs, keys up to 64 characters, values up to 512.
  metadata: z
    .record(z.string().max(64), z.string().max(512))
    .refine((metadata) => Object.keys(metadata).length <= 16, 'at most 16 keys')
    .nullish(),
});

const listFilesQuerySchema = z.strictObject({
  purpose: z.string().min(1).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(10_000),
  order: z.enum(['asc', 'desc']).default('desc'),
  after: z.string().min(1).optional(),
});

const listBatchesQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  after: z.string().min(1).optional(),
});

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value ?? {});
  if (!result.success) throw describeZodError(result.error);
  return result.data;
}

function unknownCursor(after: string): GravityError {
  return errors.invalidRequest(`No object with id '${after}' to list after.`, 'after', 'invalid_value');
}

/**
 * OpenAI's Files and Batches endpoints. Every lookup is scoped to the caller's tenant: another tenant's
 * file or batch answers 404, exactly as one that does not exist.
 */
export function registerBatchRoutes(app: FastifyInstance, options: BatchRoutesOptions): void {
  const { store, runner, clock, fileLimitBytes } = options;
  const nowSeconds = () => Math.floor(clock.epochMs() / 1000);

  // Uploads get their own scope: the multipart parser (streamed to disk under its own limit) and its
  // per-request hooks apply to this route only; every other route keeps the JSON parser and no hooks.
  app.register(async (uploads) => {
    await uploads.register(multipart, {
      limits: { fileSize: fileLimitBytes, files: 1, fields: 10, parts: 12 },
    });

    uploads.post('/v1/files', async (request) => {
      const tenant = requestTenant(request);
      if (!request.isMultipart()) {
        throw errors.invalidRequest(
          "Upload a file as multipart/form-data with the fields 'purpose' and 'file'.",
          'file',
        );
      }
      const id = newObjectId('file-');
      const uploadPath = store.uploadPath(id);
      try {
        const upload = await receiveUpload(request, uploadPath, fileLimitBytes);
        if (upload.filename === null)
          throw errors.invalidRequest(
            "Missing required parameter: 'file'.",
            'file',
            'missing_required_parameter',
          );
        if (upload.purpose === null) {
          throw errors.invalidRequest(
            "Missing required parameter: 'purpose'.",
            'purpose',
            'missing_required_parameter',
          );
        }
        if (upload.purpose !== 'batch') {
          throw errors.invalidRequest(
            `Invalid value for 'purpose': Gravity stores files for the Batch API only, so purpose must be 'batch' (got '${upload.purpose}').`,
            'purpose',
            'invalid_value',
          );
        }
        const file = {
          id,
          tenant,
          purpose: 'batch' as const,
          filename: upload.filename,
          bytes: (await stat(uploadPath)).size,
          createdAtSeconds: nowSeconds(),
        };
        await store.commitUpload(file);
        return fileObject(file);
      } finally {
        await rm(uploadPath, { force: true });
      }
    });
  });

  app.get('/v1/files', async (request) => {
    const query = parse(listFilesQuerySchema, request.query);
    const page = await store.listFiles({ tenant: requestTenant(request), ...query });
    if (!page) throw unknownCursor(query.after ?? '');
    return listObject(page.items.map(fileObject), page.hasMore);
  });

  app.get('/v1/files/:fileId', async (request) => {
    const { fileId } = request.params as { fileId: string };
    const file = await store.file(requestTenant(request), fileId);
    if (!file) throw errors.fileNotFound(fileId);
    return fileObject(file);
  });

  app.get('/v1/files/:fileId/content', async (request, reply) => {
    const { fileId } = request.params as { fileId: string };
    const file = await store.file(requestTenant(request), fileId);
    if (!file) throw errors.fileNotFound(fileId);
    reply.header('content-type', 'application/octet-stream');
    reply.header('content-length', file.bytes);
    return reply.send(store.fileContent(file.id));
  });

  app.delete('/v1/files/:fileId', async (request) => {
    const { fileId } = request.params as { fileId: string };
    const tenant = requestTenant(request);
    if (!(await store.file(tenant, fileId))) throw errors.fileNotFound(fileId);
    const readers = await store.batchesReading(tenant, fileId);
    if (readers.length > 0) {
      throw errors.conflict(
        `File ${fileId} is the input of unfinished batch ${readers.join(', ')}; cancel it or wait for it to finish.`,
        'file_in_use',
      );
    }
    await store.deleteFile(tenant, fileId);
    return { id: fileId, object: 'file', deleted: true };
  });

  app.post('/v1/batches', async (request) => {
    const tenant = requestTenant(request);
    assertMayUseBatchTier(request);
    const body = parse(createBatchSchema, request.body);
    const input = await store.file(tenant, body.input_file_id);
    if (!input) throw errors.fileNotFound(body.input_file_id, 'input_file_id');
    if (input.purpose !== 'batch') {
      throw errors.invalidRequest(
        `File ${input.id} has purpose '${input.purpose}'; a batch reads a file uploaded with purpose 'batch'.`,
        'input_file_id',
        'invalid_value',
      );
    }
    const createdAt = nowSeconds();
    const batch: StoredBatch = {
      id: newObjectId('batch_'),
      tenant,
      // Its lines run under this key's limits and carry its id in the ledger.
      apiKeyId: requestCaller(request).apiKeyId,
      endpoint: body.endpoint,
      inputFileId: input.id,
      completionWindow: body.completion_window,
      status: 'validating',
      createdAt,
      expiresAt: createdAt + completionWindowSeconds,
      inProgressAt: null,
      finalizingAt: null,
      completedAt: null,
      failedAt: null,
      expiredAt: null,
      cancellingAt: null,
      cancelledAt: null,
      outputFileId: null,
      errorFileId: null,
      errors: null,
      metadata: body.metadata ?? null,
      validated: false,
      total: 0,
      completed: 0,
      failed: 0,
      promptTokens: 0,
      cachedPromptTokens: 0,
      completionTokens: 0,
    };
    await store.insertBatch(batch);
    runner.submit(batch.id);
    return batchObject((await store.batch(batch.id)) ?? batch);
  });

  app.get('/v1/batches', async (request) => {
    const query = parse(listBatchesQuerySchema, request.query);
    const page = await store.listBatches({ tenant: requestTenant(request), ...query });
    if (!page) throw unknownCursor(query.after ?? '');
    return listObject(page.items.map(batchObject), page.hasMore);
  });

  app.get('/v1/batches/:batchId', async (request) => {
    const { batchId } = request.params as { batchId: string };
    const batch = await store.batch(batchId, requestTenant(request));
    if (!batch) throw errors.batchNotFound(batchId);
    return batchObject(batch);
  });

  app.post('/v1/batches/:batchId/cancel', async (request) => {
    const { batchId } = request.params as { batchId: string };
    const tenant = requestTenant(request);
    const batch = await store.batch(batchId, tenant);
    if (!batch) throw errors.batchNotFound(batchId);
    if (batch.status === 'cancelling' || batch.status === 'cancelled') return batchObject(batch);
    const cancelling = await store.setStatus(batchId, {
      status: 'cancelling',
      from: ['validating', 'in_progress'],
      stamp: { field: 'cancellingAt', atSeconds: nowSeconds() },
    });
    if (!cancelling) {
      throw errors.conflict(
        `Batch ${batchId} is ${batch.status} and can no longer be cancelled.`,
        'batch_not_cancellable',
      );
    }
    runner.cancel(batchId);
    return batchObject((await store.batch(batchId, tenant)) ?? batch);
  });
}

/**
 * Streams the multipart body: the `file` part to `uploadPath` (never buffered whole), `purpose` as a
 * field. The openai SDK sends the file before the purpose, so both orders are accepted.
 */
async function receiveUpload(
  request: FastifyRequest,
  uploadPath: string,
  fileLimitBytes: number,
): Promise<{ filename: string | null; purpose: string | null }> {
  let filename: string | null = null;
  let purpose: string | null = null;
  try {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        if (part.fieldname !== 'file') {
          part.file.resume();
          throw errors.unrecognizedArgument(part.fieldname);
        }
        await pipeline(part.file, createWriteStream(uploadPath, { mode: privateFileMode }));
        if (part.file.truncated) throw errors.payloadTooLarge(fileLimitBytes);
        filename = part.filename || 'upload.jsonl';
      } else if (part.fieldname === 'purpose') {
        purpose = String(part.value);
      } else if (part.fieldname.startsWith('expires_after')) {
        throw errors.unsupportedParameter('expires_after', 'is not supported: files are kept until deleted.');
      } else {
        throw errors.unrecognizedArgument(part.fieldname);
      }
    }
  } catch (error) {
    if (error instanceof GravityError) throw error;
    const code = (error as { code?: unknown }).code;
    if (code === 'FST_REQ_FILE_TOO_LARGE') throw errors.payloadTooLarge(fileLimitBytes);
    if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT')
      throw errors.invalidRequest("Send one 'file' part and the 'purpose' field.", 'file');
    throw errors.invalidRequest(`The multipart body could not be read (${(error as Error).message}).`);
  }
  return { filename, purpose };
}
