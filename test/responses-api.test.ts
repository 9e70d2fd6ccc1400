import { Ajv } from 'ajv';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteKeyStore } from '../src/admission/sqlite-key-store.js';
import { createKey } from '../src/cli/keys-command.js';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';
import { type ReplayUpstream, startReplayUpstream } from './support/replay-upstream.js';

/**
 * `/v1/responses` across stages, with the openai SDK against live servers on loopback:
 * - `inner`: Gravity's default config, the in-process llama.cpp engine with the generated GGUF models;
 * - `outer`: keys for two tenants, an emulated replica, and two openai-upstream engines in front of
 *   `inner`: one translating Responses requests onto its chat endpoint, one (`responsesApi: true`)
 *   sending them to its `/v1/responses`.
 * Tenant isolation of stored responses, one ledger record per request, Batch API lines, the in-process
 * engine's grammars behind `text.format` and tools, and the upstream relay.
 */

let inner: Harness;
let outer: Harness;
/** Fails after its first token (an error event), and answers 500 at once. */
let brokenMidway: ReplayUpstream;
let failing: ReplayUpstream;
/** A token every 50 ms, for a client that leaves mid-stream. */
let slow: ReplayUpstream;
const keys: { alpha: string; beta: string; ops: string } = { alpha: '', beta: '', ops: '' };
const clientFor = (apiKey: string) =>
  new OpenAI({ baseURL: `${outer.url}/v1`, apiKey, maxRetries: 0, timeout: 60_000 });
let alpha: OpenAI;
let beta: OpenAI;
let ops: OpenAI;

beforeAll(async () => {
  inner = await startHarness();
  const chunk = (content: string) =>
    JSON.stringify({
      id: 'x',
      object: 'chat.completion.chunk',
      model: 'm',
      choices: [{ index: 0, delta: { content }, finish_reason: null }],
    });
  brokenMidway = await startReplayUpstream({
    events: [chunk('Hel'), chunk('lo'), JSON.stringify({ error: { message: 'the upstream broke' } })],
    delayMs: 5,
  });
  failing = await startReplayUpstream({ events: [], delayMs: 0, status: 500 });
  slow = await startReplayUpstream({
    events: Array.from({ length: 40 }, (_, index) => chunk(`t${index} `)),
    delayMs: 50,
  });
  outer = await startHarness(
    (config) => {
      const store = new SqliteKeyStore(config.auth.keysPath ?? '');
      keys.alpha = createKey(store, { tenant: 'alpha' }).key;
      keys.beta = createKey(store, { tenant: 'beta' }).key;
      keys.ops = createKey(store, { tenant: 'ops', admin: true }).key;
      store.close();
    },
    {
      engines: {
        agent: {
          type: 'emulated',
          hardware: 'h200',
          model: 'llama-3.1-8b',
          weightDtype: 'fp8',
          contextTokens: 8192,
        },
        remote: {
          type: 'openai-upstream',
          baseUrl: `${inner.url}/v1`,
          connectTimeoutMs: 10_000,
          maxConcurrentRequests: 4,
        },
        native: {
          type: 'openai-upstream',
          baseUrl: `${inner.url}/v1`,
          connectTimeoutMs: 10_000,
          maxConcurrentRequests: 4,
          responsesApi: true,
        },
        broken: {
          type: 'openai-upstream',
          baseUrl: brokenMidway.url,
          connectTimeoutMs: 5000,
          maxConcurrentRequests: 2,
        },
        slow: {
          type: 'openai-upstream',
          baseUrl: slow.url,
          connectTimeoutMs: 5000,
          maxConcurrentRequests: 2,
        },
        failing: {
          type: 'openai-upstream',
          baseUrl: failing.url,
          connectTimeoutMs: 5000,
          maxConcurrentRequests: 2,
        },
      },
      models: {
        'agent-8b': { engine: 'agent' },
        'remote-random': { engine: 'remote', upstreamModel: 'gravity-tiny-random' },
        'native-random': { engine: 'native', upstreamModel: 'gravity-tiny-random' },
        'broken-model': { engine: 'broken' },
        'failing-model': { engine: 'failing' },
        'slow-model': { engine: 'slow' },
      },
    },
  );
  alpha = clientFor(keys.alpha);
  beta = clientFor(keys.beta);
  ops = clientFor(keys.ops);
}, 120_000);
afterAll(async () => {
  await outer?.close();
  await inner?.close();
  await brokenMidway?.close();
  await failing?.close();
  await slow?.close();
});

const ajv = new Ajv({ strict: false });
const cityTool = {
  type: 'function' as const,
  name: 'get_weather',
  description: 'The weather in a city',
  parameters: {
    type: 'object',
    properties: { city: { type: 'string', maxLength: 6 }, unit: { enum: ['c', 'f'] } },
    required: ['city', 'unit'],
    additionalProperties: false,
  },
  strict: true,
};

describe('stored responses belong to their tenant', () => {
  it('answers 404 to another tenant on retrieve, delete, input_items and previous_response_id', async () => {
    const created = await alpha.responses.create({ model: 'agent-8b', input: 'Remember: blue.' });
    const notFound = { status: 404 };
    await expect(beta.responses.retrieve(created.id)).rejects.toMatchObject(notFound);
    await expect(beta.responses.inputItems.list(created.id)).rejects.toMatchObject(notFound);
    await expect(beta.responses.delete(created.id)).rejects.toMatchObject(notFound);
    await expect(
      beta.responses.create({ model: 'agent-8b', input: 'What colour?', previous_response_id: created.id }),
    ).rejects.toMatchObject({ status: 404, code: 'previous_response_not_found' });
    // Admin keys read every tenant's usage, but a response is its tenant's alone.
    await expect(ops.responses.retrieve(created.id)).rejects.toMatchObject(notFound);

    // The owner still has it, and can continue it.
    expect((await alpha.responses.retrieve(created.id)).id).toBe(created.id);
    const next = await alpha.responses.create({
      model: 'agent-8b',
      input: 'What colour?',
      previous_response_id: created.id,
    });
    expect(next.previous_response_id).toBe(created.id);
  });

  it('records one ledger entry per request, with the response id as its request id', async () => {
    const { data: response, response: raw } = await alpha.responses
      .create({ model: 'agent-8b', input: 'One record.' })
      .withResponse();
    const refused = await postRaw(`${outer.url}/v1/responses`, '{"model": "agent-8b", "input": ', {
      authorization: `Bearer ${keys.alpha}`,
    });
    expect(refused.status).toBe(400);
    const requestId = raw.headers.get('x-request-id') ?? '';
    expect(response.id).toBe(`resp_${requestId}`);
    const ledger = new SqliteLedgerStore(outer.ledgerPath);
    try {
      const records = await ledger.records({});
      const mine = records.filter((record) => record.requestId === requestId);
      expect(mine).toHaveLength(1);
      expect(mine[0]).toMatchObject({ endpoint: 'responses', tenant: 'alpha', status: 200 });
      const refusedId = refused.headers.get('x-request-id');
      expect(records.filter((record) => record.requestId === refusedId)).toMatchObject([
        { endpoint: 'responses', status: 400 },
      ]);
    } finally {
      await ledger.close();
    }
  });
});

describe('Batch API lines on /v1/responses', () => {
  it('answers each line with a Response object, and refuses previous_response_id in a line', async () => {
    const lines = [
      { custom_id: 'plain', method: 'POST', url: '/v1/responses', body: { model: 'agent-8b', input: 'Hi.' } },
      {
        custom_id: 'continued',
        method: 'POST',
        url: '/v1/responses',
        body: { model: 'agent-8b', input: 'Hi.', previous_response_id: 'resp_x' },
      },
      // Through an upstream's own /v1/responses: the line's answer is the relayed Response object.
      {
        custom_id: 'relayed',
        method: 'POST',
        url: '/v1/responses',
        body: { model: 'native-random', input: 'Hi.', max_output_tokens: 3 },
      },
    ];
    const file = await alpha.files.create({
      file: await toFile(Buffer.from(lines.map((line) => JSON.stringify(line)).join('\n')), 'in.jsonl'),
      purpose: 'batch',
    });
    let batch = await alpha.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/responses',
      completion_window: '24h',
    });
    const deadline = Date.now() + 20_000;
    while (!['completed', 'failed'].includes(batch.status) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      batch = await alpha.batches.retrieve(batch.id);
    }
    expect(batch).toMatchObject({
      status: 'completed',
      request_counts: { total: 3, completed: 2, failed: 1 },
    });
    const output = (await (await alpha.files.content(batch.output_file_id ?? '')).text())
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    const answer = output.find((line) => line.custom_id === 'plain');
    expect(answer.response.body).toMatchObject({ object: 'response', status: 'completed', store: false });
    expect(answer.response.body.output[0].type).toBe('message');
    const relayed = output.find((line) => line.custom_id === 'relayed').response.body;
    expect(relayed).toMatchObject({
      object: 'response',
      status: 'incomplete',
      model: 'native-random',
      store: false,
      usage: { output_tokens: 3, gravity: { usage_source: 'upstream' } },
    });
    // The upstream's items, under the ids the upstream gave them.
    expect(relayed.output[0].type).toBe('message');
    expect(relayed.output[0].id).not.toBe(`msg_${relayed.id.slice('resp_'.length)}`);
    const failed = JSON.parse((await (await alpha.files.content(batch.error_file_id ?? '')).text()).trim());
    expect(failed.response.body.error).toMatchObject({
      code: 'unsupported_parameter',
      param: 'previous_response_id',
    });
  });
});

describe('the in-process llama.cpp engine behind /v1/responses', () => {
  it('writes JSON valid against text.format json_schema', async () => {
    const schema = {
      type: 'object',
      properties: { name: { type: 'string', maxLength: 6 }, age: { type: 'integer' } },
      required: ['name', 'age'],
      additionalProperties: false,
    };
    const response = await inner.client.responses.create({
      model: 'gravity-tiny-random',
      input: 'A person.',
      text: { format: { type: 'json_schema', name: 'person', schema, strict: true } },
      max_output_tokens: 200,
      temperature: 1,
    });
    expect(response.status).toBe('completed');
    const validate = ajv.compile(schema);
    expect(validate(JSON.parse(response.output_text)), JSON.stringify(validate.errors)).toBe(true);
  });

  it('streams a required function call whose arguments are valid against the tool', async () => {
    const stream = await inner.client.responses.create({
      model: 'gravity-tiny-random',
      input: 'Weather?',
      tools: [cityTool],
      tool_choice: 'required',
      parallel_tool_calls: false,
      max_output_tokens: 300,
      stream: true,
      // A vendor extra: not a Responses parameter, carried to the engine like a chat request's.
      ...({ seed: 11 } as object),
    });
    const calls: Array<{ name: string; arguments: string; call_id: string }> = [];
    let completed = false;
    for await (const event of stream) {
      if (event.type === 'response.output_item.done' && event.item.type === 'function_call')
        calls.push(event.item);
      if (event.type === 'response.completed') completed = true;
    }
    expect(completed).toBe(true);
    expect(calls).toHaveLength(1);
    const validate = ajv.compile(cityTool.parameters);
    for (const call of calls) {
      expect(call.name).toBe('get_weather');
      expect(call.call_id).toMatch(/\S/);
      expect(validate(JSON.parse(call.arguments)), JSON.stringify(validate.errors)).toBe(true);
    }
  });
});

describe('an upstream without /v1/responses, served on its chat endpoint', () => {
  it('answers whole and streamed Responses requests from the relayed chat stream', async () => {
    const whole = await alpha.responses.create({
      model: 'remote-random',
      input: 'Hello.',
      max_output_tokens: 5,
    });
    expect(whole.status).toBe('incomplete');
    expect(whole.usage?.output_tokens).toBe(5);
    expect(whole.output_text.length).toBeGreaterThan(0);

    const stream = await alpha.responses.create({
      model: 'remote-random',
      input: 'Weather?',
      tools: [cityTool],
      tool_choice: 'required',
      parallel_tool_calls: false,
      max_output_tokens: 300,
      stream: true,
      ...({ seed: 11 } as object),
    });
    let argumentsDone: string | null = null;
    for await (const event of stream)
      if (event.type === 'response.function_call_arguments.done') argumentsDone = event.arguments;
    const validate = ajv.compile(cityTool.parameters);
    expect(validate(JSON.parse(argumentsDone ?? 'null')), JSON.stringify(validate.errors)).toBe(true);

    // The upstream received chat completions requests: Gravity translated them.
    const ledger = new SqliteLedgerStore(inner.ledgerPath);
    try {
      const endpoints = new Set((await ledger.records({})).map((record) => record.endpoint));
      expect(endpoints.has('chat.completions')).toBe(true);
    } finally {
      await ledger.close();
    }
  });
});

describe('an upstream that serves /v1/responses (responsesApi: true)', () => {
  it('gets Responses requests, earlier turns expanded and store false, and Gravity keeps the conversation', async () => {
    const upstreamResponseIds = async () => {
      const ledger = new SqliteLedgerStore(inner.ledgerPath);
      try {
        return (await ledger.records({}))
          .filter((record) => record.endpoint === 'responses')
          .map((record) => `resp_${record.requestId}`);
      } finally {
        await ledger.close();
      }
    };
    const before = new Set(await upstreamResponseIds());
    const first = await alpha.responses.create({
      model: 'native-random',
      input: 'Hello.',
      max_output_tokens: 4,
    });
    expect(first.status).toBe('incomplete');
    expect(first.model).toBe('native-random');
    expect(first.usage?.output_tokens).toBe(4);
    expect(first.output_text.length).toBeGreaterThan(0);

    const stream = await alpha.responses.create({
      model: 'native-random',
      input: 'And again.',
      previous_response_id: first.id,
      max_output_tokens: 4,
      stream: true,
    });
    let deltas = '';
    let final: { id: string; output_text?: string; usage?: { input_tokens: number } } | null = null;
    const sequenceNumbers: number[] = [];
    const deltaItemIds = new Set<string>();
    for await (const event of stream) {
      sequenceNumbers.push(event.sequence_number);
      if (event.type === 'response.output_text.delta') {
        deltas += event.delta;
        deltaItemIds.add(event.item_id);
      }
      if (event.type === 'response.incomplete' || event.type === 'response.completed') final = event.response;
    }
    expect(deltas.length).toBeGreaterThan(0);
    // The inner Gravity's own numbering, nothing inserted or dropped by the outer one.
    expect(sequenceNumbers).toEqual(sequenceNumbers.map((_, index) => index));
    // The upstream saw the first turn: the second prompt is longer than the first.
    expect(final?.usage?.input_tokens).toBeGreaterThan(first.usage?.input_tokens ?? 0);
    // Stored by Gravity, under its own id.
    expect((await alpha.responses.retrieve(final?.id ?? '')).previous_response_id).toBe(first.id);

    const relayed = (await upstreamResponseIds()).filter((id) => !before.has(id));
    expect(relayed).toHaveLength(2);
    // Relayed, not re-rendered: the items keep the ids the inner Gravity gave them, in the stream and
    // in what the outer one stored (the output a continuation expands).
    const innerMessageIds = relayed.map((id) => `msg_${id.slice('resp_'.length)}`);
    expect(innerMessageIds).toEqual(expect.arrayContaining([...deltaItemIds]));
    const storedFirst = await alpha.responses.retrieve(first.id);
    expect(storedFirst.output.map((item) => item.id)).toEqual(first.output.map((item) => item.id));
    expect(innerMessageIds).toContain(first.output[0]?.id);
    expect(storedFirst.usage).toMatchObject({ output_tokens: 4, gravity: { usage_source: 'upstream' } });
    // Nothing was stored upstream: the responses it created cannot be retrieved there.
    for (const id of relayed)
      await expect(inner.client.responses.retrieve(id)).rejects.toMatchObject({ status: 404 });
  });

  it('relays token logprobs as the upstream sent them, on the deltas and in the stored output', async () => {
    const stream = await alpha.responses.create({
      model: 'native-random',
      input: 'Hello.',
      max_output_tokens: 3,
      include: ['message.output_text.logprobs'],
      top_logprobs: 2,
      stream: true,
    });
    const deltaLogprobs: unknown[] = [];
    let finalId = '';
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') deltaLogprobs.push(...event.logprobs);
      if (event.type === 'response.incomplete' || event.type === 'response.completed')
        finalId = event.response.id;
    }
    expect(deltaLogprobs.length).toBeGreaterThan(0);
    expect(deltaLogprobs[0]).toMatchObject({ token: expect.any(String), logprob: expect.any(Number) });
    const stored = await alpha.responses.retrieve(finalId);
    const message = stored.output[0];
    const part = message?.type === 'message' ? message.content[0] : undefined;
    expect(part?.type === 'output_text' ? part.logprobs : undefined).toEqual(deltaLogprobs);
  });

  it('relays function calls, and sends their outputs back with the earlier call expanded', async () => {
    const calling = await alpha.responses.create({
      model: 'native-random',
      input: 'Weather?',
      tools: [cityTool],
      tool_choice: 'required',
      parallel_tool_calls: false,
      max_output_tokens: 300,
      ...({ seed: 11 } as object),
    });
    const call = calling.output.find((item) => item.type === 'function_call');
    if (call?.type !== 'function_call')
      throw new Error(`no function call in ${JSON.stringify(calling.output)}`);
    const validate = ajv.compile(cityTool.parameters);
    expect(validate(JSON.parse(call.arguments)), JSON.stringify(validate.errors)).toBe(true);
    const toolOutput = {
      model: 'native-random',
      input: [{ type: 'function_call_output' as const, call_id: call.call_id, output: 'Sunny' }],
      tools: [cityTool],
      tool_choice: 'none' as const,
      max_output_tokens: 4,
    };
    const answer = await alpha.responses.create({ ...toolOutput, previous_response_id: calling.id });
    expect(answer.output.map((item) => item.type)).toEqual(['message']);
    // The same output without the conversation before it: the upstream's prompt is shorter.
    const alone = await alpha.responses.create(toolOutput);
    expect(answer.usage?.input_tokens).toBeGreaterThan(alone.usage?.input_tokens ?? 0);
  });
});

describe('failures', () => {
  it('sends the translated chat body upstream, and ends a stream broken after its head with response.failed', async () => {
    const stream = await alpha.responses.create({
      model: 'broken-model',
      instructions: 'Be brief.',
      input: 'Hi.',
      max_output_tokens: 50,
      stream: true,
    });
    const events: Array<{
      type: string;
      response?: { status?: string; error?: { message: string } | null; output?: unknown[] };
    }> = [];
    for await (const event of stream) events.push(event);
    expect(events.map((event) => event.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.failed',
    ]);
    const failed = events.at(-1)?.response;
    expect(failed?.status).toBe('failed');
    expect(failed?.error?.message).toMatch(/the upstream broke/);
    // The text the client already got as deltas is in the failed response's open message.
    expect(failed?.output).toMatchObject([
      { type: 'message', status: 'incomplete', content: [{ type: 'output_text', text: 'Hello' }] },
    ]);
    expect(brokenMidway.received.at(-1)).toMatchObject({
      path: '/v1/chat/completions',
      body: {
        model: 'broken-model',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hi.' },
        ],
        max_tokens: 50,
        stream: true,
      },
    });
    // A failed response is not stored.
    const id = (events[0]?.response as { id?: string } | undefined)?.id ?? '';
    await expect(alpha.responses.retrieve(id)).rejects.toMatchObject({ status: 404 });
  });

  it('answers a failure before the first token as a plain HTTP error, even when streaming', async () => {
    await expect(
      alpha.responses.create({ model: 'failing-model', input: 'Hi.', stream: true }),
    ).rejects.toMatchObject({ status: 502, code: 'upstream_error' });
  });

  it('cancels the generation when the client leaves mid-stream, recorded once with 499', async () => {
    const controller = new AbortController();
    const { data: stream, response } = await alpha.responses
      .create({ model: 'slow-model', input: 'Go on.', stream: true }, { signal: controller.signal })
      .withResponse();
    let deltas = 0;
    try {
      for await (const event of stream)
        if (event.type === 'response.output_text.delta' && ++deltas === 3) controller.abort();
    } catch {
      // The SDK throws on the abort.
    }
    const requestId = response.headers.get('x-request-id');
    const ledger = new SqliteLedgerStore(outer.ledgerPath);
    try {
      let records = (await ledger.records({})).filter((record) => record.requestId === requestId);
      for (let attempt = 0; attempt < 100 && records.length === 0; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        records = (await ledger.records({})).filter((record) => record.requestId === requestId);
      }
      expect(records).toMatchObject([{ endpoint: 'responses', status: 499, errorCode: 'cancelled' }]);
      expect(records[0]?.completionTokens).toBeLessThan(40);
    } finally {
      await ledger.close();
    }
  });
});
