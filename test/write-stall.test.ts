import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { chatStreamWithoutUsage, listenOnLoopback } from './support/replay-upstream.js';

/**
 * A client that sends a streamed request and then reads nothing must not hold its engine slot forever:
 * once the socket has not drained for `server.writeStallTimeoutMs`, Gravity drops the connection,
 * records the request as the client's (499), and the replica's only slot serves the next request.
 */
const base = { id: 'chatcmpl-stall', object: 'chat.completion.chunk', created: 1, model: 'upstream' };
const tokenEvent = `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: 'token ' }, finish_reason: null }] })}\n\n`;
const tokenBurst = tokenEvent.repeat(500);

/** Writes token events as fast as the reader takes them, until the connection closes. */
async function endlessTokens(response: ServerResponse): Promise<void> {
  const closed = once(response, 'close');
  response.write(`data: ${chatStreamWithoutUsage([])[0]}\n\n`);
  while (!response.destroyed) {
    if (response.write(tokenBurst)) continue;
    await Promise.race([once(response, 'drain'), closed]);
  }
}

let endlessClosed: Promise<unknown> | null = null;
let upstream: { url: string; close(): Promise<void> };
let gateway: Harness;
beforeAll(async () => {
  upstream = await listenOnLoopback(
    createServer(async (request, response) => {
      let raw = '';
      for await (const chunk of request) raw += chunk;
      const { model } = JSON.parse(raw || '{}') as { model?: string };
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      if (model === 'endless') {
        endlessClosed = once(response, 'close');
        await endlessTokens(response);
        return;
      }
      response.end(
        chatStreamWithoutUsage(['short', ' answer'])
          .map((event) => `data: ${event}\n\n`)
          .join(''),
      );
    }),
  );
  gateway = await startHarness(
    (config) => {
      config.server.writeStallTimeoutMs = 500;
    },
    {
      engines: {
        // One slot: a request that keeps it blocks every other one.
        single: {
          type: 'openai-upstream',
          baseUrl: upstream.url,
          connectTimeoutMs: 5000,
          maxConcurrentRequests: 1,
          // Shorter than the write-stall bound: waiting for the client is not the upstream's silence.
          idleTimeoutMs: 200,
        },
      },
      models: { endless: { engine: 'single' }, short: { engine: 'single' } },
      routing: { health: { intervalMs: 0 } },
    },
  );
});
afterAll(async () => {
  await gateway?.close();
  await upstream?.close();
});

/** A raw HTTP client that sends a streamed chat request and never reads a byte of the answer. */
async function requestWithoutReading(): Promise<Socket> {
  const { port, hostname } = new URL(gateway.url);
  const socket = connect({ port: Number(port), host: hostname });
  await once(socket, 'connect');
  const body = JSON.stringify({
    model: 'endless',
    messages: [{ role: 'user', content: 'talk forever' }],
    stream: true,
    max_tokens: 1_000_000,
  });
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  // No 'data' listener and no read(): the socket's buffers fill and then Gravity's writes stall.
  socket.pause();
  return socket;
}

function ledgerRows(): Array<{ model: string; status: number; error_code: string | null }> {
  const ledger = new Database(gateway.ledgerPath, { readonly: true });
  try {
    return ledger.prepare('SELECT model, status, error_code FROM usage_records').all() as Array<{
      model: string;
      status: number;
      error_code: string | null;
    }>;
  } finally {
    ledger.close();
  }
}

describe('a client that stops reading', () => {
  it('is dropped after the write-stall bound: a 499 record, and the one slot serves the next request', async () => {
    const socket = await requestWithoutReading();
    try {
      // The endless answer has begun: the request holds the replica's only slot.
      while (endlessClosed === null) await new Promise((resolve) => setTimeout(resolve, 10));
      const next = await fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'short', messages: [{ role: 'user', content: 'hi' }], stream: true }),
      });
      expect(next.status).toBe(200);
      const text = await next.text();
      expect(text).toContain('short');
      expect(text).toContain('data: [DONE]');
      // The stalled request's upstream exchange was dropped with it.
      await endlessClosed;
      const rows = ledgerRows();
      expect(rows.find((row) => row.model === 'endless')).toMatchObject({
        status: 499,
        error_code: 'cancelled',
      });
      expect(rows.find((row) => row.model === 'short')).toMatchObject({ status: 200, error_code: null });
    } finally {
      socket.destroy();
    }
  });
});
