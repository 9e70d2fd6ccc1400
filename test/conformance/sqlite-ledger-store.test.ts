import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SqliteLedgerStore } from '../../src/metering/ledger/sqlite-ledger-store.js';
import { describeLedgerStoreConformance } from './ledger-store.case.js';

describeLedgerStoreConformance(
  'SqliteLedgerStore (file, WAL)',
  async () =>
    new SqliteLedgerStore(path.join(mkdtempSync(path.join(tmpdir(), 'gravity-ledger-')), 'ledger.sqlite')),
);
describeLedgerStoreConformance(
  'SqliteLedgerStore (file, TTFT samples past the bound: quantiles sorted by SQLite)',
  async () =>
    new SqliteLedgerStore(path.join(mkdtempSync(path.join(tmpdir(), 'gravity-ledger-')), 'ledger.sqlite'), {
      ttftSampleLimit: 10,
    }),
);
describeLedgerStoreConformance(
  'SqliteLedgerStore (in memory)',
  async () => new SqliteLedgerStore(':memory:'),
);
