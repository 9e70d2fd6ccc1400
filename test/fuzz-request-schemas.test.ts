import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseChatCompletionRequest,
  parseCompletionRequest,
  parseEmbeddingRequest,
} from '../src/api/request-schemas.js';
import { GravityError } from '../src/core/errors.js';
import { parseResponsesRequest } from '../src/responses/responses-request.js';
import { type Harness, startHarness } from './support/gravity-harness.js';

/**
 * Fuzzing the inbound schemas: whatever a client sends, a parse either accepts it or refuses it with a
 * GravityError of status 400 in OpenAI's shape: never another exception (a TypeError from a field read
 * on a hostile shape would be a 500), never a hang. Bodies are built as JSON text and parsed, as the
 * HTTP edge does, so `__proto__` and `constructor` arrive as own keys, lone surrogates and `1e999`
 * (Infinity) as JSON.parse gives them. Then a corpus of hostile bodies goes over HTTP to a live Gravity:
 * each is answered 200 (when valid) or 4xx in OpenAI's shape, and the server stays up.
 */

const seed = 20261202;
const numRuns = 400;

type Parser = (body: unknown) => unknown;
const parsers: Record<string, Parser> = {
  'chat/completions': parseChatCompletionRequest,
  completions: parseCompletionRequest,
  embeddings: parseEmbeddingRequest,
  responses: (body) =>
    parseResponsesRequest(body, {
      itemIdSuffix: 'fuzz',
      // A previous response is looked up here; none exists, and none is needed to judge the parse.
      earlierItems: () => [],
    }),
};

/** Runs a parse: ok, or the refusal it threw; anything but a 400 GravityError fails the property. */
function expectParsesOrRefuses(parse: Parser, body: unknown): void {
  try {
    parse(body);
  } catch (error) {
    if (!(error instanceof GravityError)) throw error;
    expect(error.status).toBe(400);
    const shape = error.toBody().error;
    expect(typeof shape.message).toBe('string');
    expect(shape.type).toBe('invalid_request_error');
    expect(shape.param === null || typeof shape.param === 'string').toBe(true);
    expect(shape.code === null || typeof shape.code === 'string').toBe(true);
  }
}

// --- Generators --------------------------------------------------------------------------------------

/** Strings a hostile client sends: lone surrogates, NULs, very long runs, keys that mean something in JS. */
const hostileString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '',
    '\ud800',
    '\udfff',
    'a\u0000b',
    '__proto__',
    'constructor',
    'prototype',
    'toString',
    'hasOwnProperty',
    'x'.repeat(10_000),
  ),
);

/** Numbers at the edges: JSON.parse gives ±Infinity for 1e999, -0 for -0; fractions where integers go. */
const edgeNumber = fc.oneof(
  fc.constantFrom(0, -0, 1, -1, 0.5, 1.5, 2, 2.5, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, Infinity, -Infinity),
  fc.double({ noNaN: true }),
  fc.integer(),
);

/** Any JSON value, edges included, as a tree a body can hold. */
const hostileValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    edgeNumber,
    hostileString,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.array(fc.tuple(hostileString, tie('value')), { maxLength: 4 }).map((entries) => new Entries(entries)),
  ),
})).value;

/** An object given as its entries, so that keys such as `__proto__` become own keys in the JSON text. */
class Entries {
  constructor(readonly entries: Array<[string, unknown]>) {}
}

/** JSON text for a value; numbers JSON cannot spell (±Infinity) are written as 1e999, which parses to them. */
function jsonText(value: unknown): string {
  if (value instanceof Entries)
    return `{${value.entries.map(([key, item]) => `${JSON.stringify(key)}:${jsonText(item)}`).join(',')}}`;
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`;
  if (typeof value === 'number') {
    if (value === Infinity) return '1e999';
    if (value === -Infinity) return '-1e999';
    if (Object.is(value, -0)) return '-0';
  }
  if (value !== null && typeof value === 'object')
    return jsonText(new Entries(Object.entries(value as Record<string, unknown>)));
  return JSON.stringify(value);
}

/** The body the HTTP edge would hand the parser for this value. */
const asParsedBody = (value: unknown): unknown => JSON.parse(jsonText(value));

const roles = ['system', 'developer', 'user', 'assistant', 'tool', 'function', 'robot'];
const message = fc.record(
  {
    role: fc.oneof(fc.constantFrom(...roles), hostileValue),
    content: fc.oneof(
      fc.string(),
      fc.constant(null),
      fc.array(
        fc.record(
          {
            type: fc.constantFrom('text', 'image_url', 'input_audio', 'file', 'refusal', 'video_url'),
            text: fc.oneof(fc.string(), hostileValue),
            image_url: fc.oneof(fc.record({ url: fc.string() }), hostileValue),
          },
          { requiredKeys: ['type'] },
        ),
        { maxLength: 3 },
      ),
      hostileValue,
    ),
    name: fc.oneof(fc.string(), hostileValue),
    tool_call_id: fc.string(),
    tool_calls: fc.oneof(
      fc.array(
        fc.record({
          id: fc.string(),
          type: fc.constantFrom('function', 'custom'),
          function: fc.record({ name: fc.string(), arguments: fc.string() }),
        }),
        { maxLength: 2 },
      ),
      hostileValue,
    ),
  },
  { requiredKeys: ['role'] },
);

/** Values a parameter takes: mostly plausible, sometimes anything. */
const parameter = (plausible: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 3, arbitrary: plausible }, hostileValue);

const samplingFields = {
  model: parameter(fc.constantFrom('m', 'gravity-tiny', '')),
  stream: parameter(fc.boolean()),
  stream_options: parameter(fc.record({ include_usage: fc.boolean() })),
  temperature: parameter(fc.double({ min: -1, max: 3, noNaN: true })),
  top_p: parameter(fc.double({ min: -0.5, max: 1.5, noNaN: true })),
  seed: parameter(fc.integer()),
  stop: parameter(fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 6 }))),
  n: parameter(fc.integer({ min: -1, max: 200 })),
  service_tier: parameter(fc.constantFrom('auto', 'default', 'flex', 'priority', 'batch', 'scale')),
  user: parameter(fc.string()),
  logit_bias: parameter(fc.dictionary(fc.string(), fc.integer({ min: -200, max: 200 }))),
};

const chatBody = fc.record(
  {
    ...samplingFields,
    messages: parameter(fc.array(message, { maxLength: 4 })),
    max_tokens: parameter(fc.integer({ min: -2, max: 1 << 20 })),
    max_completion_tokens: parameter(fc.integer({ min: -2, max: 1 << 20 })),
    tools: parameter(
      fc.array(
        fc.record({
          type: fc.constantFrom('function', 'custom'),
          function: fc.record({ name: fc.string(), parameters: hostileValue }, { requiredKeys: ['name'] }),
        }),
        { maxLength: 2 },
      ),
    ),
    tool_choice: parameter(fc.constantFrom('none', 'auto', 'required', 'sometimes')),
    response_format: parameter(
      fc.record({
        type: fc.constantFrom('text', 'json_object', 'json_schema', 'xml'),
        json_schema: hostileValue,
      }),
    ),
    logprobs: parameter(fc.boolean()),
    top_logprobs: parameter(fc.integer({ min: -1, max: 25 })),
    metadata: parameter(fc.dictionary(fc.string(), fc.string())),
  },
  { requiredKeys: [] },
);

const completionBody = fc.record(
  {
    ...samplingFields,
    prompt: parameter(
      fc.oneof(
        fc.string(),
        fc.array(fc.string(), { maxLength: 3 }),
        fc.array(fc.integer({ min: -1, max: 1 << 17 }), { maxLength: 5 }),
        fc.array(fc.array(fc.integer({ min: -1, max: 1 << 17 }), { maxLength: 3 }), { maxLength: 3 }),
      ),
    ),
    max_tokens: parameter(fc.integer({ min: -2, max: 1 << 20 })),
    logprobs: parameter(fc.integer({ min: -1, max: 6 })),
    echo: parameter(fc.boolean()),
    suffix: parameter(fc.string()),
    best_of: parameter(fc.integer({ min: 0, max: 21 })),
  },
  { requiredKeys: [] },
);

const embeddingBody = fc.record(
  {
    model: samplingFields.model,
    input: parameter(
      fc.oneof(
        fc.string(),
        fc.array(fc.string(), { maxLength: 3 }),
        fc.array(fc.integer({ min: -1, max: 1 << 17 }), { maxLength: 5 }),
        fc.array(fc.array(fc.integer({ min: -1, max: 1 << 17 }), { maxLength: 3 }), { maxLength: 3 }),
      ),
    ),
    encoding_format: parameter(fc.constantFrom('float', 'base64', 'hex')),
    dimensions: parameter(fc.integer({ min: -1, max: 1 << 15 })),
    user: samplingFields.user,
    service_tier: samplingFields.service_tier,
  },
  { requiredKeys: [] },
);

const responsesItem = fc.record(
  {
    type: parameter(
      fc.constantFrom('message', 'function_call', 'function_call_output', 'reasoning', 'web_search_call'),
    ),
    role: parameter(fc.constantFrom('user', 'assistant', 'system', 'developer')),
    content: parameter(
      fc.oneof(
        fc.string(),
        fc.array(
          fc.record({ type: fc.constantFrom('input_text', 'output_text', 'input_image'), text: fc.string() }),
          { maxLength: 2 },
        ),
      ),
    ),
    call_id: parameter(fc.string()),
    name: parameter(fc.string()),
    arguments: parameter(fc.string()),
    output: parameter(fc.string()),
  },
  { requiredKeys: [] },
);

const responsesBody = fc.record(
  {
    model: samplingFields.model,
    input: parameter(fc.oneof(fc.string(), fc.array(responsesItem, { maxLength: 3 }))),
    instructions: parameter(fc.string()),
    stream: samplingFields.stream,
    tools: parameter(
      fc.array(fc.record({ type: fc.constantFrom('function', 'web_search'), name: fc.string() }), {
        maxLength: 2,
      }),
    ),
    tool_choice: parameter(fc.constantFrom('none', 'auto', 'required')),
    text: parameter(
      fc.record({ format: fc.record({ type: fc.constantFrom('text', 'json_object', 'json_schema') }) }),
    ),
    max_output_tokens: parameter(fc.integer({ min: -1, max: 1 << 20 })),
    temperature: samplingFields.temperature,
    metadata: parameter(fc.dictionary(fc.string({ maxLength: 80 }), fc.string({ maxLength: 600 }))),
    previous_response_id: parameter(fc.string()),
    include: parameter(fc.array(fc.constantFrom('message.output_text.logprobs', 'file_search_call.results'))),
    store: parameter(fc.boolean()),
  },
  { requiredKeys: [] },
);

const bodies: Record<string, fc.Arbitrary<Record<string, unknown>>> = {
  'chat/completions': chatBody,
  completions: completionBody,
  embeddings: embeddingBody,
  responses: responsesBody,
};

/**
 * A near-valid body made hostile: extra top-level or nested keys that mean something to JavaScript
 * (`__proto__`, `constructor`) as own keys, which only JSON text can give.
 */
function withHostileKeys(body: Record<string, unknown>, extra: Array<[string, unknown]>): unknown {
  const entries: Array<[string, unknown]> = Object.entries(body);
  return asParsedBody(new Entries([...extra, ...entries]));
}

const hostileKeys = fc.array(
  fc.tuple(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'valueOf'), hostileValue),
  { maxLength: 2 },
);

describe('request parsers under generated bodies', () => {
  for (const [endpoint, parse] of Object.entries(parsers)) {
    const body = bodies[endpoint] as fc.Arbitrary<Record<string, unknown>>;

    it(`${endpoint}: a near-valid body parses or is refused with a 400 in OpenAI's shape`, () => {
      fc.assert(
        fc.property(body, (generated) => expectParsesOrRefuses(parse, asParsedBody(generated))),
        { seed, numRuns },
      );
    });

    it(`${endpoint}: so does one carrying __proto__ and constructor keys, and nothing is polluted`, () => {
      fc.assert(
        fc.property(body, hostileKeys, (generated, extra) => {
          expectParsesOrRefuses(parse, withHostileKeys(generated, extra));
          expect(Object.keys(Object.prototype)).toEqual([]);
        }),
        { seed, numRuns },
      );
    });

    it(`${endpoint}: so does any JSON value at all`, () => {
      fc.assert(
        fc.property(hostileValue, (value) => expectParsesOrRefuses(parse, asParsedBody(value))),
        { seed, numRuns },
      );
    });
  }
});

// --- Over HTTP ----------------------------------------------------------------------------------------

const valid = { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 };
const validText = JSON.stringify(valid);
const nested = (depth: number, open: string, close: string, inner = '0') =>
  open.repeat(depth) + inner + close.repeat(depth);
/** Close to the default 4 MiB body limit, but within it. */
const nearLimit = 3_900_000;

/** Hostile bodies: a name, the endpoint, the raw JSON text. */
const hostileCorpus: Array<{ name: string; path: string; text: string }> = [
  { name: 'valid (control)', path: '/v1/chat/completions', text: validText },
  {
    name: 'an extra field nested 100,000 arrays deep',
    path: '/v1/chat/completions',
    text: `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"x":${nested(100_000, '[', ']')}}`,
  },
  {
    name: 'content nested 100,000 arrays deep',
    path: '/v1/chat/completions',
    text: `{"model":"m","messages":[{"role":"user","content":${nested(100_000, '[', ']', '"a"')}}]}`,
  },
  {
    name: 'an extra field nested 50,000 objects deep',
    path: '/v1/chat/completions',
    text: `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"x":${nested(50_000, '{"a":', '}')}}`,
  },
  {
    name: 'a 3.9 MB message',
    path: '/v1/chat/completions',
    text: JSON.stringify({ ...valid, messages: [{ role: 'user', content: 'word '.repeat(nearLimit / 5) }] }),
  },
  {
    name: 'a 3.9 MB model name',
    path: '/v1/chat/completions',
    text: JSON.stringify({ ...valid, model: 'm'.repeat(nearLimit) }),
  },
  {
    name: 'a 3.9 MB service_tier (a value echoed in the refusal)',
    path: '/v1/chat/completions',
    text: JSON.stringify({ ...valid, service_tier: 't'.repeat(nearLimit) }),
  },
  {
    name: 'a 3.9 MB role',
    path: '/v1/chat/completions',
    text: JSON.stringify({ ...valid, messages: [{ role: 'r'.repeat(nearLimit), content: 'hi' }] }),
  },
  {
    name: 'a 3.9 MB previous_response_id',
    path: '/v1/responses',
    text: JSON.stringify({ model: 'm', input: 'hi', previous_response_id: 'p'.repeat(nearLimit) }),
  },
  {
    name: 'a 3.9 MB array where a token id goes',
    path: '/v1/embeddings',
    text: JSON.stringify({ model: 'm', input: [1, Array(nearLimit / 2).fill(0)] }),
  },
  {
    name: 'a 3.9 MB key',
    path: '/v1/chat/completions',
    text: `{${JSON.stringify('k'.repeat(nearLimit))}:1,${validText.slice(1)}`,
  },
  {
    name: 'the whole request under __proto__',
    path: '/v1/chat/completions',
    text: `{"__proto__":${validText}}`,
  },
  {
    name: '__proto__ with stream and tools beside a valid request',
    path: '/v1/chat/completions',
    text: `{"__proto__":{"stream":true,"tools":"x","polluted":1},${validText.slice(1)}`,
  },
  {
    name: 'constructor.prototype beside a valid request',
    path: '/v1/chat/completions',
    text: `{"constructor":{"prototype":{"polluted":1}},${validText.slice(1)}`,
  },
  {
    name: '__proto__ inside a message',
    path: '/v1/chat/completions',
    text: '{"model":"m","max_tokens":2,"messages":[{"__proto__":{"role":"user","content":"hi"}}]}',
  },
  {
    name: '__proto__ beside a Responses request (its fields are copied onto the chat body)',
    path: '/v1/responses',
    text: '{"__proto__":{"messages":"x","tools":[1],"polluted":1},"model":"m","input":"hi","max_output_tokens":16,"store":false}',
  },
  {
    name: '__proto__ beside an embeddings request',
    path: '/v1/embeddings',
    text: '{"__proto__":{"input":["a"],"polluted":1},"model":"m","input":"hi"}',
  },
  {
    name: 'temperature 1e999 (Infinity)',
    path: '/v1/chat/completions',
    text: `{"temperature":1e999,${validText.slice(1)}`,
  },
  {
    name: 'temperature -1e999',
    path: '/v1/chat/completions',
    text: `{"temperature":-1e999,${validText.slice(1)}`,
  },
  {
    name: 'temperature "NaN"',
    path: '/v1/chat/completions',
    text: `{"temperature":"NaN",${validText.slice(1)}`,
  },
  {
    name: 'max_tokens 1e308',
    path: '/v1/chat/completions',
    text: '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":1e308}',
  },
  {
    name: 'max_tokens 1e999',
    path: '/v1/chat/completions',
    text: '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":1e999}',
  },
  {
    name: 'max_tokens -0',
    path: '/v1/chat/completions',
    text: '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":-0}',
  },
  {
    name: 'max_tokens 2.5',
    path: '/v1/chat/completions',
    text: '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":2.5}',
  },
  { name: 'seed 1e308', path: '/v1/chat/completions', text: `{"seed":1e308,${validText.slice(1)}` },
  { name: 'n -0', path: '/v1/chat/completions', text: `{"n":-0,${validText.slice(1)}` },
  { name: 'top_p -0', path: '/v1/chat/completions', text: `{"top_p":-0,${validText.slice(1)}` },
  {
    name: 'logit_bias with 1e999',
    path: '/v1/chat/completions',
    text: `{"logit_bias":{"1":1e999},${validText.slice(1)}`,
  },
  {
    name: 'lone surrogates in content, model and a key',
    path: '/v1/chat/completions',
    text: '{"model":"m\\ud800","messages":[{"role":"user","content":"a\\udfffb"}],"\\ud800":1}',
  },
  {
    name: 'lone surrogate content on a served model',
    path: '/v1/chat/completions',
    text: '{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"\\udc00\\ud800"}]}',
  },
  {
    name: '250,000 empty messages',
    path: '/v1/chat/completions',
    text: JSON.stringify({
      model: 'm',
      max_tokens: 2,
      messages: Array(250_000).fill({ role: 'user', content: '' }),
    }),
  },
  {
    name: '1,000,000 stop strings',
    path: '/v1/chat/completions',
    text: JSON.stringify({ ...valid, stop: Array(1_000_000).fill('') }),
  },
  {
    name: '1,000,000 token ids as a completions prompt',
    path: '/v1/completions',
    text: JSON.stringify({ model: 'm', max_tokens: 2, prompt: Array(1_000_000).fill(1) }),
  },
  {
    name: '3,000 embeddings inputs',
    path: '/v1/embeddings',
    text: JSON.stringify({ model: 'm', input: Array(3000).fill('a') }),
  },
  {
    name: '500,000 Responses input items',
    path: '/v1/responses',
    text: JSON.stringify({
      model: 'm',
      store: false,
      input: Array(500_000).fill({ role: 'user', content: '' }),
    }),
  },
  { name: 'an array body', path: '/v1/chat/completions', text: `[${validText}]` },
  { name: 'null', path: '/v1/chat/completions', text: 'null' },
  { name: 'a number', path: '/v1/completions', text: '1e999' },
  { name: 'a string', path: '/v1/embeddings', text: '"hello"' },
  { name: 'not JSON', path: '/v1/chat/completions', text: '{"model":' },
  { name: 'a byte-order mark first', path: '/v1/chat/completions', text: `\ufeff${validText}` },
  {
    name: 'duplicate keys',
    path: '/v1/chat/completions',
    text: `{"model":"x","model":1,${validText.slice(1)}`,
  },
];

let gravity: Harness;
beforeAll(async () => {
  gravity = await startHarness(undefined, {
    engines: { emu: { type: 'emulated', hardware: 'h200', model: 'llama-3.1-8b', weightDtype: 'fp8' } },
    models: { m: { engine: 'emu' } },
  });
});
afterAll(async () => {
  await gravity?.close();
});

describe('hostile bodies over HTTP', () => {
  for (const { name, path, text } of hostileCorpus) {
    it(`${name}: answered 200 or a 4xx in OpenAI's shape, and the server stays up`, async () => {
      const response = await fetch(`${gravity.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: text,
        signal: AbortSignal.timeout(30_000),
      });
      const answer = await response.text();
      expect(response.status === 200 || (response.status >= 400 && response.status < 500)).toBe(true);
      if (response.status !== 200) {
        const error = (JSON.parse(answer) as { error?: Record<string, unknown> }).error;
        expect(typeof error?.message).toBe('string');
        expect(typeof error?.type).toBe('string');
        expect(error?.code === null || typeof error?.code === 'string').toBe(true);
        // A refusal never echoes a multi-megabyte body back.
        expect(answer.length).toBeLessThan(10_000);
      }
      expect(Object.keys(Object.prototype)).toEqual([]);
      expect((await fetch(`${gravity.url}/healthz`)).status).toBe(200);
    });
  }
});
