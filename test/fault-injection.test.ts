import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../src/metering/usage-record.js';
import {
  type FaultMode,
  type FaultUpstream,
  faultModes,
  startFaultUpstream,
} from './support/fault-upstream.js';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';

/**
 * Fault injection: Gravity in front of an upstream that fails in every way test/support/fault-upstream.ts
 * knows, and clients that misbehave. For each fault, what a user should see: the status, an OpenAI-style
 * error body (or, once a stream has begun, an SSE error event), exactly one ledger record with the right
 * status and `partial` flag, and Gravity still answering `/healthz` afterwards.
 *
 * Each mode has its own engine (`e-<mode>`) and model (`g-<mode>`), so a fault that holds a slot or marks
 * a replica unhealthy cannot leak into the next case. Bounds are set small so the file stays fast.
 */

/** Time the engines allow until the upstream's headers: the slow-headers mode waits longer. */
const connectTimeoutMs = 400;

let upstream: FaultUpstream;
let gravity: Harness;

beforeAll(async () => {
  upstream = await startFaultUpstream({
    slowHeadersMs: 3000,
    // 600 ms in all, 50 ms apart: once first-token and idle timeouts exist (set them to a few hundred
    // ms here), this stream must still pass: they bound each silence, not the whole response.
    trickleIntervalMs: 50,
    trickleTokens: 12,
    endlessLineBytes: 32 * 1024 * 1024,
  });
  // First-token and idle bounds of a few hundred ms: the trickle (50 ms apart) passes, a stall does not.
  const engine = (baseUrl: string) => ({
    type: 'openai-upstream',
    baseUrl,
    connectTimeoutMs,
    firstTokenTimeoutMs: 300,
    idleTimeoutMs: 300,
    maxConcurrentRequests: 2,
  });
  gravity = await startHarness(undefined, {
    // Small client-side bounds, so the stalled-client cases end in well under a second or two.
    server: { writeStallTimeoutMs: 500, headersTimeoutMs: 1000, bodyTimeoutMs: 1000 },
    engines: {
      ...Object.fromEntries(faultModes.map((mode) => [`e-${mode}`, engine(upstream.url)])),
      'e-refused': engine(upstream.refusedUrl),
    },
    models: {
      ...Object.fromEntries(
        faultModes.map((mode) => [`g-${mode}`, { engine: `e-${mode}`, upstreamModel: mode }]),
      ),
      'g-refused': { engine: 'e-refused', upstreamModel: 'healthy' },
    },
    routing: {
      // No ejection: each case must meet its own fault, not a replica a former case got ejected.
      health: { consecutiveFailures: 1000, intervalMs: 0 },
    },
  });
});

afterAll(async () => {
  await gravity?.close();
  await upstream?.close();
});

function chatBody(model: string, stream: boolean): string {
  return JSON.stringify({
    model,
    messages: [{ role: 'user', content: 'Say something.' }],
    max_tokens: 16,
    stream,
    ...(stream ? { stream_options: { include_usage: true } } : {}),
  });
}

async function chat(mode: FaultMode | 'refused', stream: boolean) {
  return postRaw(`${gravity.url}/v1/chat/completions`, chatBody(`g-${mode}`, stream));
}

/** The ledger's records of one request, waiting (boundedly) for the first to land. */
async function recordsOf(requestId: string | null, waitMs = 5000): Promise<UsageRecord[]> {
  expect(requestId).toBeTruthy();
  const deadline = Date.now() + waitMs;
  for (;;) {
    const ledger = new SqliteLedgerStore(gravity.ledgerPath);
    let records: UsageRecord[];
    try {
      records = (await ledger.records({})).filter((record) => record.requestId === requestId);
    } finally {
      await ledger.close();
    }
    if (records.length > 0 || Date.now() > deadline) return records;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function expectOneRecord(requestId: string | null, expected: Partial<UsageRecord>) {
  const records = await recordsOf(requestId);
  expect(records).toHaveLength(1);
  expect(records[0]).toMatchObject(expected);
  return records[0] as UsageRecord;
}

function expectOpenAIError(json: unknown, code: string) {
  const error = (json as { error?: Record<string, unknown> } | undefined)?.error;
  expect(error).toBeDefined();
  expect(error).toMatchObject({ code });
  expect(typeof error?.message).toBe('string');
  expect(typeof error?.type).toBe('string');
  expect(error?.param === null || typeof error?.param === 'string').toBe(true);
}

/** The `data:` payloads of an SSE body, parsed (the final `[DONE]` left out). */
function sseEvents(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n\n')
    .filter((block) => block.startsWith('data: {'))
    .map((block) => JSON.parse(block.slice('data: '.length)) as Record<string, unknown>);
}

async function expectStillServing() {
  const response = await fetch(`${gravity.url}/healthz`);
  expect(response.status).toBe(200);
}

describe('an upstream that answers', () => {
  it('healthy: streams the answer and records one 200', async () => {
    const response = await chat('healthy', true);
    expect(response.status).toBe(200);
    expect(response.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    await expectOneRecord(response.headers.get('x-request-id'), {
      status: 200,
      partial: false,
      usageSource: 'upstream',
      completionTokens: 3,
    });
    await expectStillServing();
  });

  it('trickle: a slow but steady stream reaches the client whole', async () => {
    const response = await chat('trickle', true);
    expect(response.status).toBe(200);
    const contents = sseEvents(response.text).flatMap((event) =>
      ((event.choices ?? []) as Array<{ delta?: { content?: string } }>).map(
        (choice) => choice.delta?.content,
      ),
    );
    expect(contents.filter((content) => content?.startsWith(' t'))).toHaveLength(12);
    await expectOneRecord(response.headers.get('x-request-id'), { status: 200, partial: false });
    await expectStillServing();
  });

  for (const mode of ['usage-fractional', 'usage-negative', 'usage-string'] as const) {
    it(`${mode}: answers 200 and meters with Gravity's own count, whole and non-negative`, async () => {
      const response = await chat(mode, true);
      expect(response.status).toBe(200);
      expect(response.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      const record = await expectOneRecord(response.headers.get('x-request-id'), {
        status: 200,
        usageSource: 'counted',
        completionTokens: 3,
      });
      expect(Number.isSafeInteger(record.promptTokens) && record.promptTokens > 0).toBe(true);
      expect(record.priceUsd).toBeGreaterThanOrEqual(0);
      await expectStillServing();
    });
  }
});

describe('an upstream that refuses the request', () => {
  for (const mode of ['error-object-code', 'error-boolean-code'] as const) {
    it(`${mode}: 400 with string error fields, and its record`, async () => {
      const response = await chat(mode, true);
      expect(response.status).toBe(400);
      expectOpenAIError(response.json, 'upstream_rejected');
      expect(response.text).not.toContain('[object Object]');
      await expectOneRecord(response.headers.get('x-request-id'), {
        status: 400,
        errorCode: 'upstream_rejected',
      });
      await expectStillServing();
    });
  }

  it('server-error: 502 upstream_error, and its record', async () => {
    const response = await chat('server-error', false);
    expect(response.status).toBe(502);
    expectOpenAIError(response.json, 'upstream_error');
    await expectOneRecord(response.headers.get('x-request-id'), {
      status: 502,
      errorCode: 'upstream_error',
      partial: false,
    });
    await expectStillServing();
  });

  it("rate-limited: 429 with the upstream's Retry-After, and its record", async () => {
    const response = await chat('rate-limited', false);
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('7');
    expectOpenAIError(response.json, 'rate_limit_exceeded');
    await expectOneRecord(response.headers.get('x-request-id'), { status: 429 });
    await expectStillServing();
  });
});

describe('an upstream that cannot be reached or breaks the connection', () => {
  it('refused: 502 upstream_unreachable, and its record', async () => {
    const response = await chat('refused', true);
    expect(response.status).toBe(502);
    expectOpenAIError(response.json, 'upstream_unreachable');
    await expectOneRecord(response.headers.get('x-request-id'), { status: 502, partial: false });
    await expectStillServing();
  });

  it('reset-before-headers: 502 upstream_unreachable, and its record', async () => {
    const response = await chat('reset-before-headers', true);
    expect(response.status).toBe(502);
    expectOpenAIError(response.json, 'upstream_unreachable');
    await expectOneRecord(response.headers.get('x-request-id'), { status: 502, partial: false });
    await expectStillServing();
  });

  it('reset-after-headers: before any token it is still a plain 502 a client can retry', async () => {
    const response = await chat('reset-after-headers', true);
    expect(response.status).toBe(502);
    expectOpenAIError(response.json, 'upstream_unreachable');
    await expectOneRecord(response.headers.get('x-request-id'), { status: 502, partial: false });
    await expectStillServing();
  });

  it('reset-mid-stream (streamed): the tokens sent, then an SSE error event; a partial record', async () => {
    const response = await chat('reset-mid-stream', true);
    expect(response.status).toBe(200);
    expect(response.text).toContain('" t2"');
    const last = sseEvents(response.text).at(-1);
    expectOpenAIError(last, 'upstream_unreachable');
    expect(response.text).not.toContain('data: [DONE]');
    await expectOneRecord(response.headers.get('x-request-id'), {
      status: 200,
      errorCode: 'upstream_unreachable',
      partial: true,
    });
    await expectStillServing();
  });

  it('reset-mid-stream (not streamed): 502, and a partial record', async () => {
    const response = await chat('reset-mid-stream', false);
    expect(response.status).toBe(502);
    expectOpenAIError(response.json, 'upstream_unreachable');
    await expectOneRecord(response.headers.get('x-request-id'), { status: 502, partial: true });
    await expectStillServing();
  });

  it('slow-headers: 504 upstream_timeout once the connect timeout passes', async () => {
    const response = await chat('slow-headers', true);
    expect(response.status).toBe(504);
    expectOpenAIError(response.json, 'upstream_timeout');
    await expectOneRecord(response.headers.get('x-request-id'), { status: 504, partial: false });
    await expectStillServing();
  });
});

describe('an upstream that sends what is not a usable stream', () => {
  it('non-sse-200: a JSON answer to a stream request is a 502, not an empty success', async () => {
    const response = await chat('non-sse-200', true);
    expect(response.status).toBe(502);
    expectOpenAIError(response.json, 'upstream_error');
    await expectOneRecord(response.headers.get('x-request-id'), { status: 502, partial: false });
    await expectStillServing();
  });

  it('endless-line: a line that never ends is dropped at the event bound with 502', async () => {
    const response = await chat('endless-line', true);
    expect(response.status).toBe(502);
    expectOpenAIError(response.json, 'upstream_error');
    expect(response.text).toContain('larger than');
    await expectOneRecord(response.headers.get('x-request-id'), { status: 502 });
    // Gravity stopped reading: the upstream never got to write all it meant to.
    const [exchange] = upstream.exchangesOf('endless-line');
    expect(exchange?.bytesWritten).toBeLessThan(32 * 1024 * 1024);
    await expectStillServing();
  });

  it('huge-event: one event over the bound ends the stream with an upstream_error', async () => {
    const response = await chat('huge-event', true);
    // The role chunk may have gone out first (then the error is an SSE event) or not (a plain 502).
    const error = response.status === 200 ? sseEvents(response.text).at(-1) : response.json;
    expect([200, 502]).toContain(response.status);
    expectOpenAIError(error, 'upstream_error');
    expect(JSON.stringify(error)).toContain('larger than');
    await expectOneRecord(response.headers.get('x-request-id'), { errorCode: 'upstream_error' });
    await expectStillServing();
  });
});

describe('an upstream that stalls', () => {
  it('stall-before-first-byte: ends within the first-token timeout with 504, one record, and drops the upstream', async () => {
    const response = await chat('stall-before-first-byte', true);
    expect(response.status).toBe(504);
    expectOpenAIError(response.json, 'upstream_timeout');
    await expectOneRecord(response.headers.get('x-request-id'), { status: 504, partial: false });
    const [exchange] = upstream.exchangesOf('stall-before-first-byte');
    expect(exchange?.closedAtMs).not.toBeNull();
    await expectStillServing();
  }, 20_000);

  it('stall-mid-stream: the tokens sent, then an SSE error event within the idle timeout; a partial record', async () => {
    const response = await chat('stall-mid-stream', true);
    expect(response.status).toBe(200);
    expect(response.text).toContain('" t2"');
    expectOpenAIError(sseEvents(response.text).at(-1), 'upstream_timeout');
    await expectOneRecord(response.headers.get('x-request-id'), { status: 200, partial: true });
    const [exchange] = upstream.exchangesOf('stall-mid-stream');
    expect(exchange?.closedAtMs).not.toBeNull();
    await expectStillServing();
  }, 20_000);
});

/** A raw HTTP/1.1 exchange over a socket, for clients no fetch implementation would be. */
function rawSocket(): Promise<Socket> {
  const { hostname, port } = new URL(gravity.url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Everything the server sends on `socket` until it closes it or `waitMs` passes. */
function readUntilClosed(socket: Socket, waitMs: number): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (data: string) => {
      text += data;
    });
    const timer = setTimeout(() => resolve({ text, closed: false }), waitMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
  });
}

describe('clients that misbehave', () => {
  it('a slow reader still gets the whole stream', async () => {
    const response = await fetch(`${gravity.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: chatBody('g-trickle', true),
    });
    expect(response.status).toBe(200);
    let text = '';
    const decoder = new TextDecoder();
    for await (const bytes of response.body as AsyncIterable<Uint8Array>) {
      text += decoder.decode(bytes, { stream: true });
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    await expectOneRecord(response.headers.get('x-request-id'), { status: 200, partial: false });
  });

  it('a client that stops reading is cut off with a 499 record, and its slot is freed', async () => {
    const socket = await rawSocket();
    const body = chatBody('g-flood', true);
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    // Never read: pause the socket so the kernel buffers fill and Gravity's writes stall.
    socket.pause();
    // e-flood has two slots: two stalled readers would hold both without the bound.
    const second = await rawSocket();
    second.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    second.pause();
    // Once the bound has cut both off, the replica answers again.
    const deadline = Date.now() + 15_000;
    let records: UsageRecord[] = [];
    while (Date.now() < deadline) {
      const ledger = new SqliteLedgerStore(gravity.ledgerPath);
      records = (await ledger.records({})).filter((record) => record.model === 'g-flood');
      await ledger.close();
      if (records.length >= 2) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(records.map((record) => record.status)).toEqual([499, 499]);
    socket.destroy();
    second.destroy();
    await expectStillServing();
  }, 20_000);

  it('a slowloris body (one byte at a time, never finished) gets a 408 in OpenAI shape and is closed', async () => {
    const socket = await rawSocket();
    socket.write(
      'POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{',
    );
    const dribble = setInterval(() => socket.write(' '), 500);
    const { text, closed } = await readUntilClosed(socket, 15_000);
    clearInterval(dribble);
    socket.destroy();
    expect(closed).toBe(true);
    expect(text).toMatch(/^HTTP\/1\.1 408/);
    expect(text).toContain('"error"');
    await expectStillServing();
  }, 20_000);

  it('headers that never finish are cut off', async () => {
    const socket = await rawSocket();
    socket.write('POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n');
    const dribble = setInterval(() => socket.write('x-slow: 1\r\n'), 500);
    const { closed } = await readUntilClosed(socket, 15_000);
    clearInterval(dribble);
    socket.destroy();
    expect(closed).toBe(true);
    await expectStillServing();
  }, 20_000);
});

describe('a replica that always fails mid-stream', () => {
  let fleet: Harness | undefined;
  afterAll(async () => {
    await fleet?.close();
  });

  it('is ejected after its consecutive failures, and the healthy replica serves the rest', async () => {
    fleet = await startHarness(undefined, {
      engines: {
        flaky: { type: 'openai-upstream', baseUrl: upstream.modeUrl('reset-mid-stream'), connectTimeoutMs },
        steady: { type: 'openai-upstream', baseUrl: upstream.modeUrl('healthy'), connectTimeoutMs },
      },
      models: { m: { engines: ['flaky', 'steady'] } },
      routing: { health: { consecutiveFailures: 3, ejectionMs: 60_000, intervalMs: 0 } },
    });
    let failed = 0;
    for (let index = 0; index < 30; index++) {
      const response = await postRaw(`${fleet.url}/v1/chat/completions`, chatBody('m', true));
      if (!response.text.trimEnd().endsWith('data: [DONE]')) failed++;
    }
    expect(failed).toBeLessThanOrEqual(3);
  }, 20_000);
});
