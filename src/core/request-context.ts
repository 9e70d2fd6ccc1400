import { randomFillSync } from 'node:crypto';
import type { RequestCorrelation } from './request-correlation.js';
import type { ServiceTier } from './service-tiers.js';
import type { FinishReason, TokenUsage } from './stream-parts.js';

export type Endpoint = 'chat.completions' | 'completions' | 'embeddings' | 'responses';

/** What metering concluded about a finished request; the API puts it in headers and the usage object. */
export interface MeteredFigures {
  energyJoules: number;
  /** `measured:nvml`, `measured:rapl`, `estimated:power-model` or `estimated:performance-model`. */
  energySource: string;
  costUsd: number;
  /** `amortized-hourly`, `per-token-api` or `none`. */
  costSource: string;
  priceUsd: number;
  marginUsd: number;
  carbonGrams: number;
}
/**
 * Everything Gravity learns about one request as it moves through the stages. Each stage fills in its
 * part (admission: tenant and key; scheduling: tier and queue time; routing: engine; execution: timings
 * and usage), and metering reads the finished object. Times are Clock milliseconds.
 */
export interface RequestContext {
  /** Gravity's own id, unique: the ledger's key and the source of response ids. */
  readonly requestId: string;
  /**
   * The client's `x-request-id` when it sent a valid one: returned to it as is and kept in the ledger
   * record beside `requestId` (a client may reuse its ids; Gravity's must stay unique).
   */
  readonly clientRequestId: string | null;
  /**
   * W3C trace context for the engine call (`traceparent`, `tracestate` to upstream engines): the
   * client's as received, replaced before each attempt by the engine span's own while tracing is on
   * (src/telemetry/). Null: none.
   */
  traceparent: string | null;
  tracestate: string | null;
  readonly endpoint: Endpoint;
  readonly receivedAtMs: number;
  readonly receivedAtEpochMs: number;
  readonly stream: boolean;
  model: string;
  engineId: string | null;
  /** Filled by admission; null means anonymous (no keys configured). */
  tenant: string | null;
  apiKeyId: string | null;
  /** The tier the client asked for, echoed in the response. */
  serviceTier: ServiceTier;
  /** When admission let the request in (after any wait for a rate limit); null until then. */
  admittedAtMs: number | null;
  /** The completion-token bound the request asked for (null: none), once it parsed. */
  maxTokens: number | null;
  /** When the engine accepted the request (slot secured or upstream answered). */
  startedAtMs: number | null;
  firstTokenAtMs: number | null;
  lastTokenAtMs: number | null;
  /** Gaps between consecutive text chunks, in ms, for inter-token latency. */
  interTokenGapsMs: number[];
  finishedAtMs: number | null;
  /**
   * Time Gravity itself spent on the request, excluding the engine: parsing, validation and routing
   * before the engine starts, and handling each streamed part until it is written to the socket.
   */
  gatewayOverheadMs: number;
  /** Time spent waiting for an engine slot. */
  queueWaitMs: number | null;
  /** Prompt tokens the engine computed (not served from cache), known at start or at the end. */
  prefillTokens: number;
  /** Completion tokens generated so far; metering reads this to split energy by work. */
  decodeTokens: number;
  finishReason: FinishReason | null;
  usage: TokenUsage | null;
  metered: MeteredFigures | null;
  /** HTTP status of the response (200 for streams that failed after the first byte: see errorCode). */
  status: number;
  errorCode: string | null;
  /**
   * Routing's explanation as JSON: the chosen replica, the profile, the top candidates' scores, replicas
   * filtered out and attempts (x-gravity-route, the ledger's `route`). Null when no routing ran.
   */
  route: string | null;
}

// Random bytes are drawn in bulk: one system call per 256 ids instead of one per request.
const idBytes = 12;
const idPool = Buffer.alloc(idBytes * 256);
let idPoolOffset = idPool.length;

/** Request ids are random and URL-safe; they are returned as `x-request-id` and used in response ids. */
export function newRequestId(): string {
  if (idPoolOffset === idPool.length) {
    randomFillSync(idPool);
    idPoolOffset = 0;
  }
  const id = idPool.toString('base64url', idPoolOffset, idPoolOffset + idBytes);
  idPoolOffset += idBytes;
  return id;
}

export function createRequestContext(options: {
  endpoint: Endpoint;
  stream: boolean;
  model: string;
  serviceTier: ServiceTier;
  nowMs: number;
  epochMs: number;
  requestId?: string;
  /** What the client sent to correlate the request (HTTP headers); absent or null: nothing. */
  correlation?: RequestCorrelation | null | undefined;
}): RequestContext {
  const correlation = options.correlation ?? null;
  return {
    requestId: options.requestId ?? newRequestId(),
    clientRequestId: correlation?.clientRequestId ?? null,
    traceparent: correlation?.traceparent ?? null,
    tracestate: correlation?.tracestate ?? null,
    endpoint: options.endpoint,
    receivedAtMs: options.nowMs,
    receivedAtEpochMs: options.epochMs,
    stream: options.stream,
    model: options.model,
    engineId: null,
    tenant: null,
    apiKeyId: null,
    serviceTier: options.serviceTier,
    admittedAtMs: null,
    maxTokens: null,
    startedAtMs: null,
    firstTokenAtMs: null,
    lastTokenAtMs: null,
    interTokenGapsMs: [],
    finishedAtMs: null,
    gatewayOverheadMs: 0,
    queueWaitMs: null,
    prefillTokens: 0,
    decodeTokens: 0,
    finishReason: null,
    usage: null,
    metered: null,
    status: 0,
    errorCode: null,
    route: null,
  };
}
