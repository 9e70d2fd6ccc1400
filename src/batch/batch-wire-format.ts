import type { StoredBatch, StoredFile } from './batch-store.js';

/** OpenAI's file object. Every stored file is complete (`processed`): uploads are written before listing. */
export function fileObject(file: StoredFile) {
  return {
    id: file.id,
    object: 'file' as const,
    bytes: file.bytes,
    created_at: file.createdAtSeconds,
    expires_at: null,
    filename: file.filename,
    purpose: file.purpose,
    status: 'processed' as const,
    status_details: null,
  };
}

/** OpenAI's batch object, with `usage` summed over the lines that ran. */
export function batchObject(batch: StoredBatch) {
  return {
    id: batch.id,
    object: 'batch' as const,
    endpoint: batch.endpoint,
    errors: batch.errors === null ? null : { object: 'list', data: batch.errors },
    input_file_id: batch.inputFileId,
    completion_window: batch.completionWindow,
    status: batch.status,
    output_file_id: batch.outputFileId,
    error_file_id: batch.errorFileId,
    created_at: batch.createdAt,
    in_progress_at: batch.inProgressAt,
    expires_at: batch.expiresAt,
    finalizing_at: batch.finalizingAt,
    completed_at: batch.completedAt,
    failed_at: batch.failedAt,
    expired_at: batch.expiredAt,
    cancelling_at: batch.cancellingAt,
    cancelled_at: batch.cancelledAt,
    request_counts: { total: batch.total, completed: batch.completed, failed: batch.failed },
    usage: {
      input_tokens: batch.promptTokens,
      input_tokens_details: { cached_tokens: batch.cachedPromptTokens },
      output_tokens: batch.completionTokens,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: batch.promptTokens + batch.completionTokens,
    },
    metadata: batch.metadata,
  };
}

/** OpenAI's list envelope with cursor fields; the SDK pages with `after` = the last id while `has_more`. */
export function listObject<T extends { id: string }>(data: T[], hasMore: boolean) {
  return {
    object: 'list' as const,
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: hasMore,
  };
}

/**
 * One line of an output or error file. A line that ran carries its HTTP answer in `response` (2xx in the
 * output file, anything else in the error file, as OpenAI does) and `error: null`; a line that never ran
 * (malformed, cancelled, expired) has `response: null` and `error: {code, message}`.
 */
export function resultLine(options: {
  id: string;
  customId: string | null;
  response: { statusCode: number; requestId: string; body: unknown } | null;
  error: { code: string; message: string } | null;
}): string {
  const { id, customId, response, error } = options;
  return JSON.stringify({
    id,
    custom_id: customId,
    response:
      response === null
        ? null
        : { status_code: response.statusCode, request_id: response.requestId, body: response.body },
    error,
  });
}
