import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEngineSignals } from '../src/gateway/engine-signals/prometheus-signals.js';
import { type Harness, startHarness } from './support/gravity-harness.js';

/**
 * Engine signals scraped from Prometheus, end to end: Gravity A runs an emulated replica and exposes it
 * under vLLM's metric names; Gravity B routes to A as an OpenAI-compatible upstream and scrapes A's
 * /metrics as it would a vLLM server's, marking the data stale once scrapes fail.
 */
const model = 'llama-3.1-8b';
let upstream: Harness;
let front: Harness;
let upstreamClosed = false;

beforeAll(async () => {
  upstream = await startHarness(undefined, {
    engines: { replica: { type: 'emulated', hardware: 'l4', model, maxNumSeqs: 2, contextTokens: 4096 } },
    models: { [model]: { engine: 'replica' } },
    // No gateway queue in A: waiting requests stay in the engine, where vLLM would report them.
    scheduling: { enabled: false },
  });
  front = await startHarness(undefined, {
    engines: { 'upstream-a': { type: 'openai-upstream', baseUrl: `${upstream.url}/v1` } },
    models: { [model]: { engine: 'upstream-a' } },
    routing: {
      replicas: {
        'upstream-a': { metrics: { url: `${upstream.url}/metrics`, intervalMs: 100, staleAfterMs: 400 } },
      },
    },
  });
});
afterAll(async () => {
  await front?.close();
  if (!upstreamClosed) await upstream?.close();
});

async function replicaSignals(): Promise<{ stale: boolean; lastError: string | null }> {
  const response = await fetch(`${front.url}/v1/routing/replicas`);
  const body = (await response.json()) as {
    replicas: Array<{ id: string; signals: { stale: boolean; lastError: string | null } }>;
  };
  return body.replicas.find((replica) => replica.id === 'upstream-a')?.signals as {
    stale: boolean;
    lastError: string | null;
  };
}

async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('engine signals scraped from Prometheus', () => {
  it("reads queue and KV figures from a vLLM-named exposition, as Gravity's emulated engine publishes it", async () => {
    const abort = new AbortController();
    // Two slots: six of eight long requests wait inside A's engine.
    const load = Array.from({ length: 8 }, () =>
      upstream.client.chat.completions
        .create(
          { model, messages: [{ role: 'user', content: 'Tell a long story.' }], max_tokens: 400 },
          { signal: abort.signal },
        )
        .catch(() => null),
    );
    let signals = parseEngineSignals('');
    await waitFor('six requests waiting in the upstream engine', async () => {
      signals = parseEngineSignals(await (await fetch(`${upstream.url}/metrics`)).text());
      return signals.waitingRequests === 6;
    });
    expect(signals.runningRequests).toBe(2);
    expect(signals.kvUsedFraction).toBeGreaterThan(0);
    abort.abort();
    await Promise.all(load);
  });

  it('keeps the scraped figures fresh while the upstream answers and marks them stale when it stops', async () => {
    await waitFor('a first successful scrape', async () => (await replicaSignals()).stale === false);
    await upstream.close();
    upstreamClosed = true;
    await waitFor('the signals to go stale', async () => (await replicaSignals()).stale === true);
    expect((await replicaSignals()).lastError).not.toBeNull();
  });
});
