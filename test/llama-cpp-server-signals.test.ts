import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support/gravity-harness.js';

/**
 * A llama.cpp server (`llama-server --metrics`) as an upstream: Gravity scrapes its `llamacpp:*` gauges and
 * routes by them. Two loopback servers stand in for llama-server: an OpenAI model list, and `/metrics` in
 * llama-server's exposition (names, HELP and TYPE lines, no labels) with figures the test sets.
 */
const model = 'qwen2.5-7b';

interface LlamaServerFigures {
  deferred: number;
  processing: number;
  kvUsageRatio: number;
}

interface FakeLlamaServer {
  url: string;
  figures: LlamaServerFigures;
  close(): Promise<void>;
}

function llamaServerExposition(figures: LlamaServerFigures): string {
  return [
    '# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.',
    '# TYPE llamacpp:prompt_tokens_total counter',
    'llamacpp:prompt_tokens_total 1200',
    '# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.',
    '# TYPE llamacpp:kv_cache_usage_ratio gauge',
    `llamacpp:kv_cache_usage_ratio ${figures.kvUsageRatio}`,
    '# HELP llamacpp:requests_processing Number of requests processing.',
    '# TYPE llamacpp:requests_processing gauge',
    `llamacpp:requests_processing ${figures.processing}`,
    '# HELP llamacpp:requests_deferred Number of requests deferred.',
    '# TYPE llamacpp:requests_deferred gauge',
    `llamacpp:requests_deferred ${figures.deferred}`,
    '',
  ].join('\n');
}

async function startFakeLlamaServer(figures: LlamaServerFigures): Promise<FakeLlamaServer> {
  const fake = { figures } as FakeLlamaServer;
  const server: Server = createServer((request, response) => {
    if (request.url === '/metrics') {
      response.setHeader('content-type', 'text/plain; version=0.0.4');
      response.end(llamaServerExposition(fake.figures));
      return;
    }
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ object: 'list', data: [{ id: model }] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake.close = () => new Promise((resolve) => server.close(() => resolve()));
  return fake;
}

const idle: LlamaServerFigures = { deferred: 0, processing: 0, kvUsageRatio: 0.05 };
const busy: LlamaServerFigures = { deferred: 12, processing: 4, kvUsageRatio: 0.95 };
let first: FakeLlamaServer;
let second: FakeLlamaServer;
let front: Harness;

beforeAll(async () => {
  first = await startFakeLlamaServer(busy);
  second = await startFakeLlamaServer(idle);
  const scrape = (server: FakeLlamaServer) => ({
    metrics: { url: `${server.url}/metrics`, intervalMs: 50, staleAfterMs: 5000 },
  });
  front = await startHarness(undefined, {
    engines: {
      first: { type: 'openai-upstream', baseUrl: `${first.url}/v1` },
      second: { type: 'openai-upstream', baseUrl: `${second.url}/v1` },
    },
    models: { [model]: { engines: ['first', 'second'] } },
    routing: { policy: 'least-loaded', replicas: { first: scrape(first), second: scrape(second) } },
  });
});
afterAll(async () => {
  await front?.close();
  await first?.close();
  await second?.close();
});

async function pick(): Promise<string> {
  const response = await fetch(`${front.url}/v1/routing/explain`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] }),
  });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { decision: { top: Array<{ replica: string }> } };
  return body.decision.top[0]?.replica ?? '';
}

/**
 * Waits until routing picks `replica` twelve times in a row. Least-loaded spreads ties at random, so
 * without the scraped figures twelve identical picks would happen once in about 2,000 tries.
 */
async function waitForSteadyPick(replica: string): Promise<void> {
  const deadline = Date.now() + 5000;
  let inARow = 0;
  while (inARow < 12) {
    inARow = (await pick()) === replica ? inARow + 1 : 0;
    if (inARow === 0) {
      if (Date.now() > deadline) throw new Error(`routing never settled on ${replica}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe("a llama.cpp server's own metrics", () => {
  it('steer routing away from the llama-server whose llamacpp:* gauges report a queue, and back', async () => {
    await waitForSteadyPick('second');
    // The same two servers with their figures swapped: the pick follows the scraped figures.
    first.figures = idle;
    second.figures = busy;
    await waitForSteadyPick('first');
    const replicas = (await (await fetch(`${front.url}/v1/routing/replicas`)).json()) as {
      replicas: Array<{ id: string; signals: { stale: boolean; lastError: string | null } }>;
    };
    for (const replica of replicas.replicas)
      expect(replica.signals).toEqual({ stale: false, lastError: null });
  });
});
