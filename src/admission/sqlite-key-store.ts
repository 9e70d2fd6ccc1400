import Database from 'better-sqlite3';
import { preparePrivateDatabaseFile } from '../core/private-files.js';
import type { GrantableTier } from '../core/service-tiers.js';
import type { ApiKey, SpendPeriod } from './api-key.js';
import type { KeyStore, NewApiKey } from './key-store.js';

const schema = `
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  prefix TEXT NOT NULL,
  secret_sha256 BLOB NOT NULL,
  tenant TEXT NOT NULL,
  default_tier TEXT NOT NULL,
  allowed_tiers TEXT NOT NULL,
  rpm INTEGER,
  tpm INTEGER,
  concurrency INTEGER,
  spend_usd REAL,
  spend_period TEXT NOT NULL,
  admin INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL,
  revoked_at_ms INTEGER
) STRICT;
`;

interface KeyRow {
  id: string;
  prefix: string;
  secret_sha256: Buffer;
  tenant: string;
  default_tier: string;
  allowed_tiers: string;
  rpm: number | null;
  tpm: number | null;
  concurrency: number | null;
  spend_usd: number | null;
  spend_period: string;
  admin: number;
  created_at_ms: number;
  revoked_at_ms: number | null;
}

function keyOf(row: KeyRow): ApiKey {
  return {
    id: row.id,
    prefix: row.prefix,
    secretSha256: row.secret_sha256,
    tenant: row.tenant,
    defaultTier: row.default_tier as GrantableTier,
    allowedTiers: row.allowed_tiers.split(',').filter(Boolean) as GrantableTier[],
    limits: {
      rpm: row.rpm ?? undefined,
      tpm: row.tpm ?? undefined,
      concurrency: row.concurrency ?? undefined,
      spendUsd: row.spend_usd ?? undefined,
      period: row.spend_period as SpendPeriod,
    },
    admin: row.admin === 1,
    createdAtMs: row.created_at_ms,
    revokedAtMs: row.revoked_at_ms,
  };
}

/**
 * Keys in one SQLite file (`<dataDir>/keys.sqlite`), shared by `gravity serve` and `gravity keys`: WAL
 * mode lets the CLI create and revoke keys while a server reads them.
 */
export class SqliteKeyStore implements KeyStore {
  private readonly database: Database.Database;
  private readonly findStatement: Database.Statement<[string], KeyRow>;

  constructor(file: string) {
    // Key hashes and tenants: readable by Gravity's user only.
    preparePrivateDatabaseFile(file);
    this.database = new Database(file);
    this.database.pragma('journal_mode = WAL');
    this.database.pragma('busy_timeout = 5000');
    this.database.exec(schema);
    this.findStatement = this.database.prepare<[string], KeyRow>('SELECT * FROM api_keys WHERE id = ?');
  }

  insert(key: NewApiKey): void {
    this.database
      .prepare(
        `INSERT INTO api_keys (id, prefix, secret_sha256, tenant, default_tier, allowed_tiers, rpm, tpm,
           concurrency, spend_usd, spend_period, admin, created_at_ms, revoked_at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)`,
      )
      .run(
        key.id,
        key.prefix,
        key.secretSha256,
        key.tenant,
        key.defaultTier,
        key.allowedTiers.join(','),
        key.limits.rpm ?? null,
        key.limits.tpm ?? null,
        key.limits.concurrency ?? null,
        key.limits.spendUsd ?? null,
        key.limits.period,
        key.admin ? 1 : 0,
        Math.round(key.createdAtMs),
      );
  }

  find(id: string): ApiKey | null {
    const row = this.findStatement.get(id);
    return row ? keyOf(row) : null;
  }

  list(): ApiKey[] {
    return this.database
      .prepare<[], KeyRow>('SELECT * FROM api_keys ORDER BY created_at_ms, id')
      .all()
      .map(keyOf);
  }

  revoke(id: string, atMs: number): ApiKey | null {
    this.database
      .prepare('UPDATE api_keys SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL')
      .run(Math.round(atMs), id);
    return this.find(id);
  }

  count(): number {
    return (this.database.prepare('SELECT COUNT(*) AS n FROM api_keys').get() as { n: number }).n;
  }

  close(): void {
    if (this.database.open) this.database.close();
  }
}
