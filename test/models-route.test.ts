import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelDescription } from '../src/api/models-route.js';
import { parseUpstreamModelList } from '../src/engines/openai-upstream/upstream-model-catalog.js';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { listenOnLoopback } from './support/replay-upstream.js';

const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`./fixtures/model-lists/${name}`, import.meta.url), 'utf8')) as unknown;

describe('reading an upstream model list', () => {
  it("takes vLLM's max_model_len and created", () => {
    expect(
      parseUpstreamModelList(fixture('vllm-models.json')).get('meta-llama/Llama-3.1-8B-Instruct'),
    ).toEqual({
      created: 1764683512,
      contextTokens: 32768,
    });
  });

  it("falls back to llama.cpp server's training context", () => {
    expect(parseUpstreamModelList(fixture('llama-server-models.json')).get('qwen3-8b-q4_k_m.gguf')).toEqual({
      created: 1764683600,
      contextTokens: 40960,
    });
  });

  it('skips what is not a model list without throwing', () => {
    expect(parseUpstreamModelList('<html>').size).toBe(0);
    expect(parseUpstreamModelList({ data: [null, 3, { id: 7 }, { id: 'x', created: -1 }] })).toEqual(
      new Map([['x', { created: null, contextTokens: null }]]),
    );
  });
});

/**
 * Gravity in front of Gravity (an emulated replica, restricted features) and of a server answering
 * `/v1/models` as vLLM does: the front's model list carries the upstreams' windows and dates, and each
 * model's capabilities.
 */
const replica = {
  type: 'emulated',
  hardware: 'h200',
  model: 'llama-3.1-8b',
  weightDtype: 'fp8',
  metering: { cost: { hourlyUsd: 3.5 } },
};
let back: Harness;
let front: Harness;
let vllmLike: { url: string; close(): Promise<void> };
let vllmServingBackModel: { url: string; close(): Promise<void> };

/** A loopback server answering `GET /v1/models` with `body` (listenOnLoopback's url ends in /v1). */
function modelListServer(body: unknown) {
  const text = JSON.stringify(body);
  return listenOnLoopback(
    createServer((request, response) => {
      const found = request.url === '/v1/models';
      response.writeHead(found ? 200 : 404, { 'content-type': 'application/json' });
      response.end(found ? text : '{}');
    }),
  );
}
beforeAll(async () => {
  back = await startHarness(undefined, {
    engines: { plain: { ...replica, servedFeatures: ['logprobs'] } },
    models: { 'llama-3.1-8b': { engine: 'plain' } },
  });
  const vllmList = fixture('vllm-models.json') as { data: Array<{ id: string }> };
  vllmLike = await modelListServer(vllmList);
  vllmServingBackModel = await modelListServer({
    ...vllmList,
    data: vllmList.data.map((entry) => ({ ...entry, id: 'llama-3.1-8b' })),
  });
  front = await startHarness(undefined, {
    engines: {
      gravity: {
        type: 'openai-upstream',
        baseUrl: `${back.url}/v1`,
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 4,
      },
      vllm: {
        type: 'openai-upstream',
        baseUrl: vllmLike.url,
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 4,
      },
      local: { ...replica, servedFeatures: ['tools'] },
      // An upstream that serves /v1/responses itself: built-in tools and the like are passed on too.
      native: {
        type: 'openai-upstream',
        baseUrl: vllmLike.url,
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 4,
        responsesApi: true,
      },
      'vllm-8b': {
        type: 'openai-upstream',
        baseUrl: vllmServingBackModel.url,
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 4,
      },
    },
    models: {
      'chained-8b': { engine: 'gravity', upstreamModel: 'llama-3.1-8b' },
      'llama-3.1-8b-instruct': { engine: 'vllm', upstreamModel: 'meta-llama/Llama-3.1-8B-Instruct' },
      'capped-8b': { engine: 'vllm', upstreamModel: 'meta-llama/Llama-3.1-8B-Instruct', contextTokens: 8192 },
      'local-8b': { engine: 'local' },
      'native-8b': { engine: 'native', upstreamModel: 'meta-llama/Llama-3.1-8B-Instruct' },
      // A window learned from a vLLM-like server (32k) next to one learned from the back Gravity (128k).
      mixed: { engines: ['vllm-8b', 'gravity'], upstreamModel: 'llama-3.1-8b' },
    },
  });
});
afterAll(async () => {
  await front?.close();
  await back?.close();
  await vllmLike?.close();
  await vllmServingBackModel?.close();
});

async function modelList(harness: Harness): Promise<ModelDescription[]> {
  const response = await fetch(`${harness.url}/v1/models`);
  expect(response.status).toBe(200);
  return ((await response.json()) as { data: ModelDescription[] }).data;
}

describe('/v1/models', () => {
  it('gives real created times and context windows, read from upstreams where the config gives none', async () => {
    const [backModel] = await modelList(back);
    const byId = new Map((await modelList(front)).map((model) => [model.id, model]));
    const nowSeconds = Date.now() / 1000;
    expect(backModel?.created).toBeGreaterThan(nowSeconds - 3600);
    expect(backModel?.context_length).toBeGreaterThan(0);
    // Gravity reads its upstream's own list: the same window and date as the back server reports.
    expect(byId.get('chained-8b')).toMatchObject({
      created: backModel?.created,
      context_length: backModel?.context_length,
    });
    expect(byId.get('llama-3.1-8b-instruct')).toMatchObject({ created: 1764683512, context_length: 32768 });
    // The operator's figure wins over the upstream's.
    expect(byId.get('capped-8b')?.context_length).toBe(8192);
  });

  it("describes each model's capabilities from its replicas", async () => {
    const byId = new Map((await modelList(front)).map((model) => [model.id, model]));
    const local = byId.get('local-8b')?.capabilities;
    expect(local?.features).toEqual(['tools']);
    expect(local?.replicas).toEqual({ emulated: 1 });
    // Its servedFeatures leave out `embeddings`: no embeddings route.
    expect(local?.endpoints).toEqual(['/v1/chat/completions', '/v1/completions', '/v1/responses']);
    // An upstream receives the client's body as sent and answers for itself: every feature is passed on.
    const chained = byId.get('chained-8b')?.capabilities;
    expect(chained?.features).toContain('tools');
    expect(chained?.features).toContain('image_url');
    expect(chained?.replicas).toEqual({ 'openai-upstream': 1 });
    expect(chained?.endpoints).toContain('/v1/embeddings');
    // …except what only a native /v1/responses serves: it reaches this upstream translated onto chat.
    const responsesNative = ['tools.*', 'tool_choice.*', 'input.*', 'include.*', 'max_tool_calls'];
    for (const family of responsesNative) expect(chained?.features).not.toContain(family);
    const native = byId.get('native-8b')?.capabilities;
    expect(native?.features).toEqual(expect.arrayContaining([...responsesNative, 'tools', 'image_url']));
  });

  it('answers one model the same way, and 404 for an unknown one', async () => {
    const list = await modelList(front);
    const one = await front.client.models.retrieve('llama-3.1-8b-instruct');
    expect(one).toMatchObject(list.find((model) => model.id === 'llama-3.1-8b-instruct') as object);
    const missing = await fetch(`${front.url}/v1/models/nope`);
    expect(missing.status).toBe(404);
  });

  it('routes by the window learned from the upstream', async () => {
    const explain = async (words: number) => {
      const response = await fetch(`${front.url}/v1/routing/explain`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'mixed',
          messages: [{ role: 'user', content: 'word '.repeat(words) }],
        }),
      });
      expect(response.status).toBe(200);
      return (await response.json()) as {
        decision: { filtered: Array<{ replica: string; filter: string }> };
      };
    };
    // A short prompt may go to either; one past 32k tokens only to the replica whose window holds it.
    expect((await explain(10)).decision.filtered).toEqual([]);
    expect((await explain(40_000)).decision.filtered).toMatchObject([
      { replica: 'vllm-8b', filter: 'context-fits' },
    ]);
  });
});
