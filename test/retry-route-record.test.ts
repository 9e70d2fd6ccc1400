import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';

/**
 * A request retried onto the last replica left: its `x-gravity-route` and the ledger's `route` name the
 * replica that served it, with the failed attempt listed, not the replica that failed.
 */
let harness: Harness;
beforeAll(async () => {
  harness = await startHarness(undefined, {
    engines: {
      // Port 9 (discard) on loopback: nothing listens, connections are refused at once (retryable).
      dead: { type: 'openai-upstream', baseUrl: 'http://127.0.0.1:9/v1', connectTimeoutMs: 2000 },
      alive: { type: 'emulated', hardware: 'h200', model: 'llama-3.1-8b', weightDtype: 'fp8' },
    },
    models: { m: { engines: ['dead', 'alive'] } },
    routing: {
      policy: 'least-loaded',
      // Never ejected, so that requests keep landing on it first now and then.
      health: { consecutiveFailures: 1000, intervalMs: 0 },
      retries: { maxAttempts: 2, minRetriesPerSecond: 100 },
    },
  });
});
afterAll(async () => {
  await harness?.close();
});

describe('the route record of a retried request', () => {
  it('names the replica that served it, with the failed attempt', async () => {
    const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    const routes: Array<{ id: string; route: { replica: string; attempt?: number; failed?: string[] } }> = [];
    for (let index = 0; index < 16; index++) {
      const response = await postRaw(`${harness.url}/v1/chat/completions`, body);
      expect(response.status).toBe(200);
      routes.push({
        id: response.headers.get('x-request-id') ?? '',
        route: JSON.parse(response.headers.get('x-gravity-route') ?? '{}'),
      });
    }
    // Every answer came from the live replica, whatever was tried first.
    expect(new Set(routes.map(({ route }) => route.replica))).toEqual(new Set(['alive']));
    const retried = routes.filter(({ route }) => route.failed !== undefined);
    expect(retried.length).toBeGreaterThan(0);
    for (const { route } of retried) {
      expect(route.attempt).toBe(2);
      expect(route.failed?.[0]).toMatch(/^dead: /);
    }
    const ledger = new SqliteLedgerStore(harness.ledgerPath);
    try {
      const records = (await ledger.records({})).filter((record) =>
        routes.some(({ id }) => id === record.requestId),
      );
      expect(records).toHaveLength(routes.length);
      for (const record of records) {
        expect(record.engine).toBe('alive');
        expect(JSON.parse(record.route ?? '{}').replica).toBe('alive');
      }
    } finally {
      await ledger.close();
    }
  });
});
