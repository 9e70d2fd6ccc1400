import { createServer } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import { PriceBook } from '../src/metering/price-book.js';
import { PrometheusMetrics } from '../src/metering/prometheus-metrics.js';
import type { UsageRecord } from '../src/metering/usage-record.js';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';
import { chatStreamWithoutUsage, listenOnLoopback } from './support/replay-upstream.js';

/**
 * An upstream is another party: its usage figures and error fields are read, never trusted. A loopback
 * upstream sends what a broken or hostile server could (fractional, negative, absurd or non-numeric token
 * counts; error codes that are objects or booleans); Gravity must answer the client as usual, meter the
 * request with its own counts, and leave exactly one ledger record with whole, non-negative figures. And
 * whatever an observer of the request does, the client gets its answer and the ledger its record.
 */

/** What the upstream answers, by the upstream model name each Gravity model `g-<name>` maps to. */
type Behaviour =
  | { kind: 'chat-stream'; events: string[] }
  | { kind: 'json'; status: number; body: unknown }
  | { kind: 'responses-stream'; events: Array<Record<string, unknown>> };

const chatBase = { id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1, model: 'upstream' };

/** Three tokens, a finish, then this usage chunk and [DONE]. */
function chatStreamWithUsage(usage: unknown): string[] {
  const events = chatStreamWithoutUsage(['one', ' two', ' three']);
  events.splice(events.length - 1, 0, JSON.stringify({ ...chatBase, choices: [], usage }));
  return events;
}

/** A Responses stream of two output deltas whose terminal `response.completed` carries this usage. */
function responsesStreamWithUsage(usage: unknown): Array<Record<string, unknown>> {
  const response = {
    id: 'resp_x',
    object: 'response',
    created_at: 1,
    model: 'upstream',
    status: 'in_progress',
  };
  const message = {
    id: 'msg_x',
    type: 'message',
    role: 'assistant',
    status: 'completed',
    content: [{ type: 'output_text', text: 'Hello there', annotations: [] }],
  };
  return [
    { type: 'response.created', sequence_number: 0, response: { ...response, output: [] } },
    {
      type: 'response.output_text.delta',
      sequence_number: 1,
      item_id: 'msg_x',
      output_index: 0,
      content_index: 0,
      delta: 'Hello',
    },
    {
      type: 'response.output_text.delta',
      sequence_number: 2,
      item_id: 'msg_x',
      output_index: 0,
      content_index: 0,
      delta: ' there',
    },
    {
      type: 'response.completed',
      sequence_number: 3,
      response: { ...response, status: 'completed', output: [message], usage },
    },
  ];
}

const malformedChatUsages: Record<string, unknown> = {
  'fractional-prompt': { prompt_tokens: 7.5, completion_tokens: 3, total_tokens: 10.5 },
  'string-cached': {
    prompt_tokens: 12,
    completion_tokens: 3,
    prompt_tokens_details: { cached_tokens: 'abc' },
  },
  'negative-prompt': { prompt_tokens: -1e6, completion_tokens: 3, total_tokens: -999997 },
  'absurd-completion': { prompt_tokens: 12, completion_tokens: 1e300 },
  'string-counts': { prompt_tokens: 'NaN', completion_tokens: 'Infinity' },
  'cached-over-prompt': {
    prompt_tokens: 5,
    completion_tokens: 3,
    prompt_tokens_details: { cached_tokens: 9 },
  },
  'reasoning-over-completion': {
    prompt_tokens: 5,
    completion_tokens: 3,
    completion_tokens_details: { reasoning_tokens: -4 },
  },
};

const behaviours: Record<string, Behaviour> = {
  ...Object.fromEntries(
    Object.entries(malformedChatUsages).map(([name, usage]) => [
      `chat-${name}`,
      { kind: 'chat-stream', events: chatStreamWithUsage(usage) } satisfies Behaviour,
    ]),
  ),
  'chat-valid': {
    kind: 'chat-stream',
    events: chatStreamWithUsage({ prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 }),
  },
  'embeddings-negative': {
    kind: 'json',
    status: 200,
    body: {
      object: 'list',
      data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }],
      usage: { prompt_tokens: -1e6 },
    },
  },
  'embeddings-fractional': {
    kind: 'json',
    status: 200,
    body: {
      object: 'list',
      data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }],
      usage: { prompt_tokens: 2.5 },
    },
  },
  'responses-string-input': {
    kind: 'responses-stream',
    events: responsesStreamWithUsage({ input_tokens: 'abc', output_tokens: 2, total_tokens: 2 }),
  },
  'responses-negative-output': {
    kind: 'responses-stream',
    events: responsesStreamWithUsage({ input_tokens: 4, output_tokens: -1e6 }),
  },
  'error-object-code': {
    kind: 'json',
    status: 400,
    body: { error: { message: 'bad request', type: 'invalid_request_error', param: null, code: { a: 1 } } },
  },
  'error-boolean-code': {
    kind: 'json',
    status: 400,
    body: { error: { message: { nested: true }, type: { t: 1 }, param: 42, code: true } },
  },
  'error-in-stream': {
    kind: 'chat-stream',
    events: [JSON.stringify({ error: { message: { a: 1 }, type: ['x'], code: { a: 1 } } }), '[DONE]'],
  },
};

let upstream: { url: string; close(): Promise<void> };
let gravity: Harness;

beforeAll(async () => {
  const server = createServer(async (request, response) => {
    let raw = '';
    for await (const chunk of request) raw += chunk;
    const model = (JSON.parse(raw || '{}') as { model?: string }).model ?? '';
    const behaviour = behaviours[model];
    if (!behaviour) {
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { message: `no behaviour ${model}`, code: 'model_not_found' } }));
      return;
    }
    if (behaviour.kind === 'json') {
      response.writeHead(behaviour.status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(behaviour.body));
      return;
    }
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    if (behaviour.kind === 'chat-stream')
      for (const event of behaviour.events) response.write(`data: ${event}\n\n`);
    else
      for (const event of behaviour.events)
        response.write(`event: ${String(event.type)}\ndata: ${JSON.stringify(event)}\n\n`);
    response.end();
  });
  upstream = await listenOnLoopback(server);
  gravity = await startHarness(undefined, {
    engines: {
      fake: {
        type: 'openai-upstream',
        baseUrl: upstream.url,
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 8,
        responsesApi: true,
      },
    },
    models: Object.fromEntries(
      Object.keys(behaviours).map((name) => [`g-${name}`, { engine: 'fake', upstreamModel: name }]),
    ),
  });
});

afterAll(async () => {
  await gravity?.close();
  await upstream?.close();
});

afterEach(() => {
  vi.restoreAllMocks();
});

async function ledgerRecords(requestId: string | null): Promise<UsageRecord[]> {
  expect(requestId).toBeTruthy();
  const ledger = new SqliteLedgerStore(gravity.ledgerPath);
  try {
    return (await ledger.records({})).filter((record) => record.requestId === requestId);
  } finally {
    await ledger.close();
  }
}

function expectWholeNonNegative(record: UsageRecord): void {
  for (const count of [record.promptTokens, record.cachedPromptTokens, record.completionTokens]) {
    expect(Number.isSafeInteger(count)).toBe(true);
    expect(count).toBeGreaterThanOrEqual(0);
  }
  expect(record.cachedPromptTokens).toBeLessThanOrEqual(record.promptTokens);
  expect(Number.isFinite(record.priceUsd)).toBe(true);
  expect(record.priceUsd).toBeGreaterThanOrEqual(0);
}

async function chat(model: string) {
  return postRaw(
    `${gravity.url}/v1/chat/completions`,
    JSON.stringify({
      model: `g-${model}`,
      messages: [{ role: 'user', content: 'Count to three.' }],
      stream: true,
      stream_options: { include_usage: true },
    }),
  );
}

/** The usage chunk Gravity sent the client, from an SSE body. */
function clientUsage(text: string): Record<string, unknown> | undefined {
  const events = text
    .split('\n\n')
    .filter((block) => block.startsWith('data: {'))
    .map((block) => JSON.parse(block.slice('data: '.length)) as { usage?: Record<string, unknown> | null });
  return events.find((event) => event.usage)?.usage ?? undefined;
}

describe('malformed upstream usage', () => {
  it('meters a chat stream with valid upstream usage from the upstream', async () => {
    const response = await chat('chat-valid');
    expect(response.status).toBe(200);
    const records = await ledgerRecords(response.headers.get('x-request-id'));
    expect(records).toMatchObject([{ usageSource: 'upstream', promptTokens: 12, completionTokens: 3 }]);
  });

  for (const name of Object.keys(malformedChatUsages)) {
    it(`falls back to counted usage when the upstream's chat usage is invalid (${name})`, async () => {
      const response = await chat(`chat-${name}`);
      expect(response.status).toBe(200);
      expect(response.text).toContain('"content":" three"');
      expect(response.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      // What the client is told is what the ledger holds: Gravity's count, three content chunks.
      expect(clientUsage(response.text)).toMatchObject({ completion_tokens: 3 });
      const records = await ledgerRecords(response.headers.get('x-request-id'));
      expect(records).toHaveLength(1);
      const [record] = records as [UsageRecord];
      expect(record).toMatchObject({ status: 200, usageSource: 'counted', completionTokens: 3 });
      expect(record.promptTokens).toBeGreaterThan(0);
      expectWholeNonNegative(record);
    });
  }

  for (const name of ['embeddings-negative', 'embeddings-fractional']) {
    it(`falls back to counted usage when the upstream's embeddings usage is invalid (${name})`, async () => {
      const response = await postRaw(
        `${gravity.url}/v1/embeddings`,
        JSON.stringify({ model: `g-${name}`, input: 'a sentence to embed' }),
      );
      expect(response.status).toBe(200);
      const body = response.json as unknown as { data: unknown[]; usage: { prompt_tokens: number } };
      expect(body.data).toHaveLength(1);
      expect(Number.isSafeInteger(body.usage.prompt_tokens)).toBe(true);
      expect(body.usage.prompt_tokens).toBeGreaterThan(0);
      const records = await ledgerRecords(response.headers.get('x-request-id'));
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({ status: 200, usageSource: 'counted' });
      expectWholeNonNegative(records[0] as UsageRecord);
    });
  }

  for (const name of ['responses-string-input', 'responses-negative-output']) {
    it(`falls back to counted usage when the upstream's Responses usage is invalid (${name})`, async () => {
      const response = await postRaw(
        `${gravity.url}/v1/responses`,
        JSON.stringify({ model: `g-${name}`, input: 'Say hello.', stream: true, store: false }),
      );
      expect(response.status).toBe(200);
      expect(response.text).toContain('response.completed');
      const records = await ledgerRecords(response.headers.get('x-request-id'));
      expect(records).toHaveLength(1);
      // Two output deltas: Gravity's count.
      expect(records[0]).toMatchObject({ status: 200, usageSource: 'counted', completionTokens: 2 });
      expectWholeNonNegative(records[0] as UsageRecord);
    });
  }
});

describe('malformed upstream error fields', () => {
  for (const name of ['error-object-code', 'error-boolean-code']) {
    it(`gives the client string-or-null error fields when the upstream's are not (${name})`, async () => {
      const response = await chat(name);
      expect(response.status).toBe(400);
      const error = response.json.error as Record<string, unknown>;
      expect(typeof error.message).toBe('string');
      expect(error.message).not.toContain('[object Object]');
      // A code that is not a string or a number is dropped: the status's own code stands in for it.
      expect(error.code).toBe('upstream_rejected');
      expect(typeof error.type).toBe('string');
      expect(error.param === null || typeof error.param === 'string').toBe(true);
      const records = await ledgerRecords(response.headers.get('x-request-id'));
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({ status: 400, errorCode: 'upstream_rejected' });
    });
  }

  it('gives the client a string error when a streamed error event has an object message and code', async () => {
    const response = await chat('error-in-stream');
    expect(response.status).toBe(502);
    const error = response.json.error as Record<string, unknown>;
    expect(error.code).toBe('upstream_error');
    expect(typeof error.message).toBe('string');
    expect(error.message).not.toContain('[object Object]');
    const records = await ledgerRecords(response.headers.get('x-request-id'));
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ status: 502, errorCode: 'upstream_error' });
  });
});

describe('an observer that throws', () => {
  it('still delivers the answer and writes the ledger record when the metrics observer throws', async () => {
    const onRequestEnd = vi.spyOn(PrometheusMetrics.prototype, 'onRequestEnd').mockImplementation(() => {
      throw new Error('metrics observer broke');
    });
    const response = await chat('chat-valid');
    expect(onRequestEnd).toHaveBeenCalled();
    expect(response.status).toBe(200);
    expect(response.text).toContain('"content":" three"');
    expect(response.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    const records = await ledgerRecords(response.headers.get('x-request-id'));
    expect(records).toMatchObject([
      { status: 200, usageSource: 'upstream', promptTokens: 12, completionTokens: 3 },
    ]);
  });

  it('still delivers the answer and writes the record, unpriced, when pricing throws', async () => {
    const priceUsd = vi.spyOn(PriceBook.prototype, 'priceUsd').mockImplementation(() => {
      throw new Error('price book broke');
    });
    const response = await chat('chat-valid');
    expect(priceUsd).toHaveBeenCalled();
    expect(response.status).toBe(200);
    expect(response.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    const records = await ledgerRecords(response.headers.get('x-request-id'));
    expect(records).toMatchObject([{ status: 200, promptTokens: 12, completionTokens: 3, priceUsd: 0 }]);
  });
});
