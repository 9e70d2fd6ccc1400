import { createOpenAI } from '@ai-sdk/openai';
import { OpenAIEmbeddings } from '@langchain/openai';
import { cosineSimilarity, embed, embedMany } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from '../support/gravity-harness.js';

/**
 * `/v1/embeddings` through the three client libraries, against a live Gravity: the in-process llama.cpp
 * engine on the generated alphabet model, whose vectors are known exactly (the one-hot of the last
 * token's dimension: ' a' … ' z' → 0–25, anything else → 26; src/engines/llama-cpp/README.md), and an
 * emulated replica, which serves `dimensions`.
 */

const tinyModel = 'gravity-tiny';
const emulatedModel = 'embed-8b';
const oneHot = (dimension: number) => Array.from({ length: 64 }, (_, index) => (index === dimension ? 1 : 0));

let harness: Harness;
beforeAll(async () => {
  harness = await startHarness(undefined, {
    engines: {
      tiny: { type: 'llama-cpp', model: { generated: 'gravity-tiny' }, contextTokens: 256, slots: 2 },
      emulated: { type: 'emulated', hardware: 'h200', model: 'llama-3.1-8b', weightDtype: 'fp8' },
    },
    models: { [tinyModel]: { engine: 'tiny' }, [emulatedModel]: { engine: 'emulated' } },
  });
});
afterAll(async () => {
  await harness?.close();
});

describe('the openai SDK’s embeddings.create', () => {
  it('decodes its default base64 answer to the model’s vectors', async () => {
    const { data, usage } = await harness.client.embeddings.create({
      model: tinyModel,
      input: ['hello c', 'd'],
    });
    expect(data.map((item) => item.embedding)).toEqual([oneHot(2), oneHot(3)]);
    expect(usage).toEqual(expect.objectContaining({ prompt_tokens: 7 + 2, total_tokens: 9 }));
  });

  it('reads float vectors when asked for them', async () => {
    const { data } = await harness.client.embeddings.create({
      model: tinyModel,
      input: 'the end',
      encoding_format: 'float',
    });
    expect(data[0]?.embedding).toEqual(oneHot(26));
  });
});

describe('the Vercel AI SDK’s embed and embedMany', () => {
  const provider = () => createOpenAI({ baseURL: `${harness.url}/v1`, apiKey: 'unused' });

  it('embeds one value with embed, with usage', async () => {
    const { embedding, usage } = await embed({
      model: provider().embedding(tinyModel),
      value: 'hello e',
      maxRetries: 0,
    });
    expect(embedding).toEqual(oneHot(4));
    expect(usage.tokens).toBe(7);
  });

  it('embeds many values in order with embedMany', async () => {
    const values = ['a', 'b b', 'x y z', '!'];
    const { embeddings, usage } = await embedMany({
      model: provider().embedding(tinyModel),
      values,
      maxRetries: 0,
    });
    expect(embeddings).toEqual([oneHot(0), oneHot(1), oneHot(25), oneHot(26)]);
    expect(usage.tokens).toBe(2 + 3 + 4 + 3);
    expect(cosineSimilarity(embeddings[0] as number[], embeddings[0] as number[])).toBeCloseTo(1, 6);
  });

  it('passes dimensions to an engine that serves them', async () => {
    const { embedding } = await embed({
      model: provider().embedding(emulatedModel),
      value: 'shorter',
      dimensions: 64,
      maxRetries: 0,
    });
    expect(embedding).toHaveLength(64);
    expect(Math.hypot(...embedding)).toBeCloseTo(1, 5);
  });
});

describe('LangChain’s OpenAIEmbeddings', () => {
  const embeddings = (model: string, extra: { dimensions?: number } = {}) =>
    new OpenAIEmbeddings({
      model,
      apiKey: 'unused',
      configuration: { baseURL: `${harness.url}/v1` },
      maxRetries: 0,
      ...extra,
    });

  it('embeds a query and documents', async () => {
    const client = embeddings(tinyModel);
    expect(await client.embedQuery('hello f')).toEqual(oneHot(5));
    expect(await client.embedDocuments(['g', 'hello h', 'done.'])).toEqual([
      oneHot(6),
      oneHot(7),
      oneHot(26),
    ]);
  });

  it('asks for shortened vectors with dimensions', async () => {
    const vectors = await embeddings(emulatedModel, { dimensions: 16 }).embedDocuments(['one', 'two']);
    expect(vectors.map((vector) => vector.length)).toEqual([16, 16]);
    expect(vectors[0]).not.toEqual(vectors[1]);
  });
});
