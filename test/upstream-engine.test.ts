import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';
import {
  chatStreamWithoutUsage,
  type ReplayUpstream,
  startReplayUpstream,
} from './support/replay-upstream.js';

let upstream: Harness;
let gateway: Harness;
let slowReplay: ReplayUpstream;
let failingReplay: ReplayUpstream;

beforeAll(async () => {
  upstream = await startHarness();
  slowReplay = await startReplayUpstream({
    events: chatStreamWithoutUsage([' one', ' two', ' three']),
    delayMs: 300,
  });
  failingReplay = await startReplayUpstream({ events: [], delayMs: 0, status: 500 });
  process.env.REPLAY_KEY = 'sk-replay-secret';
  gateway = await startHarness(undefined, {
    engines: {
      remote: {
        type: 'openai-upstream',
        baseUrl: `${upstream.url}/v1`,
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 8,
      },
      slow: {
        type: 'openai-upstream',
        baseUrl: slowReplay.url,
        apiKeyEnv: 'REPLAY_KEY',
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 8,
      },
      broken: {
        type: 'openai-upstream',
        baseUrl: failingReplay.url,
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 8,
      },
      // Port 9 (discard) on loopback: nothing listens there, so connections are refused at once.
      unreachable: {
        type: 'openai-upstream',
        baseUrl: 'http://127.0.0.1:9/v1',
        connectTimeoutMs: 2000,
        maxConcurrentRequests: 8,
      },
    },
    models: {
      'remote-tiny': { engine: 'remote', upstreamModel: 'gravity-tiny' },
      'remote-random': { engine: 'remote', upstreamModel: 'gravity-tiny-random' },
      'remote-missing': { engine: 'remote', upstreamModel: 'no-such-model' },
      'slow-model': { engine: 'slow' },
      'broken-model': { engine: 'broken' },
      'unreachable-model': { engine: 'unreachable' },
    },
  });
});

afterAll(async () => {
  await gateway?.close();
  await upstream?.close();
  await slowReplay?.close();
  await failingReplay?.close();
});

describe('the OpenAI-compatible upstream engine (a second Gravity as the upstream)', () => {
  it('returns the upstream completion with the upstream usage', async () => {
    const direct = await upstream.client.completions.create({
      model: 'gravity-tiny',
      prompt: 'a b',
      max_tokens: 5,
    });
    const proxied = await gateway.client.completions.create({
      model: 'remote-tiny',
      prompt: 'a b',
      max_tokens: 5,
    });
    expect(proxied.choices[0]?.text).toBe(direct.choices[0]?.text);
    expect(proxied.choices[0]?.text).toBe(' c d e f g');
    expect(proxied.model).toBe('remote-tiny');
    expect(proxied.usage?.prompt_tokens).toBe(direct.usage?.prompt_tokens);
    expect(proxied.usage?.completion_tokens).toBe(5);
  });

  it('streams a completion from the upstream chunk by chunk, same text as asking the upstream directly', async () => {
    // The alphabet model's output is exact, so the comparison cannot flip on llama.cpp numerics.
    const request = { prompt: 'a', max_tokens: 40, temperature: 0 };
    const direct = await upstream.client.completions.create({ ...request, model: 'gravity-tiny' });
    const stream = await gateway.client.completions.create({
      ...request,
      model: 'remote-tiny',
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let contentChunks = 0;
    let usage: { completion_tokens: number } | undefined | null;
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.text;
      if (content) {
        text += content;
        contentChunks++;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(direct.choices[0]?.text);
    expect(text).toBe(' b c d e f g h i j k l m n o p q r s t u v w x y z');
    expect(contentChunks).toBe(25);
    expect(usage?.completion_tokens).toBe(25);
  });

  it('passes each upstream chunk on as it arrives, without buffering', async () => {
    const started = Date.now();
    const stream = await gateway.client.chat.completions.create({
      model: 'slow-model',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const arrivals: Array<{ text: string; atMs: number }> = [];
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content;
      if (content) arrivals.push({ text: content, atMs: Date.now() - started });
    }
    expect(arrivals.map((arrival) => arrival.text)).toEqual([' one', ' two', ' three']);
    // The replay waits 300 ms between events: buffered output would arrive all at once at the end.
    expect((arrivals[2]?.atMs ?? 0) - (arrivals[0]?.atMs ?? 0)).toBeGreaterThan(450);
  });

  it('counts usage itself when the upstream sends none, and sends the configured API key', async () => {
    const completion = await gateway.client.chat.completions.create({
      model: 'slow-model',
      messages: [{ role: 'user', content: 'sixteen chars!!!' }],
    });
    expect(completion.choices[0]?.message.content).toBe(' one two three');
    expect(completion.usage).toMatchObject({ completion_tokens: 3, prompt_tokens: 4 });
    const last = slowReplay.received.at(-1);
    expect(last?.headers.authorization).toBe('Bearer sk-replay-secret');
    expect(last?.body).toMatchObject({
      model: 'slow-model',
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it('passes through the upstream 404 for a model it does not have', async () => {
    const error = await gateway.client.completions
      .create({ model: 'remote-missing', prompt: 'x' })
      .catch((caught) => caught);
    expect(error.status).toBe(404);
    expect(error.code).toBe('model_not_found');
  });

  it('turns an upstream 500 into a 502 and a refused connection into 502 upstream_unreachable', async () => {
    const broken = await postRaw(
      `${gateway.url}/v1/chat/completions`,
      JSON.stringify({ model: 'broken-model', messages: [{ role: 'user', content: 'x' }] }),
    );
    expect(broken.status).toBe(502);
    expect(broken.json.error).toMatchObject({ type: 'server_error', code: 'upstream_error' });
    const unreachable = await postRaw(
      `${gateway.url}/v1/chat/completions`,
      JSON.stringify({ model: 'unreachable-model', messages: [{ role: 'user', content: 'x' }] }),
    );
    expect(unreachable.status).toBe(502);
    expect(unreachable.json.error).toMatchObject({ code: 'upstream_unreachable' });
  });

  it('cancels the upstream request when the client disconnects', async () => {
    const controller = new AbortController();
    const stream = await gateway.client.chat.completions.create(
      {
        model: 'remote-random',
        messages: [{ role: 'user', content: 'long' }],
        max_tokens: 3000,
        stream: true,
      },
      { signal: controller.signal },
    );
    let chunks = 0;
    for await (const _chunk of stream) {
      if (++chunks === 3) controller.abort();
    }
    const upstreamEngine = upstream.server.gateway.engines.find((engine) => engine.id === 'tiny-random');
    const deadline = Date.now() + 3000;
    while ((upstreamEngine?.load().slotsBusy ?? 0) > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(upstreamEngine?.load().slotsBusy).toBe(0);
    const metrics = await (await fetch(`${upstream.url}/metrics`)).text();
    expect(metrics).toMatch(
      /gravity_requests_total\{endpoint="chat.completions",model="gravity-tiny-random",status="499"\} 1/,
    );
  });
});
