import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listenOnLoopback } from './replay-upstream.js';

/**
 * A fake OpenAI-compatible upstream that misbehaves on demand, for the fault-injection suite. One server
 * serves every mode: a request picks its mode by its `model` (what a Gravity model's `upstreamModel`
 * says), or, overriding that, by an `x-fault-mode` header or a `/mode/<mode>` path prefix (`modeUrl`,
 * for replicas of one Gravity model that must fail differently). Each mode is one way a real upstream or the
 * network between fails: refused connections, resets before and after headers, stalls, slow streams,
 * oversized or malformed data, error answers. `GET /v1/models` always answers (so health probes pass and
 * the fault shows only on the request path).
 */
export const faultModes = [
  /** A normal chat stream: role, three tokens, finish, usage, [DONE]. */
  'healthy',
  /** The connection is destroyed after the request is read, before any response byte. */
  'reset-before-headers',
  /** 200 and SSE headers go out, then the connection is destroyed before any event. */
  'reset-after-headers',
  /** Two tokens go out, then the connection is destroyed. */
  'reset-mid-stream',
  /** 200 and SSE headers go out, then nothing: no event, no end. */
  'stall-before-first-byte',
  /** Two tokens go out, then nothing. */
  'stall-mid-stream',
  /** One token every `trickleIntervalMs`, `trickleTokens` of them, then a normal end. */
  'trickle',
  /** `data: ` and then `endlessLineBytes` bytes with no newline. */
  'endless-line',
  /** One valid chunk whose content is `hugeEventBytes` characters, then a normal end. */
  'huge-event',
  /** A normal stream whose usage chunk has a fractional prompt count. */
  'usage-fractional',
  /** A normal stream whose usage chunk has negative counts (a negative price if trusted). */
  'usage-negative',
  /** A normal stream whose usage chunk has strings for counts. */
  'usage-string',
  /** 400 with an error whose `code` is an object. */
  'error-object-code',
  /** 400 with an error whose `code` is a boolean and `message` an object. */
  'error-boolean-code',
  /** 500 with an OpenAI-style error body. */
  'server-error',
  /** 429 with `Retry-After: retryAfterSeconds`. */
  'rate-limited',
  /** Headers only after `slowHeadersMs`, then a normal stream. */
  'slow-headers',
  /** 200 `application/json` with a whole chat.completion, although a stream was asked for. */
  'non-sse-200',
  /** `floodTokens` tokens as fast as the reader takes them (waiting for drains): megabytes of output. */
  'flood',
] as const;

export type FaultMode = (typeof faultModes)[number];

export interface FaultUpstreamOptions {
  trickleIntervalMs?: number;
  trickleTokens?: number;
  slowHeadersMs?: number;
  endlessLineBytes?: number;
  hugeEventBytes?: number;
  retryAfterSeconds?: number;
  floodTokens?: number;
}

/** One request the upstream received: its mode, and when its connection closed (null while open). */
export interface FaultExchange {
  mode: string;
  path: string;
  receivedAtMs: number;
  closedAtMs: number | null;
  /** Response body bytes written before the connection closed or the response ended. */
  bytesWritten: number;
}

export interface FaultUpstream {
  /** Base URL with `/v1`, for an `openai-upstream` engine's `baseUrl`. */
  url: string;
  /** A loopback `/v1` URL where nothing listens: connections to it are refused. */
  refusedUrl: string;
  /** A base URL whose every request runs `mode`, whatever the model. */
  modeUrl(mode: FaultMode): string;
  exchanges: FaultExchange[];
  /** The exchanges of one mode, in arrival order. */
  exchangesOf(mode: FaultMode): FaultExchange[];
  close(): Promise<void>;
}

const chunkBase = { id: 'chatcmpl-fault', object: 'chat.completion.chunk', created: 1, model: 'fault' };

function chunk(delta: Record<string, unknown>, finishReason: string | null = null): string {
  return `data: ${JSON.stringify({ ...chunkBase, choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
}

function usageChunk(usage: unknown): string {
  return `data: ${JSON.stringify({ ...chunkBase, choices: [], usage })}\n\n`;
}

const roleChunk = chunk({ role: 'assistant', content: '' });
const tokenChunk = (index: number) => chunk({ content: ` t${index}` });
const validUsage = { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 };
const malformedUsages: Partial<Record<FaultMode, unknown>> = {
  'usage-fractional': { prompt_tokens: 7.5, completion_tokens: 3, total_tokens: 10.5 },
  'usage-negative': { prompt_tokens: -1e6, completion_tokens: -3, total_tokens: -1000003 },
  'usage-string': {
    prompt_tokens: 'many',
    completion_tokens: '3',
    prompt_tokens_details: { cached_tokens: 'abc' },
  },
};

/** The end of a normal stream after `tokens` tokens: finish, the usage chunk, [DONE]. */
function streamEnd(usage: unknown = validUsage): string {
  return `${chunk({}, 'stop')}${usageChunk(usage)}data: [DONE]\n\n`;
}

const sseHeaders = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };
const jsonHeaders = { 'content-type': 'application/json' };

export async function startFaultUpstream(options: FaultUpstreamOptions = {}): Promise<FaultUpstream> {
  const trickleIntervalMs = options.trickleIntervalMs ?? 50;
  const trickleTokens = options.trickleTokens ?? 10;
  const slowHeadersMs = options.slowHeadersMs ?? 2000;
  const endlessLineBytes = options.endlessLineBytes ?? 16 * 1024 * 1024;
  const hugeEventBytes = options.hugeEventBytes ?? 9 * 1024 * 1024;
  const retryAfterSeconds = options.retryAfterSeconds ?? 7;
  const floodTokens = options.floodTokens ?? 200_000;
  const exchanges: FaultExchange[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  /** Writes, waiting for a drain when the socket's buffer is full; false once the peer has gone. */
  const write = async (response: ServerResponse, exchange: FaultExchange, text: string) => {
    if (response.destroyed) return false;
    exchange.bytesWritten += Buffer.byteLength(text);
    if (response.write(text)) return true;
    await new Promise<void>((resolve) => {
      const done = () => {
        response.off('drain', done);
        response.off('close', done);
        resolve();
      };
      response.once('drain', done);
      response.once('close', done);
    });
    return !response.destroyed;
  };

  const respond = async (mode: string, response: ServerResponse, exchange: FaultExchange) => {
    switch (mode as FaultMode) {
      case 'healthy':
        response.writeHead(200, sseHeaders);
        await write(response, exchange, roleChunk + tokenChunk(1) + tokenChunk(2) + tokenChunk(3));
        response.end(streamEnd());
        return;
      case 'reset-before-headers':
        response.socket?.destroy();
        return;
      case 'reset-after-headers':
        response.writeHead(200, sseHeaders);
        response.flushHeaders();
        await wait(20);
        response.socket?.destroy();
        return;
      case 'reset-mid-stream':
        response.writeHead(200, sseHeaders);
        await write(response, exchange, roleChunk + tokenChunk(1) + tokenChunk(2));
        await wait(50);
        response.socket?.destroy();
        return;
      case 'stall-before-first-byte':
        response.writeHead(200, sseHeaders);
        response.flushHeaders();
        return; // and nothing more, until Gravity or close() drops the connection
      case 'stall-mid-stream':
        response.writeHead(200, sseHeaders);
        await write(response, exchange, roleChunk + tokenChunk(1) + tokenChunk(2));
        return;
      case 'trickle':
        response.writeHead(200, sseHeaders);
        if (!(await write(response, exchange, roleChunk))) return;
        for (let index = 1; index <= trickleTokens; index++) {
          await wait(trickleIntervalMs);
          if (!(await write(response, exchange, tokenChunk(index)))) return;
        }
        response.end(streamEnd({ prompt_tokens: 5, completion_tokens: trickleTokens }));
        return;
      case 'endless-line': {
        response.writeHead(200, sseHeaders);
        const fill = 'x'.repeat(64 * 1024);
        if (!(await write(response, exchange, 'data: '))) return;
        for (let sent = 0; sent < endlessLineBytes; sent += fill.length)
          if (!(await write(response, exchange, fill))) return;
        response.end();
        return;
      }
      case 'huge-event':
        response.writeHead(200, sseHeaders);
        if (!(await write(response, exchange, roleChunk))) return;
        if (!(await write(response, exchange, chunk({ content: 'y'.repeat(hugeEventBytes) })))) return;
        response.end(streamEnd());
        return;
      case 'usage-fractional':
      case 'usage-negative':
      case 'usage-string':
        response.writeHead(200, sseHeaders);
        await write(response, exchange, roleChunk + tokenChunk(1) + tokenChunk(2) + tokenChunk(3));
        response.end(streamEnd(malformedUsages[mode as FaultMode]));
        return;
      case 'error-object-code':
        response.writeHead(400, jsonHeaders);
        response.end(
          JSON.stringify({
            error: { message: 'bad request', type: 'invalid_request_error', param: null, code: { a: 1 } },
          }),
        );
        return;
      case 'error-boolean-code':
        response.writeHead(400, jsonHeaders);
        response.end(
          JSON.stringify({ error: { message: { nested: true }, type: { t: 1 }, param: 7, code: true } }),
        );
        return;
      case 'server-error':
        response.writeHead(500, jsonHeaders);
        response.end(
          JSON.stringify({
            error: { message: 'the fault upstream broke', type: 'server_error', code: null },
          }),
        );
        return;
      case 'rate-limited':
        response.writeHead(429, { ...jsonHeaders, 'retry-after': String(retryAfterSeconds) });
        response.end(
          JSON.stringify({
            error: { message: 'slow down', type: 'rate_limit_error', code: 'rate_limit_exceeded' },
          }),
        );
        return;
      case 'slow-headers':
        await wait(slowHeadersMs);
        if (response.destroyed) return;
        response.writeHead(200, sseHeaders);
        response.end(roleChunk + tokenChunk(1) + streamEnd());
        return;
      case 'non-sse-200':
        response.writeHead(200, jsonHeaders);
        response.end(
          JSON.stringify({
            ...chunkBase,
            object: 'chat.completion',
            choices: [{ index: 0, message: { role: 'assistant', content: 'whole' }, finish_reason: 'stop' }],
            usage: validUsage,
          }),
        );
        return;
      case 'flood': {
        response.writeHead(200, sseHeaders);
        if (!(await write(response, exchange, roleChunk))) return;
        // A few hundred tokens per write: fast, and still paced by the reader's drains.
        let batch = '';
        for (let index = 1; index <= floodTokens; index++) {
          batch += tokenChunk(index);
          if (index % 256 !== 0) continue;
          if (!(await write(response, exchange, batch))) return;
          batch = '';
        }
        response.end(batch + streamEnd({ prompt_tokens: 5, completion_tokens: floodTokens }));
        return;
      }
      default:
        response.writeHead(404, jsonHeaders);
        response.end(
          JSON.stringify({ error: { message: `no fault mode '${mode}'`, code: 'model_not_found' } }),
        );
    }
  };

  const server = createServer(async (request: IncomingMessage, response: ServerResponse) => {
    let raw = '';
    for await (const part of request) raw += part;
    if (request.method === 'GET' && request.url?.endsWith('/models')) {
      // Health probes and model discovery see a healthy server whatever the mode.
      response.writeHead(200, jsonHeaders);
      response.end(
        JSON.stringify({
          object: 'list',
          data: faultModes.map((id) => ({ id, object: 'model', created: 1, owned_by: 'fault' })),
        }),
      );
      return;
    }
    let model = '';
    try {
      model = String((JSON.parse(raw || '{}') as { model?: unknown }).model ?? '');
    } catch {}
    const header = request.headers['x-fault-mode'];
    const prefixed = /^\/mode\/([^/]+)\//.exec(request.url ?? '')?.[1];
    const mode = prefixed ?? (typeof header === 'string' && header !== '' ? header : model);
    const exchange: FaultExchange = {
      mode,
      path: request.url ?? '',
      receivedAtMs: Date.now(),
      closedAtMs: null,
      bytesWritten: 0,
    };
    exchanges.push(exchange);
    response.once('close', () => {
      exchange.closedAtMs = Date.now();
    });
    await respond(mode, response, exchange).catch(() => response.destroy());
  });
  const listening = await listenOnLoopback(server);
  return {
    url: listening.url,
    refusedUrl: await refusedLoopbackUrl(),
    modeUrl: (mode) => listening.url.replace(/\/v1$/, `/mode/${mode}/v1`),
    exchanges,
    exchangesOf: (mode) => exchanges.filter((exchange) => exchange.mode === mode),
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await listening.close();
    },
  };
}

/** A loopback port that was free a moment ago and is closed now: connecting to it is refused. */
async function refusedLoopbackUrl(): Promise<string> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return `http://127.0.0.1:${port}/v1`;
}
