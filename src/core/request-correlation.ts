/**
 * What a client sent to tie a request to its own logs and traces, as the HTTP edge accepted it. Absent
 * (null) when the request carried none of these headers: the common case allocates nothing.
 */
export interface RequestCorrelation {
  /**
   * The client's `x-request-id`, when valid: returned as is and kept in the ledger record (its
   * `clientRequestId`). Gravity's own `requestId` stays the unique key (ledger, response ids).
   */
  clientRequestId: string | null;
  /** A well-formed W3C `traceparent`, and the `tracestate` that came with it. */
  traceparent: string | null;
  tracestate: string | null;
}

type Headers = Readonly<Record<string, string | string[] | undefined>>;

/**
 * An id that is safe to echo in a header, a log line and a ledger column: URL-safe characters, UUIDs,
 * ULIDs, base64. Anything longer or odder is replaced by Gravity's own id rather than cleaned up.
 */
const clientRequestIdPattern = /^[A-Za-z0-9_.:~+/=-]{1,128}$/;
/** W3C Trace Context level 1: version, trace id, parent id, flags; later versions may append fields. */
const traceparentPattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-[^\s]*)?$/;
const zeroTraceId = '0'.repeat(32);
const zeroSpanId = '0'.repeat(16);
/** Printable ASCII, bounded: the spec allows 32 list members, which fit well within this. */
const tracestatePattern = /^[\x20-\x7e]{1,1024}$/;

/** The correlation headers of an incoming request; null when it carries none that are valid. */
export function requestCorrelation(headers: Headers): RequestCorrelation | null {
  const requestIdHeader = headers['x-request-id'];
  const traceparentHeader = headers.traceparent;
  // Fast path: most requests carry neither header.
  if (requestIdHeader === undefined && traceparentHeader === undefined) return null;
  const clientRequestId =
    typeof requestIdHeader === 'string' && clientRequestIdPattern.test(requestIdHeader)
      ? requestIdHeader
      : null;
  const traceparent = typeof traceparentHeader === 'string' ? validTraceparent(traceparentHeader) : null;
  if (clientRequestId === null && traceparent === null) return null;
  return { clientRequestId, traceparent, tracestate: traceparent === null ? null : tracestateOf(headers) };
}

/** The header as sent when well-formed (version ff, all-zero ids and a version 00 with extra fields are not). */
export function validTraceparent(value: string): string | null {
  const match = traceparentPattern.exec(value);
  if (match === null) return null;
  const [, version, traceId, spanId, extra] = match;
  if (version === 'ff' || traceId === zeroTraceId || spanId === zeroSpanId) return null;
  if (version === '00' && extra !== undefined) return null;
  return value;
}

/** Several `tracestate` headers are one list (RFC 9110 field combination); a malformed one is dropped. */
function tracestateOf(headers: Headers): string | null {
  const header = headers.tracestate;
  const value = Array.isArray(header) ? header.join(',') : header;
  return value !== undefined && tracestatePattern.test(value) ? value : null;
}
