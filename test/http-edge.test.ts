import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteKeyStore } from '../src/admission/sqlite-key-store.js';
import { createKey } from '../src/cli/keys-command.js';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import { type Harness, startHarness } from './support/gravity-harness.js';

/**
 * The HTTP edge under hostile or broken clients, driven with raw sockets on loopback: slow and stalled
 * headers and bodies, bytes that are not HTTP, more connections than allowed. Each ends within its
 * configured bound with an OpenAI-style body (or, for the connection cap, a closed connection).
 */
const model = 'llama-3.1-8b';
const document = {
  engines: {
    replica: { type: 'emulated', hardware: 'h200', model, weightDtype: 'fp8', contextTokens: 4096 },
  },
  models: { [model]: { engine: 'replica' } },
};
/** Small bounds so that a stalled peer ends quickly; the tests wait far longer before failing. */
const headersTimeoutMs = 400;
const bodyTimeoutMs = 400;
const uploadBodyTimeoutMs = 800;

let harness: Harness;
let port: number;
beforeAll(async () => {
  harness = await startHarness((config) => {
    Object.assign(config.server, { headersTimeoutMs, bodyTimeoutMs, uploadBodyTimeoutMs });
  }, document);
  port = Number(new URL(harness.url).port);
});
afterAll(async () => {
  await harness?.close();
});

interface RawExchange {
  socket: Socket;
  /** Everything the server sent, once it closed the connection. */
  closed: Promise<string>;
}

/** A stalled peer must end within its bound; this margin only absorbs a slow machine. */
const marginMs = 5000;

/** What the server sent before closing, or a failure if it kept the connection past `boundMs` + margin. */
function closedWithin(exchange: RawExchange, boundMs: number): Promise<string> {
  return Promise.race([
    exchange.closed,
    sleep(boundMs + marginMs).then(() => {
      exchange.socket.destroy();
      throw new Error(`the server kept the connection open past ${boundMs} ms + ${marginMs} ms`);
    }),
  ]);
}

function openRaw(toPort = port): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const socket = connect(toPort, '127.0.0.1');
    const received: Buffer[] = [];
    const closed = new Promise<string>((done) => {
      socket.on('data', (chunk) => received.push(chunk));
      socket.on('close', () => done(Buffer.concat(received).toString('utf8')));
    });
    socket.on('error', () => {});
    socket.once('connect', () => resolve({ socket, closed }));
    socket.once('error', reject);
  });
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: { error?: Record<string, unknown> } | undefined;
}

function parseResponse(text: string): RawResponse {
  const [head = '', body = ''] = text.split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  let json: RawResponse['body'];
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: json };
}

function expectOpenAIError(response: RawResponse, status: number, code: string) {
  expect(response.status).toBe(status);
  expect(response.headers['content-type']).toMatch(/application\/json/);
  expect(Object.keys(response.body?.error ?? {}).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(response.body?.error).toMatchObject({ type: 'invalid_request_error', code });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function ledgerStatuses(endpoint: string): Promise<number[]> {
  const ledger = new SqliteLedgerStore(harness.ledgerPath);
  try {
    return (await ledger.records({})).filter((r) => r.endpoint === endpoint).map((r) => r.status);
  } finally {
    await ledger.close();
  }
}

describe('request deadlines', () => {
  it('answers a body that stalls halfway with 408, closes the connection, and records the completion once', async () => {
    const before = (await ledgerStatuses('chat.completions')).filter((status) => status === 408).length;
    const exchange = await openRaw();
    const { socket } = exchange;
    const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] });
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
    );
    const response = parseResponse(await closedWithin(exchange, bodyTimeoutMs));
    expectOpenAIError(response, 408, 'request_timeout');
    expect(response.headers.connection).toBe('close');
    const after = (await ledgerStatuses('chat.completions')).filter((status) => status === 408).length;
    expect(after).toBe(before + 1);
  });

  it('bounds the whole body, not the gaps: a chunked body trickled a byte at a time ends with 408', async () => {
    const exchange = await openRaw();
    const { socket } = exchange;
    socket.write(
      'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
    );
    let ended = false;
    void exchange.closed.then(() => {
      ended = true;
    });
    // Each gap is shorter than the body bound, so only a bound on the whole body ends this.
    const trickle = (async () => {
      for (let sent = 0; sent < 200 && !ended; sent++) {
        socket.write('1\r\n{\r\n');
        await sleep(bodyTimeoutMs / 4);
      }
    })();
    const response = parseResponse(await closedWithin(exchange, bodyTimeoutMs));
    await trickle;
    expectOpenAIError(response, 408, 'request_timeout');
  });

  it('answers headers that never finish with 408 and closes the connection', async () => {
    const exchange = await openRaw();
    const { socket } = exchange;
    socket.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    const response = parseResponse(await closedWithin(exchange, headersTimeoutMs));
    expectOpenAIError(response, 408, 'request_timeout');
    expect(response.body?.error?.message).toMatch(/headers/);
  });

  it('gives a file upload its own, longer bound, then answers a stalled one with 408', async () => {
    const exchange = await openRaw();
    const { socket } = exchange;
    const boundary = 'gravityboundary';
    const start =
      `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n` +
      'Content-Type: application/jsonl\r\n\r\n{"custom_id":"a"';
    socket.write(
      `POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: 100000\r\n\r\n${start}`,
    );
    let closedAt = 0;
    const startedAt = Date.now();
    const response = parseResponse(
      await closedWithin(exchange, uploadBodyTimeoutMs).then((text) => {
        closedAt = Date.now();
        return text;
      }),
    );
    expectOpenAIError(response, 408, 'request_timeout');
    // The upload bound, not the (shorter) bound for ordinary bodies.
    expect(closedAt - startedAt).toBeGreaterThanOrEqual(uploadBodyTimeoutMs - 50);
  });

  it('still serves requests whose body arrives in time, on the same connection', async () => {
    const { socket, closed } = await openRaw();
    const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    const request = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    socket.write(request + body.slice(0, 5));
    await sleep(bodyTimeoutMs / 4);
    socket.write(body.slice(5));
    await sleep(bodyTimeoutMs * 2);
    // The connection outlived the body bound (the body was done in time), and answers a second request.
    socket.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const text = await closed;
    expect(text.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2);
  });
});

describe('HTTP-level errors in OpenAI shape', () => {
  it('answers huge headers with 431', async () => {
    const exchange = await openRaw();
    const { socket } = exchange;
    socket.write(`GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expectOpenAIError(parseResponse(await closedWithin(exchange, 0)), 431, 'request_header_fields_too_large');
  });

  it('answers bytes that are not HTTP with 400', async () => {
    const exchange = await openRaw();
    const { socket } = exchange;
    socket.write('HELLO THERE\r\n\r\n');
    expectOpenAIError(parseResponse(await closedWithin(exchange, 0)), 400, 'invalid_http_request');
  });

  it('answers Content-Length together with Transfer-Encoding with 400 (request smuggling)', async () => {
    const exchange = await openRaw();
    const { socket } = exchange;
    socket.write(
      'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    );
    const response = parseResponse(await closedWithin(exchange, 0));
    expectOpenAIError(response, 400, 'invalid_http_request');
    expect(response.headers['x-content-type-options']).toBe('nosniff');
  });
});

describe('security headers', () => {
  it('sends them on answers, errors, 404s and streams', async () => {
    const expected = {
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
      'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
    };
    const check = (response: Response) => {
      for (const [name, value] of Object.entries(expected)) expect(response.headers.get(name)).toBe(value);
    };
    const models = await fetch(`${harness.url}/v1/models`);
    check(models);
    expect(models.headers.get('cache-control')).toBe('no-store');
    check(await fetch(`${harness.url}/nowhere`));
    const post = (body: unknown) =>
      fetch(`${harness.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const refused = await post({ model: 'missing', messages: [] });
    expect(refused.status).toBeGreaterThanOrEqual(400);
    check(refused);
    const answer = await post({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    expect(answer.status).toBe(200);
    check(answer);
    expect(answer.headers.get('cache-control')).toBe('no-store');
    const stream = await post({
      model,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 2,
      stream: true,
    });
    check(stream);
    await stream.text();
  });
});

describe('connection cap', () => {
  it('closes connections beyond server.maxConnections and keeps the others', async () => {
    const capped = await startHarness((config) => {
      config.server.maxConnections = 2;
    }, document);
    const cappedPort = Number(new URL(capped.url).port);
    const open: RawExchange[] = [];
    try {
      open.push(await openRaw(cappedPort), await openRaw(cappedPort));
      // Node counts a connection once it is accepted: give the server a turn to see both.
      await sleep(50);
      const extra = await openRaw(cappedPort);
      expect(await closedWithin(extra, 0)).toBe('');
      // The two within the cap still work.
      for (const { socket } of open)
        socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      for (const { closed } of open) expect(await closed).toMatch(/^HTTP\/1\.1 200 OK/);
    } finally {
      for (const { socket } of open) socket.destroy();
      await capped.close();
    }
  });
});

describe('admin-only surfaces with keys', () => {
  let keyed: Harness;
  let adminKey: string;
  let tenantKey: string;
  beforeAll(async () => {
    keyed = await startHarness((config) => {
      config.metrics.requireAdminKey = true;
      const store = new SqliteKeyStore(config.auth.keysPath ?? '');
      adminKey = createKey(store, { tenant: 'ops', admin: true }).key;
      tenantKey = createKey(store, { tenant: 'acme' }).key;
      store.close();
    }, document);
  });
  afterAll(async () => {
    await keyed?.close();
  });

  const get = (path: string, key?: string) =>
    fetch(`${keyed.url}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });

  it('puts /metrics behind the admin key for loopback clients too, with metrics.requireAdminKey', async () => {
    const anonymous = await get('/metrics');
    expect(anonymous.status).toBe(401);
    const tenant = await get('/metrics', tenantKey);
    expect(tenant.status).toBe(403);
    expect(((await tenant.json()) as { error: { code: string } }).error.code).toBe('admin_key_required');
    const admin = await get('/metrics', adminKey);
    expect(admin.status).toBe(200);
    expect(await admin.text()).toMatch(/gravity_auth_failures_total\{reason="missing_key"\} 1/);
  });

  it('shows routing replicas to admin keys only', async () => {
    const tenant = await get('/v1/routing/replicas', tenantKey);
    expect(tenant.status).toBe(403);
    expect(((await tenant.json()) as { error: { type: string } }).error.type).toBe('permission_error');
    expect((await get('/v1/routing/replicas', adminKey)).status).toBe(200);
  });
});

describe('metrics on their own port', () => {
  it('serves /metrics on metrics.port and no longer on the API port', async () => {
    const separate = await startHarness((config) => {
      config.metrics.port = 0;
    }, document);
    try {
      expect(separate.server.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const scraped = await fetch(`${separate.server.metricsUrl}/metrics`);
      expect(scraped.status).toBe(200);
      expect(await scraped.text()).toMatch(/^# HELP gravity_/m);
      expect(scraped.headers.get('x-content-type-options')).toBe('nosniff');
      const onApi = await fetch(`${separate.url}/metrics`);
      expect(onApi.status).toBe(404);
      expect(((await onApi.json()) as { error: { code: string } }).error.code).toBe('unknown_url');
      expect((await fetch(`${separate.server.metricsUrl}/v1/models`)).status).toBe(404);
    } finally {
      await separate.close();
    }
  });
});
