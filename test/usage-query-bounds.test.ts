import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import { usageRecord } from './conformance/ledger-store.case.js';
import { type Harness, startHarness } from './support/gravity-harness.js';

/**
 * `/v1/usage` over a large file ledger (issue 14): it used to read every row on the event loop and total
 * them in JavaScript, so one call froze the gateway for seconds and a few concurrent ones piled up
 * gigabytes. The ledger is filled through a second store on the same file, as another process would.
 */
const ledgerRows = 200_000;
const maxPendingUsageQueries = 2;

let harness: Harness;
beforeAll(async () => {
  harness = await startHarness(
    (config) => {
      config.metering.maxPendingUsageQueries = maxPendingUsageQueries;
    },
    {
      engines: { solo: { type: 'emulated', hardware: 'h200', model: 'llama-3.1-8b', weightDtype: 'fp8' } },
      models: { 'llama-3.1-8b': { engine: 'solo' } },
    },
  );
  const filler = new SqliteLedgerStore(harness.ledgerPath);
  const startMs = Date.UTC(2026, 10, 1);
  for (let from = 0; from < ledgerRows; from += 20_000) {
    await filler.append(
      Array.from({ length: 20_000 }, (_, offset) => {
        const index = from + offset;
        return usageRecord({
          requestId: `fill-${index}`,
          receivedAtMs: startMs + index * 1000,
          tenant: `tenant-${index % 7}`,
          ttftMs: index % 10 === 0 ? null : (index % 997) / 3,
        });
      }),
    );
  }
  await filler.close();
}, 120_000);
afterAll(async () => {
  await harness?.close();
});

/** Runs `work` while a 10 ms interval ticks; the longest gap beyond the interval is how long the loop was held. */
async function longestLoopBlockMs(work: () => Promise<void>): Promise<number> {
  let lastTickMs = performance.now();
  let longestMs = 0;
  const ticker = setInterval(() => {
    const nowMs = performance.now();
    longestMs = Math.max(longestMs, nowMs - lastTickMs - 10);
    lastTickMs = nowMs;
  }, 10);
  try {
    await work();
    await new Promise((resolve) => setTimeout(resolve, 30));
  } finally {
    clearInterval(ticker);
  }
  return longestMs;
}

describe('/v1/usage over a large ledger', () => {
  it('totals 200,000 rows without holding the event loop', async () => {
    let body: { data: Array<Record<string, unknown>> } | undefined;
    const blockedMs = await longestLoopBlockMs(async () => {
      const response = await fetch(`${harness.url}/v1/usage?group_by=tenant,day`);
      expect(response.status).toBe(200);
      body = (await response.json()) as typeof body;
    });
    const requests = body?.data.reduce((total, group) => total + Number(group.requests), 0);
    expect(requests).toBe(ledgerRows);
    expect(body?.data[0]).toMatchObject({ tenant: 'tenant-0', day: '2026-11-01' });
    // The old route held the loop for seconds here; the reader thread leaves it a few ms of messages.
    expect(blockedMs).toBeLessThan(500);
  });

  it('refuses usage queries beyond the configured bound with a 503, OpenAI-style', async () => {
    const responses = await Promise.all(
      Array.from({ length: maxPendingUsageQueries + 2 }, () => fetch(`${harness.url}/v1/usage`)),
    );
    const statuses = responses.map((response) => response.status).sort();
    expect(statuses).toEqual([...Array(maxPendingUsageQueries).fill(200), ...Array(2).fill(503)]);
    const refused = responses.find((response) => response.status === 503);
    expect(refused?.headers.get('retry-after')).toBe('1');
    expect(await refused?.json()).toMatchObject({
      error: { type: 'service_unavailable', code: 'usage_queries_busy' },
    });
    // Once they are answered, the next query is taken again.
    expect((await fetch(`${harness.url}/v1/usage`)).status).toBe(200);
  });
});
