import { createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { listenOnLoopback } from './support/replay-upstream.js';

/**
 * An embeddings server that reports no usage (some servers leave `usage` out of `/v1/embeddings`):
 * Gravity relays its vectors as sent and counts the prompt tokens itself, saying so.
 */
let upstream: { url: string; close(): Promise<void> };
let gateway: Harness;
beforeAll(async () => {
  upstream = await listenOnLoopback(
    createServer(async (request, response) => {
      let raw = '';
      for await (const chunk of request) raw += chunk;
      if (request.url !== '/v1/embeddings') {
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end('{}');
        return;
      }
      const { input } = JSON.parse(raw) as { input: string | string[] };
      const inputs = Array.isArray(input) ? input : [input];
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({
          object: 'list',
          model: 'plain-embedder',
          data: inputs.map((_, index) => ({ object: 'embedding', index, embedding: [0.6, 0.8] })),
        }),
      );
    }),
  );
  gateway = await startHarness(undefined, {
    engines: {
      embedder: {
        type: 'openai-upstream',
        baseUrl: upstream.url,
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 4,
      },
    },
    models: { embedder: { engine: 'embedder', upstreamModel: 'plain-embedder' } },
  });
});
afterAll(async () => {
  await gateway?.close();
  await upstream?.close();
});

describe('an upstream that reports no embeddings usage', () => {
  it('relays its vectors and counts the prompt tokens, marked as counted', async () => {
    const response = await fetch(`${gateway.url}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'embedder',
        input: ['a'.repeat(400), 'b'.repeat(40)],
        encoding_format: 'float',
      }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      data: Array<{ embedding: number[] }>;
      usage: { prompt_tokens: number; total_tokens: number; gravity: { usage_source: string } };
    };
    expect(body.data.map((entry) => entry.embedding)).toEqual([
      [0.6, 0.8],
      [0.6, 0.8],
    ]);
    // ~4 characters per token: the estimate Gravity states it uses when an upstream says nothing.
    expect(body.usage.prompt_tokens).toBeGreaterThanOrEqual(100);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens);
    expect(body.usage.gravity.usage_source).toBe('counted');
  });
});
