import path from 'node:path';
import { StartupError } from '../core/startup-error.js';
import { migratedPostgres } from '../metering/ledger/postgres-migrations.js';
import type { LedgerConfig } from '../metering/metering-config.js';
import { PostgresResponseStore } from './postgres-response-store.js';
import type { ResponseStore } from './response-store.js';
import type { ResponsesConfig } from './responses-config.js';
import { SqliteResponseStore } from './sqlite-response-store.js';

interface ResponseStoreSettings {
  responses: ResponsesConfig;
  ledger: LedgerConfig;
  dataDir: string;
}

/** Which store keeps responses: `responses.store`, or by default the ledger's (a fleet's ledger is shared). */
export function responseStoreKind(config: ResponseStoreSettings): 'sqlite' | 'postgres' {
  return config.responses.store ?? (config.ledger.store === 'postgres' ? 'postgres' : 'sqlite');
}

/**
 * The configured response store, opened: `responses.sqlite` in `responses.directory`, or the fleet's
 * PostgreSQL (the ledger's URL, schema migrated or checked as the ledger's is). A PostgreSQL that cannot
 * be reached fails here naming its URL (password hidden).
 */
export async function openResponseStore(config: ResponseStoreSettings): Promise<ResponseStore> {
  const { retentionDays } = config.responses;
  if (responseStoreKind(config) === 'sqlite')
    return new SqliteResponseStore({
      path: path.join(config.responses.directory ?? config.dataDir, 'responses.sqlite'),
      retentionDays,
    });
  try {
    // The config requires the ledger's URL for a PostgreSQL response store.
    const sql = await migratedPostgres(config.ledger.url as string, {
      migrate: config.ledger.migrate,
      max: 2,
    });
    const store = new PostgresResponseStore(sql, { retentionDays });
    await store.prune();
    return store;
  } catch (error) {
    throw new StartupError(`responses: ${(error as Error).message}`, { cause: error });
  }
}
