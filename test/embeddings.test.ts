import { request as httpRequest } from 'node:http';
import OpenAI, { toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteKeyStore } from '../src/admission/sqlite-key-store.js';
import { createKey } from '../src/cli/keys-command.js';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../src/metering/usage-record.js';
import { LedgerReplay } from '../src/simulator/workload/ledger-replay.js';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';

/**
 * `/v1/embeddings` end to end with the openai SDK against live Gravity servers: the in-process llama.cpp
 * engine on the generated models (whose vectors the llama-cpp README describes), the emulated engine,
 * and a second Gravity relaying to the first through an openai-upstream engine (Gravity → Gravity, a real
 * upstream that runs here). Each request leaves one ledger record; routing keeps embeddings off engines
 * that serve none; a tenant's limits apply.
 */

// Token ids of the generated vocabulary (tiny-model.ts): 3 specials, 256 bytes, '▁', 94 printable
// characters, then the letter words '▁a' … '▁z'.
const bos = 1;
const letterWord = (letter: string) => 354 + letter.charCodeAt(0) - 0x61;
// The alphabet model's vector is the one-hot of its last token's dimension: letter words 0–25, else 26.
const oneHot = (dimension: number) => Array.from({ length: 64 }, (_, index) => (index === dimension ? 1 : 0));

const emulatedReplica = { type: 'emulated', hardware: 'h200', model: 'llama-3.1-8b', weightDtype: 'fp8' };

let upstream: Harness;
let gateway: Harness;
let acme: OpenAI;
let capped: OpenAI;

beforeAll(async () => {
  upstream = await startHarness(undefined, {
    engines: {
      tiny: { type: 'llama-cpp', model: { generated: 'gravity-tiny' }, contextTokens: 64, slots: 2 },
      random: {
        type: 'llama-cpp',
        model: { generated: 'gravity-tiny-random' },
        contextTokens: 256,
        slots: 2,
      },
      'chat-only': {
        type: 'llama-cpp',
        model: { generated: 'gravity-tiny' },
        slots: 1,
        embeddingContexts: 0,
      },
      'mixed-chat': {
        type: 'llama-cpp',
        model: { generated: 'gravity-tiny' },
        slots: 1,
        embeddingContexts: 0,
      },
      'mixed-embed': { type: 'llama-cpp', model: { generated: 'gravity-tiny' }, slots: 1 },
      emulated: emulatedReplica,
      'dims-llama': { type: 'llama-cpp', model: { generated: 'gravity-tiny' }, slots: 1 },
      'dims-emulated': emulatedReplica,
    },
    models: {
      dims: { engines: ['dims-llama', 'dims-emulated'] },
      'gravity-tiny': { engine: 'tiny' },
      'gravity-tiny-random': { engine: 'random' },
      'chat-only': { engine: 'chat-only' },
      mixed: { engines: ['mixed-chat', 'mixed-embed'] },
      'emulated-8b': { engine: 'emulated' },
    },
  });
  gateway = await startHarness(undefined, {
    engines: {
      remote: {
        type: 'openai-upstream',
        baseUrl: `${upstream.url}/v1`,
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 4,
      },
    },
    models: {
      'remote-random': { engine: 'remote', upstreamModel: 'gravity-tiny-random' },
      'remote-emulated': { engine: 'remote', upstreamModel: 'emulated-8b' },
    },
    tenants: { capped: { rpm: 1 } },
  });
  const store = new SqliteKeyStore(gateway.keysPath);
  try {
    const clientFor = (tenant: string) =>
      new OpenAI({
        baseURL: `${gateway.url}/v1`,
        apiKey: createKey(store, { tenant }).key,
        maxRetries: 0,
        timeout: 30_000,
      });
    acme = clientFor('acme');
    capped = clientFor('capped');
  } finally {
    store.close();
  }
});
afterAll(async () => {
  await gateway?.close();
  await upstream?.close();
});

async function ledgerRecord(harness: Harness, requestId: string | null): Promise<UsageRecord[]> {
  const ledger = new SqliteLedgerStore(harness.ledgerPath);
  try {
    return (await ledger.records({})).filter((record) => record.requestId === requestId);
  } finally {
    await ledger.close();
  }
}

function norm(vector: readonly number[]): number {
  return Math.sqrt(vector.reduce((sum, value) => sum + value * value, 0));
}

/** Equal within float32 precision: a base64 vector holds float32 values, a float answer their doubles. */
function expectCloseVectors(actual: readonly number[], expected: readonly number[]): void {
  expect(actual).toHaveLength(expected.length);
  for (const [index, value] of actual.entries()) expect(value).toBeCloseTo(expected[index] as number, 6);
}

function dot(a: readonly number[], b: readonly number[]): number {
  return a.reduce((sum, value, index) => sum + value * (b[index] as number), 0);
}

async function caught(
  promise: Promise<unknown>,
): Promise<{ status?: number; code?: string; param?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as { status?: number; code?: string; param?: string };
  }
  throw new Error('expected the request to fail');
}

describe('embeddings from the in-process llama.cpp engine', () => {
  it('gives the alphabet model’s documented vectors: the one-hot of the last token’s dimension', async () => {
    const { data, usage, model, object } = await upstream.client.embeddings.create({
      model: 'gravity-tiny',
      input: ['a', 'hello b', 'z', 'hello', 'a b c d'],
      encoding_format: 'float',
    });
    expect(object).toBe('list');
    expect(model).toBe('gravity-tiny');
    expect(data.map((item) => item.index)).toEqual([0, 1, 2, 3, 4]);
    expect(data.map((item) => item.embedding)).toEqual([
      oneHot(0),
      oneHot(1),
      oneHot(25),
      oneHot(26),
      oneHot(3),
    ]);
    // BOS + tokens: '▁a'; '▁h e l l o ▁b'; '▁z'; '▁h e l l o'; '▁a ▁b ▁c ▁d'.
    expect(usage).toMatchObject({ prompt_tokens: 2 + 7 + 2 + 6 + 5, total_tokens: 22 });
  });

  it('gives the random model unit vectors that depend on the whole input, the same for the same input', async () => {
    const first = await upstream.client.embeddings.create({
      model: 'gravity-tiny-random',
      input: ['the cat sat', 'a cat sat', 'the cat sat'],
      encoding_format: 'float',
    });
    const [a, b, c] = first.data.map((item) => item.embedding) as [number[], number[], number[]];
    expect(a).toHaveLength(64);
    for (const vector of [a, b, c]) expect(norm(vector)).toBeCloseTo(1, 5);
    expect(c).toEqual(a);
    expect(dot(a, b)).toBeLessThan(0.999);
  });

  it('answers the openai SDK’s default base64 request with the same vectors as float', async () => {
    const input = ['one text', 'another text'];
    // Without encoding_format the SDK asks for base64 and decodes it itself.
    const decoded = await upstream.client.embeddings.create({ model: 'gravity-tiny-random', input });
    const floats = await upstream.client.embeddings.create({
      model: 'gravity-tiny-random',
      input,
      encoding_format: 'float',
    });
    for (const [index, item] of decoded.data.entries()) {
      expect(item.embedding).toHaveLength(64);
      expectCloseVectors(item.embedding, floats.data[index]?.embedding as number[]);
    }
    const raw = await postRaw(
      `${upstream.url}/v1/embeddings`,
      JSON.stringify({ model: 'gravity-tiny-random', input: 'one text', encoding_format: 'base64' }),
    );
    const embedding = (raw.json as unknown as { data: Array<{ embedding: string }> }).data[0]?.embedding;
    expect(typeof embedding).toBe('string');
    const bytes = Buffer.from(embedding as string, 'base64');
    expect(bytes.length).toBe(64 * 4);
    expect(bytes.readFloatLE(0)).toBeCloseTo(floats.data[0]?.embedding[0] as number, 6);
  });

  it('embeds token-id inputs as given, with BOS added as for text', async () => {
    const tokens = await upstream.client.embeddings.create({
      model: 'gravity-tiny',
      input: [[letterWord('b')], [letterWord('a'), letterWord('q')]],
      encoding_format: 'float',
    });
    expect(tokens.data.map((item) => item.embedding)).toEqual([oneHot(1), oneHot(16)]);
    expect(tokens.usage.prompt_tokens).toBe(2 + 3);
    // The random model reads the whole input: ids equal to the text's tokens give the text's vector.
    const [fromText, fromIds, fromIdsWithBos] = (
      await upstream.client.embeddings.create({
        model: 'gravity-tiny-random',
        input: 'a b',
        encoding_format: 'float',
      })
    ).data
      .concat(
        (
          await upstream.client.embeddings.create({
            model: 'gravity-tiny-random',
            input: [
              [letterWord('a'), letterWord('b')],
              [bos, letterWord('a'), letterWord('b')],
            ],
            encoding_format: 'float',
          })
        ).data,
      )
      .map((item) => item.embedding);
    expect(fromIds).toEqual(fromText);
    expect(fromIdsWithBos).toEqual(fromText);
  });

  it('refuses bad input with OpenAI-style 400s', async () => {
    const create = (body: Record<string, unknown>) =>
      caught(upstream.client.embeddings.create({ model: 'gravity-tiny', ...body } as never));
    expect(await create({ input: '' })).toMatchObject({ status: 400, param: 'input', code: 'invalid_value' });
    expect(await create({ input: [] })).toMatchObject({ status: 400, param: 'input' });
    expect(await create({ input: [[999_999]] })).toMatchObject({ status: 400, param: 'input' });
    // Each input is embedded alone: one that does not fit the 64-token context is refused by index.
    const tooLong = await create({ input: ['a', 'a '.repeat(80)] });
    expect(tooLong).toMatchObject({ status: 400, code: 'context_length_exceeded', param: 'input' });
    expect((tooLong as Error).message).toMatch(/input 1 has 82 tokens/);
    // llama.cpp cannot shorten a model's vectors: `dimensions` is named.
    expect(await create({ input: 'a', dimensions: 8 })).toMatchObject({
      status: 400,
      code: 'unsupported_parameter',
      param: 'dimensions',
    });
    expect(await create({ input: 'a', truncate: true })).toMatchObject({ status: 400, param: 'truncate' });
    expect(await create({ model: 'no-such-model', input: 'a' })).toMatchObject({ status: 404 });
  });

  it('refuses embeddings for a model whose engines serve none, and routes them to the engine that does', async () => {
    expect(await caught(upstream.client.embeddings.create({ model: 'chat-only', input: 'a' }))).toMatchObject(
      {
        status: 400,
        code: 'unsupported_model',
        param: 'model',
      },
    );
    // The same model still chats.
    const chat = await upstream.client.completions.create({ model: 'chat-only', prompt: 'a', max_tokens: 2 });
    expect(chat.choices[0]?.text).toBe(' b c');
    for (let attempt = 0; attempt < 4; attempt++) {
      const { data, response } = await upstream.client.embeddings
        .create({ model: 'mixed', input: 'x y', encoding_format: 'float' })
        .withResponse();
      expect(data.data[0]?.embedding).toEqual(oneHot(24));
      const [record] = await ledgerRecord(upstream, response.headers.get('x-request-id'));
      expect(record?.engine).toBe('mixed-embed');
    }
  });

  it('routes requests with dimensions to the replicas that serve it', async () => {
    for (let attempt = 0; attempt < 4; attempt++) {
      const { data, response } = await upstream.client.embeddings
        .create({ model: 'dims', input: 'a b', dimensions: 12 })
        .withResponse();
      expect(data.data[0]?.embedding).toHaveLength(12);
      const [record] = await ledgerRecord(upstream, response.headers.get('x-request-id'));
      expect(record?.engine).toBe('dims-emulated');
    }
  });

  it('leaves one ledger record per request: endpoint embeddings, prompt tokens only, priced as an embedding', async () => {
    const { data, response } = await upstream.client.embeddings
      .create({ model: 'gravity-tiny', input: ['a', 'b'], encoding_format: 'float' })
      .withResponse();
    const records = await ledgerRecord(upstream, response.headers.get('x-request-id'));
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      endpoint: 'embeddings',
      model: 'gravity-tiny',
      engine: 'tiny',
      status: 200,
      promptTokens: 4,
      completionTokens: 0,
      usageSource: 'engine',
      finishReason: 'stop',
    });
    // The default embedding price: $0.02 per 1M input tokens, nothing for output.
    expect(records[0]?.priceUsd).toBeCloseTo((4 * 0.02) / 1e6, 12);
    expect(data.usage).toMatchObject({ prompt_tokens: 4, total_tokens: 4 });
    expect(Number(response.headers.get('x-gravity-price-usd'))).toBeCloseTo(
      records[0]?.priceUsd as number,
      12,
    );

    const refused = await postRaw(
      `${upstream.url}/v1/embeddings`,
      JSON.stringify({ model: 'gravity-tiny', input: '' }),
    );
    expect(refused.status).toBe(400);
    expect(await ledgerRecord(upstream, refused.headers.get('x-request-id'))).toMatchObject([
      { endpoint: 'embeddings', status: 400, errorCode: 'invalid_value', promptTokens: 0 },
    ]);
  });
});

describe('embeddings from the emulated engine', () => {
  it('serves dimensions: deterministic unit vectors of the hidden size, shortened on request', async () => {
    const full = await upstream.client.embeddings.create({
      model: 'emulated-8b',
      input: ['same text', 'other text', 'same text'],
      encoding_format: 'float',
    });
    const [a, b, c] = full.data.map((item) => item.embedding) as [number[], number[], number[]];
    expect(a).toHaveLength(4096);
    expect(norm(a)).toBeCloseTo(1, 5);
    expect(c).toEqual(a);
    expect(Math.abs(dot(a, b))).toBeLessThan(0.1);
    const short = await upstream.client.embeddings.create({
      model: 'emulated-8b',
      input: 'same text',
      dimensions: 256,
    });
    const shortened = short.data[0]?.embedding as number[];
    expect(shortened).toHaveLength(256);
    expect(norm(shortened)).toBeCloseTo(1, 5);
    // The shortened vector points the way the full one's first 256 components do.
    expect(dot(shortened, a.slice(0, 256)) / norm(a.slice(0, 256))).toBeCloseTo(1, 5);
    expect(
      await caught(upstream.client.embeddings.create({ model: 'emulated-8b', input: 'x', dimensions: 5000 })),
    ).toMatchObject({ status: 400, param: 'dimensions' });
  });

  it('serves a 512 × 4096 answer whole and in order, answering /healthz while it streams', async () => {
    // 512 inputs of llama-3.1-8b's 4096 dimensions: about 40 MB of JSON numbers. That the encoding
    // yields to the event loop between pieces is checked in src/api/embeddings-response.test.ts; here
    // the pieces must add up to the whole answer, and other requests go on meanwhile.
    const input = Array.from({ length: 512 }, (_, index) => `input ${index}`);
    const body = JSON.stringify({ model: 'emulated-8b', input, encoding_format: 'float' });
    const events: string[] = [];
    const text = await new Promise<string>((resolve, reject) => {
      const request = httpRequest(`${upstream.url}/v1/embeddings`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
      });
      request.on('error', reject);
      request.on('response', (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => {
          if (chunks.length === 0)
            fetch(`${upstream.url}/healthz`).then(
              (health) => events.push(`healthz ${health.status}`),
              reject,
            );
          chunks.push(chunk);
        });
        response.on('end', () => {
          events.push('embeddings body ended');
          resolve(Buffer.concat(chunks).toString('utf8'));
        });
        response.on('error', reject);
      });
      request.end(body);
    });
    expect(events).toEqual(['healthz 200', 'embeddings body ended']);
    const parsed = JSON.parse(text) as { data: { index: number; embedding: number[] }[] };
    expect(parsed.data.map((item) => item.index)).toEqual(input.map((_, index) => index));
    for (const item of parsed.data) expect(item.embedding).toHaveLength(4096);
    expect(norm(parsed.data[7]?.embedding ?? [])).toBeCloseTo(1, 5);
  });

  it('meters an embedding as prefill-only work: energy spent, no completion tokens', async () => {
    const { data, response } = await upstream.client.embeddings
      .create({ model: 'emulated-8b', input: 'x'.repeat(4000), encoding_format: 'float' })
      .withResponse();
    expect(data.usage.prompt_tokens).toBe(1000);
    const [record] = await ledgerRecord(upstream, response.headers.get('x-request-id'));
    expect(record).toMatchObject({ endpoint: 'embeddings', promptTokens: 1000, completionTokens: 0 });
    expect(record?.energyJoules).toBeGreaterThan(0);
    expect(record?.energySource).toBe('estimated:performance-model');
  });

  it('replays embeddings from the ledger in the simulator as prefill-only sequences', async () => {
    const { response } = await upstream.client.embeddings
      .create({ model: 'emulated-8b', input: 'y'.repeat(2000), encoding_format: 'float' })
      .withResponse();
    const [record] = await ledgerRecord(upstream, response.headers.get('x-request-id'));
    const replay = await LedgerReplay.read(upstream.ledgerPath);
    const replayed = [...replay.records()].find((request) => request.arrivalMs === record?.receivedAtMs);
    replay.close();
    // Its prompt tokens and the one step that ends the prefill, as the emulated engine ran it.
    expect(replayed).toMatchObject({ promptTokens: 500, outputTokens: 1 });
  });
});

describe('embeddings relayed by an openai-upstream engine (Gravity in front of Gravity)', () => {
  it('relays float and base64 answers as the upstream sent them, with the upstream’s usage', async () => {
    const input = ['relayed text', 'second'];
    const direct = await upstream.client.embeddings.create({
      model: 'gravity-tiny-random',
      input,
      encoding_format: 'float',
    });
    const { data: relayed, response } = await acme.embeddings
      .create({ model: 'remote-random', input, encoding_format: 'float' })
      .withResponse();
    expect(relayed.model).toBe('remote-random');
    expect(relayed.data.map((item) => item.embedding)).toEqual(direct.data.map((item) => item.embedding));
    expect(relayed.usage.prompt_tokens).toBe(direct.usage.prompt_tokens);
    const [record] = await ledgerRecord(gateway, response.headers.get('x-request-id'));
    expect(record).toMatchObject({
      endpoint: 'embeddings',
      tenant: 'acme',
      engine: 'remote',
      usageSource: 'upstream',
      promptTokens: direct.usage.prompt_tokens,
      completionTokens: 0,
    });

    const body = JSON.stringify({
      model: 'gravity-tiny-random',
      input: 'relayed text',
      encoding_format: 'base64',
    });
    const fromUpstream = await postRaw(`${upstream.url}/v1/embeddings`, body);
    const apiKey = acme.apiKey;
    const fromGateway = await postRaw(
      `${gateway.url}/v1/embeddings`,
      body.replace('gravity-tiny-random', 'remote-random'),
      {
        authorization: `Bearer ${apiKey}`,
      },
    );
    const embeddingOf = (answer: { json: unknown }) =>
      (answer.json as { data: Array<{ embedding: string }> }).data[0]?.embedding;
    expect(typeof embeddingOf(fromGateway)).toBe('string');
    expect(embeddingOf(fromGateway)).toBe(embeddingOf(fromUpstream));
    // The SDK's default (base64, decoded by the SDK) through the relay.
    const sdkDefault = await acme.embeddings.create({ model: 'remote-random', input: 'relayed text' });
    expectCloseVectors(sdkDefault.data[0]?.embedding as number[], direct.data[0]?.embedding as number[]);
  });

  it('relays dimensions to an upstream that serves them, and its refusal from one that does not', async () => {
    const short = await acme.embeddings.create({ model: 'remote-emulated', input: 'x', dimensions: 32 });
    expect(short.data[0]?.embedding).toHaveLength(32);
    expect(
      await caught(acme.embeddings.create({ model: 'remote-random', input: 'x', dimensions: 32 })),
    ).toMatchObject({
      status: 400,
      code: 'unsupported_parameter',
      param: 'dimensions',
    });
  });

  it('applies the tenant’s limits to embeddings', async () => {
    await capped.embeddings.create({ model: 'remote-random', input: 'first' });
    expect(await caught(capped.embeddings.create({ model: 'remote-random', input: 'second' }))).toMatchObject(
      {
        status: 429,
      },
    );
  });
});

describe('embeddings in the Batch API', () => {
  it('runs lines with url /v1/embeddings through the pipeline, one ledger record each', async () => {
    const lines = ['first line', 'second line'].map((text, index) =>
      JSON.stringify({
        custom_id: `emb-${index}`,
        method: 'POST',
        url: '/v1/embeddings',
        body: { model: 'emulated-8b', input: text, dimensions: 8, encoding_format: 'float' },
      }),
    );
    const client = upstream.client;
    const file = await client.files.create({
      file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'embeddings.jsonl'),
      purpose: 'batch',
    });
    const created = await client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/embeddings',
      completion_window: '24h',
    });
    let batch: Batch = created;
    const deadline = Date.now() + 10_000;
    while (!['completed', 'failed', 'cancelled', 'expired'].includes(batch.status) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      batch = await client.batches.retrieve(created.id);
    }
    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toMatchObject({ total: 2, completed: 2, failed: 0 });
    const output = (await (await client.files.content(batch.output_file_id as string)).text())
      .split('\n')
      .filter((line) => line !== '')
      .map(
        (line) =>
          JSON.parse(line) as {
            custom_id: string;
            response: {
              status_code: number;
              request_id: string;
              body: { object: string; data: Array<{ embedding: number[] }> };
            };
          },
      );
    expect(output.map((line) => line.custom_id).sort()).toEqual(['emb-0', 'emb-1']);
    for (const line of output) {
      expect(line.response.status_code).toBe(200);
      expect(line.response.body.object).toBe('list');
      expect(line.response.body.data[0]?.embedding).toHaveLength(8);
      expect(await ledgerRecord(upstream, line.response.request_id)).toMatchObject([
        { endpoint: 'embeddings', tier: 'batch', completionTokens: 0 },
      ]);
    }
  });
});
