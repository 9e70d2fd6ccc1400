import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errors, type GravityError } from '../core/errors.js';

/** How long a client may take to send a request, and how many connections may be open at once. */
export interface EdgeLimits {
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** For `POST /v1/files`, whose bodies are files of up to `batch.fileLimitBytes`. */
  uploadBodyTimeoutMs: number;
  /** No bytes either way for this long closes the connection; 0: no such bound. */
  idleTimeoutMs: number;
  maxConnections: number;
}

/**
 * Sent with every response. Gravity answers JSON, event streams and JSONL files, never pages: nothing
 * it sends may be sniffed as HTML, framed, cached, or load anything. No Strict-Transport-Security:
 * Gravity serves plain HTTP, and HSTS belongs to whatever terminates TLS in front of it.
 * Pairs, not an object, so the hook sets them without `Object.keys` allocating an array per request.
 */
const securityHeaders: ReadonlyArray<readonly [string, string]> = [
  ['x-content-type-options', 'nosniff'],
  ['cache-control', 'no-store'],
  ['referrer-policy', 'no-referrer'],
  ['x-frame-options', 'DENY'],
  ['content-security-policy', "default-src 'none'; frame-ancestors 'none'"],
];
/** The same headers as one object, for servers outside fastify (metrics-listener.ts). */
export const securityHeaderRecord: Readonly<Record<string, string>> = Object.fromEntries(securityHeaders);
/** The same headers as raw HTTP lines, for answers written straight to the socket. */
const securityHeaderLines = securityHeaders.map(([name, value]) => `${name}: ${value}\r\n`).join('');

const bodyTimer = Symbol('gravity.bodyTimer');
type TimedRequest = IncomingMessage & { [bodyTimer]?: NodeJS.Timeout };

/**
 * The server options that bound the header phase and the connection count. Node checks header
 * deadlines on an interval (30 s by default), so the interval follows the bound to keep it tight.
 * Node's own `requestTimeout` stays off: it is one bound for every route, and a body read is bounded
 * per route by `registerEdgeBounds` instead.
 */
export function edgeServerOptions(limits: EdgeLimits) {
  return {
    connectionTimeout: limits.idleTimeoutMs,
    requestTimeout: 0,
    http: {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: 0,
      connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
    },
  };
}

/**
 * One `onRequest` hook for every request: the security headers, and a deadline for the body. This is
 * the hot path, so it allocates nothing for a request without a body beyond the header writes, and for
 * one with a body only the timer (its arguments passed through, no closure; the listeners are shared
 * functions).
 *
 * The body deadline runs from the end of the headers to the end of the body, so a request waiting in
 * the queue or streaming its answer is never cut by it (unlike a socket idle bound). When it passes,
 * the body reader fails with a 408 (through the error handler: a completion endpoint gets its one
 * ledger record) and the connection closes after the answer, since the rest of the body has nowhere to go.
 */
export function registerEdgeBounds(app: FastifyInstance, limits: EdgeLimits): void {
  app.server.maxConnections = limits.maxConnections;
  app.addHook('onRequest', (request, reply, done) => {
    for (const [name, value] of securityHeaders) reply.header(name, value);
    const headers = request.headers;
    const length = headers['content-length'];
    if (headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) {
      const upload = request.method === 'POST' && request.routeOptions.url === '/v1/files';
      const timeoutMs = upload ? limits.uploadBodyTimeoutMs : limits.bodyTimeoutMs;
      const raw = request.raw as TimedRequest;
      raw[bodyTimer] = setTimeout(bodyTimedOut, timeoutMs, request, reply, timeoutMs);
      raw.on('end', clearBodyTimer);
      raw.on('close', clearBodyTimer);
    }
    done();
  });
}

function clearBodyTimer(this: TimedRequest): void {
  clearTimeout(this[bodyTimer]);
}

function bodyTimedOut(request: FastifyRequest, reply: FastifyReply, timeoutMs: number): void {
  const raw = request.raw;
  if (raw.complete) return;
  // A reader is waiting for the body (the JSON parser, or the multipart upload): fail it, and the
  // route answers 408 as for any error. With no reader, or an answer already sent (a 401 before the
  // body), there is no one to tell: the connection just closes.
  if (!reply.sent && raw.listenerCount('error') > 0) {
    reply.header('connection', 'close');
    raw.emit('error', errors.requestTimeout('body', timeoutMs));
  } else raw.socket?.destroy();
}

/**
 * Fastify's `clientErrorHandler`: errors Node meets before a request exists (headers too large or too
 * slow, bytes that are not HTTP/1.1, Content-Length with Transfer-Encoding) answered with an
 * OpenAI-style body instead of Node's or fastify's own, then the connection closes.
 */
export function openAIClientErrorHandler(headersTimeoutMs: number) {
  return (error: Error & { code?: string; reason?: string }, socket: Socket): void => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    // A response already under way on this connection (a pipelined request): raw bytes would corrupt it.
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (!socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const answer = rawAnswer(clientError(error, headersTimeoutMs));
    socket.end(answer, () => socket.destroy());
  };
}

function clientError(error: Error & { code?: string; reason?: string }, headersTimeoutMs: number) {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return errors.requestTimeout('headers', headersTimeoutMs);
    case 'HPE_HEADER_OVERFLOW':
      return errors.headersTooLarge();
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
      return errors.malformedHttp('Content-Length together with Transfer-Encoding');
  }
  // The parser's reason (e.g. "Invalid method encountered"), never the bytes received.
  return errors.malformedHttp(error.reason ?? error.code ?? 'unreadable request');
}

function rawAnswer(error: GravityError): string {
  const body = JSON.stringify(error.toBody());
  return (
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? 'Error'}\r\n` +
    'content-type: application/json; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    securityHeaderLines +
    'connection: close\r\n\r\n' +
    body
  );
}
