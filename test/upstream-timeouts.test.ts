import { request as httpRequest, type IncomingMessage } from 'node:http';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaptureUpstream, startCaptureUpstream } from './support/capture-upstream.js';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { chatStreamWithoutUsage } from './support/replay-upstream.js';

/**
 * Upstreams that answer 200 and then send nothing, or two tokens and then nothing, are bounded by their
 * engine's `firstTokenTimeoutMs` and `idleTimeoutMs`: before the first token the attempt fails with 504
 * `upstream_timeout` and another replica takes the request; after it the stream ends with an error event
 * and a `partial` record. Either way the upstream's connection is dropped, which frees it.
 */
const [roleChunk, oneChunk, twoChunk] = chatStreamWithoutUsage(['one', ' two']);
const healthyStream = chatStreamWithoutUsage(['fine', ' answer'])
  .map((event) => `data: ${event}\n\n`)
  .join('');
/** Far more than the loopback socket buffers hold: a client that waits makes Gravity's writes wait too. */
const [largeRole, largeToken, ...largeEnd] = chatStreamWithoutUsage(['token ']).map(
  (event) => `data: ${event}\n\n`,
);
const largeStream = `${largeRole}${(largeToken as string).repeat(Math.ceil((12 * 1024 * 1024) / (largeToken as string).length))}${largeEnd.join('')}`;

let stalling: CaptureUpstream;
let healthy: CaptureUpstream;
let gateway: Harness;
beforeAll(async () => {
  stalling = await startCaptureUpstream({
    silent: { kind: 'stall', events: [] },
    'two-then-silent': { kind: 'stall', events: [roleChunk, oneChunk, twoChunk] as string[] },
  });
  healthy = await startCaptureUpstream({
    silent: { kind: 'capture', raw: healthyStream },
    large: { kind: 'capture', raw: largeStream },
  });
  const engine = (url: string) => ({
    type: 'openai-upstream',
    baseUrl: url,
    connectTimeoutMs: 5000,
    maxConcurrentRequests: 4,
    firstTokenTimeoutMs: 300,
    idleTimeoutMs: 300,
    responsesApi: true,
  });
  gateway = await startHarness(undefined, {
    engines: { stalls: engine(stalling.url), fine: engine(healthy.url) },
    models: {
      silent: { engine: 'stalls' },
      'two-then-silent': { engine: 'stalls' },
      // Both replicas are asked for `silent`: only the stalling one stalls.
      retried: { engines: ['stalls', 'fine'], upstreamModel: 'silent' },
      large: { engine: 'fine' },
    },
    // No probes (the capture upstream has no /models) and no ejection: each request meets the stall.
    routing: { policy: 'round-robin', health: { intervalMs: 0, consecutiveFailures: 1000 } },
  });
});
afterAll(async () => {
  await gateway?.close();
  await stalling?.close();
  await healthy?.close();
});

async function post(route: string, body: Record<string, unknown>) {
  const response = await fetch(`${gateway.url}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    requestId: response.headers.get('x-request-id'),
    text: await response.text(),
  };
}

const chat = (model: string, stream: boolean) => ({
  model,
  messages: [{ role: 'user', content: 'hi' }],
  stream,
  max_tokens: 16,
});

function ledgerRecord(requestId: string | null) {
  const ledger = new Database(gateway.ledgerPath, { readonly: true });
  try {
    return ledger
      .prepare('SELECT status, error_code, partial FROM usage_records WHERE request_id = ?')
      .get(requestId) as { status: number; error_code: string | null; partial: number } | undefined;
  } finally {
    ledger.close();
  }
}

/** The stalling upstream's most recent request for `model`, and whether Gravity closed it. */
async function lastStalledRequestClosed(model: string): Promise<boolean> {
  const received = stalling.received.filter((request) => request.body.model === model).at(-1);
  if (!received) return false;
  await received.closedEarly;
  return true;
}

describe('upstream first-token and idle timeouts', () => {
  it('answers 504 upstream_timeout when the only replica sends headers and then nothing', async () => {
    const response = await post('/v1/chat/completions', chat('silent', true));
    expect(response.status).toBe(504);
    expect(JSON.parse(response.text)).toMatchObject({ error: { code: 'upstream_timeout' } });
    expect(ledgerRecord(response.requestId)).toEqual({
      status: 504,
      error_code: 'upstream_timeout',
      partial: 0,
    });
    expect(await lastStalledRequestClosed('silent')).toBe(true);
  });

  it('retries a replica that stalls before its first token on another one: every request succeeds', async () => {
    const before = stalling.received.length;
    for (let request = 0; request < 4; request++) {
      const response = await post('/v1/chat/completions', chat('retried', true));
      expect(response.status).toBe(200);
      expect(response.text).toContain('fine');
      expect(response.text).toContain('data: [DONE]');
      expect(ledgerRecord(response.requestId)).toMatchObject({ status: 200, error_code: null });
    }
    // Round-robin sent some of them to the stalling replica first.
    expect(stalling.received.length).toBeGreaterThan(before);
    expect(await lastStalledRequestClosed('silent')).toBe(true);
  });

  it('ends a stream that goes silent after its first tokens with an error event and a partial record', async () => {
    const response = await post('/v1/chat/completions', chat('two-then-silent', true));
    expect(response.status).toBe(200);
    expect(response.text).toContain(' two');
    expect(response.text).toContain('"code":"upstream_timeout"');
    expect(response.text).not.toContain('[DONE]');
    expect(ledgerRecord(response.requestId)).toEqual({
      status: 200,
      error_code: 'upstream_timeout',
      partial: 1,
    });
    expect(await lastStalledRequestClosed('two-then-silent')).toBe(true);
  });

  it('answers a non-streamed request that goes silent mid-way with 504 and records it', async () => {
    const response = await post('/v1/chat/completions', chat('two-then-silent', false));
    expect(response.status).toBe(504);
    expect(JSON.parse(response.text)).toMatchObject({ error: { code: 'upstream_timeout' } });
    expect(ledgerRecord(response.requestId)).toEqual({
      status: 504,
      error_code: 'upstream_timeout',
      partial: 1,
    });
  });

  it('does not count time spent waiting for a slow client against the upstream', async () => {
    const { port, hostname } = new URL(gateway.url);
    const body = JSON.stringify(chat('large', true));
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const sent = httpRequest(
        {
          host: hostname,
          port,
          path: '/v1/chat/completions',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
        },
        resolve,
      );
      sent.on('error', reject);
      sent.end(body);
    });
    expect(response.statusCode).toBe(200);
    // Three idle bounds without reading: Gravity's writes back up and its relay waits for the client.
    await new Promise((resolve) => setTimeout(resolve, 900));
    let tail = '';
    let bytes = 0;
    for await (const chunk of response as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      tail = (tail + chunk.toString('utf8')).slice(-200);
    }
    expect(bytes).toBeGreaterThan(12 * 1024 * 1024);
    expect(tail).not.toContain('upstream_timeout');
    expect(tail).toContain('data: [DONE]');
  });

  it('bounds embeddings and the Responses relay the same way', async () => {
    const embeddings = await post('/v1/embeddings', { model: 'silent', input: 'hello' });
    expect(embeddings.status).toBe(504);
    expect(JSON.parse(embeddings.text)).toMatchObject({ error: { code: 'upstream_timeout' } });
    expect(ledgerRecord(embeddings.requestId)).toMatchObject({ status: 504, error_code: 'upstream_timeout' });

    const responses = await post('/v1/responses', { model: 'silent', input: 'hi', stream: true });
    expect(responses.status).toBe(504);
    expect(JSON.parse(responses.text)).toMatchObject({ error: { code: 'upstream_timeout' } });
    expect(ledgerRecord(responses.requestId)).toMatchObject({ status: 504, error_code: 'upstream_timeout' });
    const toResponses = stalling.received.filter((request) => request.path.endsWith('/responses'));
    expect(toResponses.length).toBe(1);
    await toResponses[0]?.closedEarly;
  });
});
