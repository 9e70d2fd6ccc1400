import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { expect, it } from 'vitest';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';

it('adds the route and partial columns to a ledger written before they existed, keeping its rows', async () => {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'gravity-old-ledger-')), 'ledger.sqlite');
  const old = new Database(file);
  old.exec(`CREATE TABLE usage_records (
    request_id TEXT PRIMARY KEY, received_at_ms INTEGER NOT NULL, finished_at_ms INTEGER NOT NULL,
    endpoint TEXT NOT NULL, tenant TEXT NOT NULL, api_key_id TEXT, model TEXT NOT NULL, engine TEXT,
    replica TEXT, tier TEXT NOT NULL, stream INTEGER NOT NULL, status INTEGER NOT NULL, error_code TEXT,
    finish_reason TEXT, prompt_tokens INTEGER NOT NULL, cached_prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, usage_source TEXT NOT NULL, queue_wait_ms REAL, ttft_ms REAL,
    itl_mean_ms REAL, itl_p50_ms REAL, itl_p95_ms REAL, itl_max_ms REAL, e2e_ms REAL NOT NULL,
    energy_joules REAL NOT NULL, energy_source TEXT NOT NULL, cost_usd REAL NOT NULL,
    cost_source TEXT NOT NULL, price_usd REAL NOT NULL, margin_usd REAL NOT NULL, carbon_grams REAL NOT NULL
  ) STRICT`);
  old
    .prepare(
      `INSERT INTO usage_records VALUES ('old-1', 1, 2, 'completions', 'anonymous', NULL, 'm', 'e', 'e', 'default',
       0, 200, NULL, 'stop', 1, 0, 1, 'engine', NULL, NULL, NULL, NULL, NULL, NULL, 1, 0, 'none', 0, 'none', 0, 0, 0)`,
    )
    .run();
  old.close();

  const ledger = new SqliteLedgerStore(file);
  try {
    const [record] = await ledger.records({});
    expect(record).toMatchObject({ requestId: 'old-1', route: null, partial: false });
  } finally {
    await ledger.close();
  }
});
