import type { UsageRecord } from '../usage-record.js';

/**
 * `usage_records`' columns and the record fields they hold, in column order: one list for both stores'
 * schemas, inserts and row mappings, so that a field added to UsageRecord is stored by both or neither.
 */
export const recordColumns = [
  ['request_id', 'requestId'],
  ['received_at_ms', 'receivedAtMs'],
  ['finished_at_ms', 'finishedAtMs'],
  ['endpoint', 'endpoint'],
  ['tenant', 'tenant'],
  ['api_key_id', 'apiKeyId'],
  ['model', 'model'],
  ['engine', 'engine'],
  ['replica', 'replica'],
  ['tier', 'tier'],
  ['stream', 'stream'],
  ['status', 'status'],
  ['error_code', 'errorCode'],
  ['finish_reason', 'finishReason'],
  ['prompt_tokens', 'promptTokens'],
  ['cached_prompt_tokens', 'cachedPromptTokens'],
  ['completion_tokens', 'completionTokens'],
  ['usage_source', 'usageSource'],
  ['queue_wait_ms', 'queueWaitMs'],
  ['ttft_ms', 'ttftMs'],
  ['itl_mean_ms', 'itlMeanMs'],
  ['itl_p50_ms', 'itlP50Ms'],
  ['itl_p95_ms', 'itlP95Ms'],
  ['itl_max_ms', 'itlMaxMs'],
  ['e2e_ms', 'e2eMs'],
  ['energy_joules', 'energyJoules'],
  ['energy_source', 'energySource'],
  ['cost_usd', 'costUsd'],
  ['cost_source', 'costSource'],
  ['price_usd', 'priceUsd'],
  ['margin_usd', 'marginUsd'],
  ['carbon_grams', 'carbonGrams'],
  ['route', 'route'],
  ['partial', 'partial'],
  ['client_request_id', 'clientRequestId'],
] as const satisfies ReadonlyArray<readonly [string, keyof UsageRecord]>;

// A field added to UsageRecord without a column here fails to compile rather than going missing.
type UnstoredField = Exclude<keyof UsageRecord, (typeof recordColumns)[number][1]>;
const everyFieldStored: [UnstoredField] extends [never] ? true : UnstoredField = true;
void everyFieldStored;
