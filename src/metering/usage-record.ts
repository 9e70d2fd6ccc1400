/**
 * One row of the ledger: everything Gravity knows about one request, written exactly once when it ends.
 * Times are epoch milliseconds; durations are milliseconds (null when the request never got that far).
 */
export interface UsageRecord {
  requestId: string;
  receivedAtMs: number;
  finishedAtMs: number;
  endpoint: string;
  /** `anonymous` when no keys are configured. */
  tenant: string;
  apiKeyId: string | null;
  model: string;
  engine: string | null;
  /** The replica that served it; with one replica per engine, the engine id. */
  replica: string | null;
  tier: string;
  stream: boolean;
  /** HTTP status; 499 when the client disconnected. A stream that failed after its first byte keeps 200 with an error code. */
  status: number;
  errorCode: string | null;
  finishReason: string | null;
  promptTokens: number;
  cachedPromptTokens: number;
  completionTokens: number;
  /** `engine`, `upstream`, `counted` or `none` (nothing was generated). */
  usageSource: string;
  queueWaitMs: number | null;
  ttftMs: number | null;
  itlMeanMs: number | null;
  itlP50Ms: number | null;
  itlP95Ms: number | null;
  itlMaxMs: number | null;
  e2eMs: number;
  energyJoules: number;
  energySource: string;
  costUsd: number;
  costSource: string;
  priceUsd: number;
  marginUsd: number;
  carbonGrams: number;
  /** Routing's explanation as JSON (replica, profile, top scores, attempts); null without routing. */
  route?: string | null;
  /** Cut short after its first token (engine failure mid-stream or client gone): what was sent is all there is. */
  partial?: boolean;
  /**
   * The client's own `x-request-id`, when it sent a valid one (returned to it as is). Not unique: a client
   * may reuse its ids, so `requestId` stays the record's key.
   */
  clientRequestId?: string | null;
}
