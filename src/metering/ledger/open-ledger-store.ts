import path from 'node:path';
import { StartupError } from '../../core/startup-error.js';
import type { LedgerConfig } from '../metering-config.js';
import type { LedgerStore } from './ledger-store.js';
import { PostgresLedgerStore } from './postgres-ledger-store.js';
import { SqliteLedgerStore } from './sqlite-ledger-store.js';

/** What `openLedgerStore` reads of the configuration. */
export interface LedgerStoreSettings {
  ledger: LedgerConfig;
  ledgerPath: string | undefined;
  dataDir: string;
  maxPendingUsageQueries: number;
}

/** The SQLite ledger's file: `metering.ledgerPath`, else `<dataDir>/ledger.sqlite`. */
export function sqliteLedgerPath(settings: Pick<LedgerStoreSettings, 'ledgerPath' | 'dataDir'>): string {
  return settings.ledgerPath ?? path.join(settings.dataDir, 'ledger.sqlite');
}

/**
 * The configured ledger store, opened: SQLite beside this gateway, or the PostgreSQL one every replica
 * shares (connected, its schema migrated or checked). A PostgreSQL that cannot be reached fails here,
 * naming its URL (password hidden), so a replica never starts without its ledger.
 */
export async function openLedgerStore(
  settings: LedgerStoreSettings,
  options: { migrate?: boolean } = {},
): Promise<LedgerStore> {
  if (settings.ledger.store === 'postgres') {
    try {
      return await PostgresLedgerStore.open(settings.ledger.url as string, {
        migrate: options.migrate ?? settings.ledger.migrate,
        retentionDays: settings.ledger.retentionDays ?? null,
        maxPendingSummaries: settings.maxPendingUsageQueries,
      });
    } catch (error) {
      // open's message names the URL (password hidden) and what went wrong: that is what to print.
      throw new StartupError(`ledger: ${(error as Error).message}`, { cause: error });
    }
  }
  return new SqliteLedgerStore(sqliteLedgerPath(settings), {
    maxPendingSummaries: settings.maxPendingUsageQueries,
  });
}

/** `openLedgerStore`'s settings from the whole configuration. */
export function ledgerStoreSettings(config: {
  ledger: LedgerConfig;
  dataDir: string;
  metering: { ledgerPath?: string | undefined; maxPendingUsageQueries: number };
}): LedgerStoreSettings {
  return {
    ledger: config.ledger,
    ledgerPath: config.metering.ledgerPath,
    dataDir: config.dataDir,
    maxPendingUsageQueries: config.metering.maxPendingUsageQueries,
  };
}
