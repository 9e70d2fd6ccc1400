import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerStore } from '../src/metering/ledger/ledger-store.js';
import { PostgresLedgerStore } from '../src/metering/ledger/postgres-ledger-store.js';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../src/metering/usage-record.js';
import { parseScenario } from '../src/simulator/load-scenario.js';
import { runScenario } from '../src/simulator/run-scenario.js';
import type { SimulationResult } from '../src/simulator/simulation-result.js';
import { LedgerReplay } from '../src/simulator/workload/ledger-replay.js';
import { usageRecord } from './conformance/ledger-store.case.js';
import { type PostgresServer, startPostgres } from './support/postgres-server.js';

/**
 * `gravity sim` replaying a ledger through its store: the same records in a SQLite file and in
 * PostgreSQL (named by URL in the scenario) replay to the same simulation, failed and token-less
 * requests left out, embeddings as prefill-only work.
 */
const dayMs = 86_400_000;
const startMs = Date.UTC(2026, 10, 30, 23, 59, 50);

/** 300 requests over midnight (two PostgreSQL partitions), some failed, one embeddings, some with ties in time. */
function ledgerRecords(): UsageRecord[] {
  const records = Array.from({ length: 300 }, (_, index) =>
    usageRecord({
      requestId: `req-${String(index).padStart(4, '0')}`,
      receivedAtMs: startMs + Math.floor(index / 2) * 100,
      tenant: index % 3 === 0 ? 'acme' : 'globex',
      tier: index % 2 === 0 ? 'priority' : 'flex',
      promptTokens: 200 + index,
      completionTokens: 10 + (index % 7),
      ...(index % 10 === 9 && { status: 500, errorCode: 'engine_error', completionTokens: 0 }),
    }),
  );
  records.push(
    usageRecord({
      requestId: 'embed-1',
      endpoint: 'embeddings',
      receivedAtMs: startMs + dayMs / 2,
      promptTokens: 500,
      completionTokens: 0,
    }),
  );
  return records;
}

const completedCount = 300 - 30 + 1;

function replayScenario(ledger: string) {
  return parseScenario(
    {
      name: 'ledger-replay',
      seed: 1,
      fleet: { hardware: 'h100-sxm', model: 'llama-3.1-8b', replicas: 1 },
      workload: { arrivals: { process: 'ledger', path: ledger, timeScale: 0.001 } },
    },
    'test',
  );
}

function comparable(result: SimulationResult) {
  const { wallSeconds: _wall, simulatedRequestsPerSecond: _rate, ...rest } = result;
  return rest;
}

let server: PostgresServer;
let directory: string;
beforeAll(async () => {
  server = await startPostgres();
  directory = mkdtempSync(path.join(os.tmpdir(), 'gravity-ledger-replay-test-'));
}, 60_000);
afterAll(async () => {
  await server?.close();
  rmSync(directory, { recursive: true, force: true });
});

async function filled(store: LedgerStore): Promise<void> {
  try {
    await store.append(ledgerRecords());
  } finally {
    await store.close();
  }
}

describe('ledger replay in the simulator, through the ledger store', () => {
  it('replays the same requests from a SQLite file and from a PostgreSQL URL, in arrival order', async () => {
    const file = path.join(directory, 'ledger.sqlite');
    await filled(new SqliteLedgerStore(file));
    const url = await server.createDatabase();
    await filled(await PostgresLedgerStore.open(url));

    const scenarios = [replayScenario(file), replayScenario(url)];
    // The URL is kept as given (not resolved as a path against the scenario's folder).
    expect(scenarios[1]?.workload.arrivals).toMatchObject({ path: url });
    const results: SimulationResult[] = [];
    for (const scenario of scenarios) {
      const arrivals = scenario.workload.arrivals as { path: string };
      // Pages of 16: pages meet inside runs of equal arrival times and across the day's partitions.
      const ledgerReplay = await LedgerReplay.read(arrivals.path, { pageSize: 16 });
      try {
        expect(ledgerReplay.count).toBe(completedCount);
        const requests = [...ledgerReplay.records()];
        expect(requests.map((request) => request.arrivalMs)).toEqual(
          requests.map((request) => request.arrivalMs).sort((a, b) => a - b),
        );
        expect(requests.find((request) => request.promptTokens === 500)).toMatchObject({ outputTokens: 1 });
        // Each run reads the replay afresh: a sweep's runs replay the same requests.
        for (let run = 0; run < 2; run++) results.push(runScenario(scenario, {}, { ledgerReplay }));
      } finally {
        ledgerReplay.close();
      }
    }
    for (const result of results) expect(result.overall.completed).toBe(completedCount);
    expect(results[0]?.tiers.map((tier) => tier.tier).sort()).toEqual(['default', 'flex', 'priority']);
    const [first, ...others] = results.map(comparable);
    for (const other of others) expect(other).toEqual(first);
  }, 30_000);

  it('refuses a ledger that is not there, naming it', async () => {
    const missing = path.join(directory, 'missing.sqlite');
    await expect(LedgerReplay.read(missing)).rejects.toThrow(missing);
    expect(() => runScenario(replayScenario(missing))).toThrow(/must be read before the run/);
  });
});
