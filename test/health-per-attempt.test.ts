import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { listenOnLoopback } from './support/replay-upstream.js';

/**
 * A replica that answers every request with two tokens and then resets the connection fails every
 * attempt, but after its first token. Health is judged once per attempt, at its end: those failures add
 * up and eject it, and a healthy second replica takes the rest.
 */
const base = { id: 'chatcmpl-health', object: 'chat.completion.chunk', created: 1, model: 'upstream' };
const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) =>
  `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;

/** An upstream whose chat streams end as `behaviour` says; `GET /models` answers, so probes pass. */
function fakeUpstream(behaviour: 'two-tokens-then-reset' | 'healthy') {
  return createServer(async (request: IncomingMessage, response: ServerResponse) => {
    for await (const _ of request);
    if (request.method === 'GET') {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ object: 'list', data: [{ id: 'upstream', object: 'model' }] }));
      return;
    }
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    response.write(chunk({ role: 'assistant', content: '' }) + chunk({ content: 'one' }));
    await new Promise((resolve) => setTimeout(resolve, 5));
    response.write(chunk({ content: ' two' }));
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (behaviour === 'two-tokens-then-reset') {
      response.socket?.resetAndDestroy();
      return;
    }
    response.end(`${chunk({}, 'stop')}data: [DONE]\n\n`);
  });
}

let broken: { url: string; close(): Promise<void> };
let healthy: { url: string; close(): Promise<void> };
let gateway: Harness;
beforeAll(async () => {
  broken = await listenOnLoopback(fakeUpstream('two-tokens-then-reset'));
  healthy = await listenOnLoopback(fakeUpstream('healthy'));
  const engine = (url: string) => ({
    type: 'openai-upstream',
    baseUrl: url,
    connectTimeoutMs: 5000,
    maxConcurrentRequests: 4,
  });
  gateway = await startHarness(undefined, {
    engines: { broken: engine(broken.url), healthy: engine(healthy.url) },
    models: { chat: { engines: ['broken', 'healthy'], upstreamModel: 'upstream' } },
    // Round-robin: without ejection, every other request would land on the broken replica. A long
    // ejection keeps a half-open trial out of the count.
    routing: { policy: 'round-robin', health: { consecutiveFailures: 3, ejectionMs: 60_000 } },
  });
});
afterAll(async () => {
  await gateway?.close();
  await broken?.close();
  await healthy?.close();
});

/** One streamed chat request, read to its end: whether it finished with [DONE] and no error event. */
async function streamCompletes(): Promise<boolean> {
  const response = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'chat',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      max_tokens: 8,
    }),
  });
  const text = await response.text();
  return response.status === 200 && text.includes('data: [DONE]') && !text.includes('"error"');
}

describe('replica health judged once per attempt', () => {
  it('ejects a replica that always fails after its first tokens, and the healthy one serves the rest', async () => {
    let completed = 0;
    for (let request = 0; request < 30; request++) if (await streamCompletes()) completed++;
    const snapshot = gateway.server.gateway.routingSnapshot();
    const brokenHealth = snapshot.replicas.find((replica) => replica.id === 'broken')?.health;
    expect(brokenHealth?.ejections).toBeGreaterThan(0);
    expect(brokenHealth?.state).toBe('open');
    // Three failures eject it; round-robin sends it at most every other request until then.
    expect(completed).toBeGreaterThanOrEqual(25);
  });
});
