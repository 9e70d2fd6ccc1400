import type { Command } from 'commander';
import { redactedUrl } from '../core/redacted-url.js';
import { StartupError } from '../core/startup-error.js';
import {
  ledgerStoreSettings,
  openLedgerStore,
  sqliteLedgerPath,
} from '../metering/ledger/open-ledger-store.js';
import { migrateLedger, postgresConnection } from '../metering/ledger/postgres-migrations.js';
import { configOrExit } from './config-or-exit.js';

/**
 * `gravity migrate`: brings the configured ledger's schema up to date and says what it applied. For a
 * fleet on PostgreSQL run it once before rolling out a version whose replicas start with
 * `ledger.migrate: false`; replicas with the default migrate at start themselves, under a lock.
 */
export function registerMigrateCommand(program: Command): void {
  program
    .command('migrate')
    .description("Apply the ledger schema's pending migrations (PostgreSQL; a SQLite ledger creates its own)")
    .option('-c, --config <file>', 'YAML configuration (to find the ledger)')
    .option('--data-dir <dir>', 'data directory (default .gravity)')
    .action(async (options) => {
      const config = configOrExit({ configPath: options.config, dataDir: options.dataDir });
      const settings = ledgerStoreSettings(config);
      if (settings.ledger.store === 'sqlite') {
        // SQLite's schema is created (and kept) by the store itself when it opens the file.
        const store = await openLedgerStore(settings);
        await store.close();
        process.stdout.write(`Ledger: ${sqliteLedgerPath(settings)} (SQLite) is up to date\n`);
        return;
      }
      const url = settings.ledger.url as string;
      let sql: Awaited<ReturnType<typeof postgresConnection>>;
      try {
        sql = await postgresConnection(url);
      } catch (error) {
        process.stderr.write(`gravity: ledger: ${(error as Error).message}\n`);
        process.exit(1);
      }
      try {
        const applied = await migrateLedger(sql);
        process.stdout.write(
          applied.length === 0
            ? `Ledger: ${redactedUrl(url)} is up to date\n`
            : `Ledger: ${redactedUrl(url)}: applied ${applied.join(', ')}\n`,
        );
      } catch (error) {
        if (error instanceof StartupError) {
          process.stderr.write(`gravity: ${error.message}\n`);
          process.exit(1);
        }
        throw error;
      } finally {
        await sql.end();
      }
    });
}
