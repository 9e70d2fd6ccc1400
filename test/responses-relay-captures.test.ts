import { readFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import { type CaptureUpstream, startCaptureUpstream } from './support/capture-upstream.js';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';

/**
 * An upstream's own `/v1/responses` stream (OpenAI's, recorded shape in test/fixtures/sse-captures/,
 * README there) replayed behind Gravity's openai-upstream engine with `responsesApi: true`: the client
 * must get every event as the upstream sent it, byte for byte, except the fields Gravity owns inside
 * the lifecycle events' `response` object, and Gravity must store and continue the upstream's output
 * (reasoning item and built-in tool item included).
 */

const captureFile = path.join(
  import.meta.dirname,
  'fixtures',
  'sse-captures',
  'openai-responses-reasoning-web-search.sse',
);
const captureRaw = readFileSync(captureFile, 'utf8');

interface SseEvent {
  /** The `event:` line's value, or null when the block had none. */
  name: string | null;
  data: string;
}

/** `event:` + `data:` blocks, as OpenAI and Gravity write Responses streams. */
function sseEvents(text: string): SseEvent[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() !== '')
    .map((block) => {
      let name: string | null = null;
      let data: string | null = null;
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) name = line.slice('event: '.length);
        else if (line.startsWith('data: ')) data = line.slice('data: '.length);
        else throw new Error(`unexpected SSE line: ${line.slice(0, 80)}`);
      }
      if (data === null) throw new Error(`no data in block: ${block.slice(0, 80)}`);
      return { name, data };
    });
}

const capture = sseEvents(captureRaw);
const captureEnd = JSON.parse(capture.at(-1)?.data ?? '{}') as {
  sequence_number: number;
  response: { id: string; model: string; output: Array<{ type: string }>; usage: Record<string, unknown> };
};
const upstreamResponseId = captureEnd.response.id;

/**
 * The capture's event text as Gravity must relay it for request `requestId`: only the owned fields of
 * `response` objects differ (the upstream's id, model name, its `store: false` that Gravity asked for,
 * its `service_tier`). Every field the test replaces appears in `response` objects only.
 */
function expectedText(data: string, requestId: string): string {
  return data
    .replace(`"id":"${upstreamResponseId}"`, `"id":"resp_${requestId}"`)
    .replace(`"model":"${captureEnd.response.model}"`, '"model":"g-openai-reasoning"')
    .replace(/"service_tier":"(auto|default)"/, '"service_tier":"default"')
    .replace('"store":false', '"store":true');
}

/** Gravity's metered figures, flat, added first in the terminal event's usage. */
const gravityUsage = /"usage":\{"gravity":\{[^{}]*\},/;

const emulatedReplica = {
  type: 'emulated',
  hardware: 'h200',
  model: 'llama-3.1-8b',
  weightDtype: 'fp8',
  metering: { cost: { hourlyUsd: 3.5 } },
};

let upstream: CaptureUpstream;
let gravity: Harness;
let client: OpenAI;

beforeAll(async () => {
  upstream = await startCaptureUpstream({
    // Cut into pieces at fixed offsets: events and the multi-byte characters split across reads.
    'openai-reasoning': { kind: 'capture', raw: captureRaw, pieces: 11 },
    // The same stream failing after its reasoning item, as OpenAI reports a failure mid-stream.
    'openai-failing': {
      kind: 'stall',
      events: [
        ...capture.slice(0, 10).map((event) => event.data),
        JSON.stringify({
          type: 'response.failed',
          sequence_number: 10,
          response: {
            ...JSON.parse(capture[1]?.data ?? '{}').response,
            status: 'failed',
            error: { code: 'server_error', message: 'The model ran out of memory.' },
          },
        }),
      ],
    },
    // OpenAI's `error` event before any output (its overload report), after the lifecycle events.
    'openai-error-first': {
      kind: 'stall',
      events: [
        capture[0]?.data ?? '',
        capture[1]?.data ?? '',
        '{"type":"error","sequence_number":2,"code":"server_is_overloaded","message":"Our servers are currently overloaded. Please try again later.","param":null}',
      ],
    },
  });
  gravity = await startHarness(undefined, {
    engines: {
      openai: {
        type: 'openai-upstream',
        baseUrl: upstream.url,
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 4,
        responsesApi: true,
      },
      // The same upstream reached on its chat endpoint only, and an emulated replica: both translate a
      // Responses request onto chat, which has no shape for built-in tools.
      'openai-chat': {
        type: 'openai-upstream',
        baseUrl: upstream.url,
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 4,
      },
      emulated: emulatedReplica,
      'emulated-beside-openai': emulatedReplica,
    },
    models: {
      'g-openai-reasoning': { engine: 'openai', upstreamModel: 'openai-reasoning' },
      'g-openai-chat': { engine: 'openai-chat', upstreamModel: 'openai-reasoning' },
      'g-emulated': { engine: 'emulated' },
      // Named as the upstream names it: a model on several engines takes no upstreamModel.
      'openai-reasoning': { engines: ['openai', 'emulated-beside-openai'] },
      'g-openai-failing': { engine: 'openai', upstreamModel: 'openai-failing' },
      'g-openai-error-first': { engine: 'openai', upstreamModel: 'openai-error-first' },
    },
  });
  client = new OpenAI({ baseURL: `${gravity.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30_000 });
});

afterAll(async () => {
  await gravity?.close();
  await upstream?.close();
});

async function ledgerRecords(requestId: string) {
  const ledger = new SqliteLedgerStore(gravity.ledgerPath);
  try {
    return (await ledger.records({})).filter((record) => record.requestId === requestId);
  } finally {
    await ledger.close();
  }
}

describe("an upstream's Responses stream relayed (OpenAI, a reasoning item, a web search, a cited message)", () => {
  it('reaches the client byte for byte, only the fields Gravity owns rewritten, the usage carrying its figures', async () => {
    const response = await postRaw(
      `${gravity.url}/v1/responses`,
      JSON.stringify({ model: 'g-openai-reasoning', input: 'Weather in Paris?', stream: true }),
    );
    expect(response.status).toBe(200);
    const requestId = response.headers.get('x-request-id') ?? '';
    const received = sseEvents(response.text);

    // No event inserted or dropped: the upstream's sequence numbers and item ids stand.
    expect(received.map((event) => event.name)).toEqual(capture.map((event) => event.name));
    for (const [index, event] of capture.entries()) {
      const got = received[index]?.data ?? '';
      const isLifecycle = event.data.includes(`"response":{"id":"${upstreamResponseId}"`);
      if (!isLifecycle) {
        // Deltas (reasoning summary, output text with its multi-byte characters), items, annotations.
        expect(got, `event ${index} (${event.name})`).toBe(event.data);
        continue;
      }
      if (index < capture.length - 1) {
        expect(got, `event ${index} (${event.name})`).toBe(expectedText(event.data, requestId));
        continue;
      }
      // The terminal event: held until the ledger commit, then written with usage.gravity added.
      expect(got).toMatch(gravityUsage);
      expect(got.replace(gravityUsage, '"usage":{')).toBe(expectedText(event.data, requestId));
      const gravityFigures = (
        JSON.parse(got) as { response: { usage: { gravity: Record<string, unknown> } } }
      ).response.usage.gravity;
      expect(gravityFigures.usage_source).toBe('upstream');
      expect(typeof gravityFigures.cost_usd).toBe('number');
    }

    // One ledger record, metered from the upstream's usage (reasoning tokens are output tokens).
    const records = await ledgerRecords(requestId);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      endpoint: 'responses',
      status: 200,
      model: 'g-openai-reasoning',
      promptTokens: captureEnd.response.usage.input_tokens,
      completionTokens: captureEnd.response.usage.output_tokens,
      usageSource: 'upstream',
      finishReason: 'stop',
    });
  });

  it("parses with the openai SDK, is stored with the upstream's output, and a continuation sends that output upstream", async () => {
    const stream = client.responses.stream({
      model: 'g-openai-reasoning',
      input: 'Weather in Paris?',
      include: ['reasoning.encrypted_content'],
    });
    let summary = '';
    stream.on('response.reasoning_summary_text.delta', (event) => {
      summary += event.delta;
    });
    const final = await stream.finalResponse();
    expect(summary).toBe("**Checking today's Paris weather**");
    expect(final.id).toMatch(/^resp_/);
    expect(final.id).not.toBe(upstreamResponseId);
    expect(final.model).toBe('g-openai-reasoning');
    expect((final as { store?: unknown }).store).toBe(true);
    expect(final.output.map((item) => item.type)).toEqual(['reasoning', 'web_search_call', 'message']);
    expect(final.output_text).toContain('18 °C');
    const message = final.output.find((item) => item.type === 'message');
    const text = message?.type === 'message' ? message.content[0] : undefined;
    expect(text?.type === 'output_text' ? text.annotations : []).toEqual([
      expect.objectContaining({ type: 'url_citation', url: 'https://meteo.fr/paris?utm_source=openai' }),
    ]);
    // The upstream got the client's body with `store: false` (Gravity keeps the conversation).
    const first = upstream.received.at(-1);
    expect(first?.path).toBe('/v1/responses');
    expect(first?.body).toMatchObject({ model: 'openai-reasoning', store: false, stream: true });

    // GET answers the stored response: the upstream's whole output, reasoning item included.
    const stored = await client.responses.retrieve(final.id);
    expect(stored.output).toEqual(captureEnd.response.output);
    expect(stored.usage?.output_tokens).toBe(captureEnd.response.usage.output_tokens);

    // The continuation expands the earlier turn for the upstream: the user's message, then the
    // upstream's own output (the reasoning item with its id and encrypted content, the search call as
    // issued, the message without id and status).
    const next = await client.responses.create({
      model: 'g-openai-reasoning',
      input: 'And tomorrow?',
      previous_response_id: final.id,
    });
    expect(next.previous_response_id).toBe(final.id);
    const sent = upstream.received.at(-1)?.body as { input: Array<Record<string, unknown>>; store: boolean };
    expect(sent.store).toBe(false);
    expect(sent).not.toHaveProperty('previous_response_id');
    const [reasoning, search, answer] = captureEnd.response.output as Array<Record<string, unknown>>;
    const { id: _id, status: _status, ...answerSent } = answer ?? {};
    expect(sent.input).toEqual([
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Weather in Paris?' }] },
      reasoning,
      search,
      answerSent,
      { role: 'user', content: 'And tomorrow?' },
    ]);
  });

  it("answers a non-streamed request with the upstream's Response object, byte for byte but for the owned fields", async () => {
    const response = await postRaw(
      `${gravity.url}/v1/responses`,
      JSON.stringify({ model: 'g-openai-reasoning', input: 'Weather in Paris?' }),
    );
    expect(response.status).toBe(200);
    const requestId = response.headers.get('x-request-id') ?? '';
    const body = response.text;
    const terminal = capture.at(-1)?.data ?? '';
    const upstreamObject = terminal.slice(terminal.indexOf('"response":') + '"response":'.length, -1);
    expect(body.replace(gravityUsage, '"usage":{')).toBe(expectedText(upstreamObject, requestId));
    expect(await ledgerRecords(requestId)).toHaveLength(1);
  });

  it("ends a stream the upstream fails mid-way with Gravity's response.failed, numbered after the upstream's events", async () => {
    const stream = await client.responses.create({ model: 'g-openai-failing', input: 'Hi.', stream: true });
    const events: Array<{ type: string; sequence_number: number; response?: unknown }> = [];
    for await (const event of stream) events.push(event);
    expect(events.map((event) => event.type)).toEqual([
      ...capture.slice(0, 10).map((event) => event.name),
      'response.failed',
    ]);
    const failed = events.at(-1) as {
      sequence_number: number;
      response: { status: string; error: { message: string }; output: Array<{ type: string }> };
    };
    expect(failed.sequence_number).toBe(10);
    expect(failed.response.status).toBe('failed');
    expect(failed.response.error.message).toMatch(/ran out of memory/);
    // The items the upstream finished before failing.
    expect(failed.response.output.map((item) => item.type)).toEqual(['reasoning']);
  });

  it('answers an upstream error before any output with a plain 502, as a chat relay does', async () => {
    const response = await postRaw(
      `${gravity.url}/v1/responses`,
      JSON.stringify({ model: 'g-openai-error-first', input: 'Hi.', stream: true }),
    );
    expect(response.status).toBe(502);
    expect(response.json.error).toMatchObject({ code: 'upstream_error' });
    expect(String(response.json.error?.message)).toMatch(/currently overloaded/);
    const records = await ledgerRecords(response.headers.get('x-request-id') ?? '');
    expect(records).toMatchObject([{ status: 502, endpoint: 'responses' }]);
  });
});

describe('built-in tools: served by an upstream with its own /v1/responses, refused by name elsewhere', () => {
  const webSearch = {
    input: 'Weather in Paris?',
    tools: [{ type: 'web_search' }],
    include: ['web_search_call.action.sources'],
    max_tool_calls: 3,
    stream: true,
  };

  it('reach the upstream as sent, and the client gets its stream with the web search relayed', async () => {
    const response = await postRaw(
      `${gravity.url}/v1/responses`,
      JSON.stringify({ model: 'g-openai-reasoning', ...webSearch }),
    );
    expect(response.status).toBe(200);
    const sent = upstream.received.at(-1);
    expect(sent?.path).toBe('/v1/responses');
    expect(sent?.body).toMatchObject({
      model: 'openai-reasoning',
      input: 'Weather in Paris?',
      tools: [{ type: 'web_search' }],
      include: ['web_search_call.action.sources'],
      max_tool_calls: 3,
      store: false,
    });
    const received = sseEvents(response.text);
    expect(received.map((event) => event.name)).toEqual(capture.map((event) => event.name));
    expect(received.map((event) => event.name)).toContain('response.web_search_call.completed');
  });

  it('are a 400 naming the parameter on a plain upstream and on an emulated replica, before any upstream call', async () => {
    const before = upstream.received.length;
    for (const [model, engine] of [
      ['g-openai-chat', "'openai-chat' (openai-upstream)"],
      ['g-emulated', "'emulated' (emulated)"],
    ] as const) {
      const response = await postRaw(`${gravity.url}/v1/responses`, JSON.stringify({ model, ...webSearch }));
      expect(response.status, model).toBe(400);
      expect(response.json.error).toMatchObject({ code: 'unsupported_parameter', param: 'tools' });
      expect(String(response.json.error?.message)).toContain(
        "Unsupported parameter: 'tools' (built-in tool 'web_search') is not served by",
      );
      expect(String(response.json.error?.message)).toContain(engine);
    }
    // An input item chat has no shape for is refused the same way, by its parameter.
    const reference = await postRaw(
      `${gravity.url}/v1/responses`,
      JSON.stringify({ model: 'g-emulated', input: [{ type: 'item_reference', id: 'ws_1' }] }),
    );
    expect(reference.status).toBe(400);
    expect(reference.json.error).toMatchObject({ code: 'unsupported_parameter', param: 'input' });
    expect(String(reference.json.error?.message)).toContain("(input item 'item_reference')");
    expect(upstream.received.length).toBe(before);
  });

  it('route to the replica that serves them when a model has one that does and one that does not', async () => {
    for (let attempt = 0; attempt < 4; attempt++) {
      const response = await postRaw(
        `${gravity.url}/v1/responses`,
        JSON.stringify({ model: 'openai-reasoning', ...webSearch }),
      );
      expect(response.status).toBe(200);
      const route = JSON.parse(response.headers.get('x-gravity-route') ?? '{}') as { replica?: string };
      expect(route.replica).toBe('openai');
      expect(upstream.received.at(-1)?.body).toMatchObject({ tools: [{ type: 'web_search' }] });
    }
  });
});
