import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';
import { listenOnLoopback } from './support/replay-upstream.js';

/**
 * Upstream bodies Gravity must not hold whole: a stream line that never ends, a huge error page, an
 * embeddings answer far larger than its inputs can need. Each ends the request with a clear 502 after a
 * bounded read, and the fake upstream sees Gravity stop reading.
 */
const megabyte = 1024 * 1024;

/** Writes `total` bytes of `fill` (after `head`), waiting for drains; resolves with what went out. */
async function writeBody(
  response: ServerResponse,
  head: string,
  total: number,
  fill: string,
): Promise<number> {
  let written = 0;
  const chunk = fill.repeat(Math.ceil((64 * 1024) / fill.length));
  // Gravity dropping the connection (what a bounded read does) ends the writing.
  const closed = once(response, 'close').then(() => 'closed' as const);
  const drained = async (flushed: boolean) =>
    flushed ||
    (await Promise.race([once(response, 'drain').then(() => 'drained' as const), closed])) === 'drained';
  if (!(await drained(response.write(head)))) return written;
  written += head.length;
  while (written < total && !response.destroyed) {
    if (!(await drained(response.write(chunk)))) break;
    written += chunk.length;
  }
  return written;
}

const sent: Record<string, Promise<number>> = {};
let upstream: { url: string; close(): Promise<void> };
let gateway: Harness;
beforeAll(async () => {
  upstream = await listenOnLoopback(
    createServer(async (request, response) => {
      let raw = '';
      for await (const chunk of request) raw += chunk;
      const { model } = JSON.parse(raw || '{}') as { model?: string };
      if (model === 'endless-line') {
        response.writeHead(200, { 'content-type': 'text/event-stream' });
        sent[model] = writeBody(response, 'data: ', 40 * megabyte, 'x');
      } else if (model === 'huge-error') {
        response.writeHead(500, { 'content-type': 'text/html' });
        sent[model] = writeBody(response, '<html><body>', 40 * megabyte, 'Internal error. ');
      } else if (model === 'huge-embedding') {
        response.writeHead(200, { 'content-type': 'application/json' });
        // Valid JSON, one vector of millions of numbers: no embedding model is this wide.
        sent[model] = writeBody(
          response,
          '{"object":"list","data":[{"index":0,"embedding":[0.1',
          40 * megabyte,
          ',0.1',
        );
      } else {
        response.writeHead(404);
        response.end();
        return;
      }
      sent[model]?.then(
        () => response.end(),
        () => {},
      );
    }),
  );
  const engine = {
    type: 'openai-upstream',
    baseUrl: upstream.url,
    connectTimeoutMs: 5000,
    maxConcurrentRequests: 4,
  };
  gateway = await startHarness(undefined, {
    engines: { faulty: engine },
    models: {
      'endless-line': { engine: 'faulty' },
      'huge-error': { engine: 'faulty' },
      'huge-embedding': { engine: 'faulty' },
    },
  });
});
afterAll(async () => {
  await gateway?.close();
  await upstream?.close();
});

const chat = (model: string) =>
  JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: 4 });

describe('bounded reads of upstream bodies', () => {
  it('drops a stream whose line never ends once it outgrows the event bound: 502 upstream_error', async () => {
    const response = await postRaw(`${gateway.url}/v1/chat/completions`, chat('endless-line'));
    expect(response.status).toBe(502);
    expect(response.json).toMatchObject({ error: { code: 'upstream_error' } });
    expect(JSON.stringify(response.json)).toContain('larger than');
    expect(await sent['endless-line']).toBeLessThan(40 * megabyte);
  });

  it('reads only the start of a huge error page and echoes at most 500 characters of it', async () => {
    const response = await postRaw(`${gateway.url}/v1/chat/completions`, chat('huge-error'));
    expect(response.status).toBe(502);
    const message = (response.json as { error: { message: string } }).error.message;
    expect(message.length).toBeLessThan(700);
    expect(await sent['huge-error']).toBeLessThan(40 * megabyte);
  });

  it('refuses an embeddings answer far larger than its inputs can need', async () => {
    const response = await postRaw(
      `${gateway.url}/v1/embeddings`,
      JSON.stringify({ model: 'huge-embedding', input: 'one input', encoding_format: 'float' }),
    );
    expect(response.status).toBe(502);
    expect(JSON.stringify(response.json)).toContain('larger than');
    expect(await sent['huge-embedding']).toBeLessThan(40 * megabyte);
  });
});
