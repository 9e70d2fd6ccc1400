import { APIError, RateLimitError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import { type Harness, startHarness } from './support/gravity-harness.js';

/**
 * The gateway's SLO scheduler end to end with the openai SDK: one emulated replica that runs two
 * requests at once, so a few long requests fill it and the rest wait in the gateway's queue.
 */
const model = 'llama-3.1-8b';
const document = {
  engines: {
    replica: { type: 'emulated', hardware: 'h100-sxm', model, maxNumSeqs: 2, contextTokens: 4096 },
  },
  models: { [model]: { engine: 'replica' } },
  tiers: {
    priority: { ttftMs: 500, maxQueueWaitMs: 60_000 },
    default: { ttftMs: 2000, maxQueueWaitMs: 800 },
    flex: { ttftMs: 200 },
  },
  // No reserve: the test fills both slots with default work and checks who gets the next one.
  scheduling: { priorityReserveFraction: 0 },
};

let harness: Harness;
beforeAll(async () => {
  harness = await startHarness(undefined, document);
});
afterAll(async () => {
  await harness?.close();
});

const scheduler = () => {
  const found = harness.server.gateway.schedulers.get('replica');
  if (!found) throw new Error('no scheduler for the replica');
  return found;
};

async function waitFor(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function ask(tier: 'priority' | 'default' | 'flex', maxTokens: number, signal?: AbortSignal) {
  return harness.client.chat.completions.create(
    {
      model,
      messages: [{ role: 'user', content: `A ${tier} question.` }],
      max_tokens: maxTokens,
      service_tier: tier,
    },
    signal ? { signal } : {},
  );
}

/** Fills both slots with long default requests (the second twice as long); resolves when they finish. */
async function fillReplica(maxTokens = 300) {
  const long = [ask('default', maxTokens), ask('default', 2 * maxTokens)];
  await waitFor('both slots busy', () => scheduler().runningRequests === 2);
  return Promise.all(long);
}

describe('tier scheduling', () => {
  beforeAll(async () => {
    // One request end to end so the queue has a service time to predict waits from.
    await ask('default', 50);
  });

  it('sheds flex at once with 429 and Retry-After when its TTFT target cannot be met', async () => {
    const running = fillReplica();
    const queued = ask('default', 5);
    await waitFor('one request queued', () => scheduler().queuedRequests === 1);
    const flex = await ask('flex', 5).catch((error: unknown) => error);
    expect(flex).toBeInstanceOf(RateLimitError);
    const error = flex as RateLimitError;
    expect(error.code).toBe('rate_limit_exceeded');
    expect(Number(error.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await Promise.allSettled([running, queued]);
    // The refusal is counted on /metrics and leaves its ledger record like any other request.
    const metrics = await (await fetch(`${harness.url}/metrics`)).text();
    expect(metrics).toMatch(/gravity_scheduler_refused_total\{engine="replica",reason="shed"\} 1/);
    const ledger = new SqliteLedgerStore(harness.ledgerPath);
    try {
      const records = await ledger.records({});
      expect(records.filter((record) => record.status === 429 && record.tier === 'flex')).toHaveLength(1);
    } finally {
      await ledger.close();
    }
  });

  it('refuses a default request that waited past its bound with 503 overloaded', async () => {
    const running = fillReplica(600);
    const waited = await ask('default', 5).catch((error: unknown) => error);
    expect(waited).toBeInstanceOf(APIError);
    expect((waited as APIError).status).toBe(503);
    expect((waited as APIError).code).toBe('overloaded');
    await running;
  });

  it('gives priority the next free slot ahead of default requests that waited longer', async () => {
    const running = fillReplica(20);
    const order: string[] = [];
    const defaultRequest = ask('default', 5).then(() => order.push('default'));
    await waitFor('the default request queued', () => scheduler().queuedRequests === 1);
    const priorityRequest = ask('priority', 5).then(() => order.push('priority'));
    await Promise.all([running, defaultRequest, priorityRequest]);
    expect(order).toEqual(['priority', 'default']);
  });

  it('takes a queued request out of the queue as soon as its client leaves, and records it', async () => {
    const running = fillReplica(20);
    const controller = new AbortController();
    const abandoned = ask('default', 5, controller.signal).catch((error: unknown) => error);
    await waitFor('the request queued', () => scheduler().queuedRequests === 1);
    controller.abort();
    await abandoned;
    await waitFor('the queue to empty', () => scheduler().queuedRequests === 0, 1000);
    await running;
    const ledger = new SqliteLedgerStore(harness.ledgerPath);
    try {
      const records = await ledger.records({});
      expect(records.some((record) => record.status === 499 && record.tier === 'default')).toBe(true);
    } finally {
      await ledger.close();
    }
  });
});
