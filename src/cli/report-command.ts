import { existsSync } from 'node:fs';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { parseGroupBy } from '../api/usage-route.js';
import { redactedUrl } from '../core/redacted-url.js';
import { StartupError } from '../core/startup-error.js';
import type { LedgerStore } from '../metering/ledger/ledger-store.js';
import {
  ledgerStoreSettings,
  openLedgerStore,
  sqliteLedgerPath,
} from '../metering/ledger/open-ledger-store.js';

import { replicaTotalJson, usageFigureColumns, usageGroupJson } from '../metering/usage-report.js';
import { configOrExit } from './config-or-exit.js';

/** Accepts unix seconds or anything `Date` parses (2026-11-27, 2026-11-27T10:00Z). */
function timeOption(value: string): number {
  const asNumber = Number(value);
  const epochMs = Number.isFinite(asNumber) ? asNumber * 1000 : Date.parse(value);
  if (!Number.isFinite(epochMs)) throw new Error(`not a time: '${value}'`);
  return epochMs;
}

function formatNumber(value: number | null, digits: number): string {
  if (value === null) return '–';
  return value.toFixed(digits);
}

export function registerReportCommand(program: Command): void {
  program
    .command('report')
    .description('Print usage from the ledger: requests, tokens, TTFT, energy, cost, price and margin')
    .option('-c, --config <file>', 'YAML configuration (to find the ledger)')
    .option(
      '--ledger <file>',
      'a SQLite ledger file (default: the configured ledger, else <dataDir>/ledger.sqlite)',
    )
    .option('--data-dir <dir>', 'data directory (default .gravity)')
    .option('--from <time>', 'start, inclusive: unix seconds or a date', timeOption)
    .option('--to <time>', 'end, exclusive: unix seconds or a date', timeOption)
    .option('-g, --group-by <keys>', 'comma-separated: tenant, model, tier, engine, hour, day', '')
    .option('--tenant <tenant>', 'only this tenant')
    .option('-f, --format <format>', 'table, csv or json', 'table')
    .action(async (options) => {
      const config = configOrExit({ configPath: options.config, dataDir: options.dataDir });
      if (!['table', 'csv', 'json'].includes(options.format)) {
        process.stderr.write(`gravity: --format must be table, csv or json, not '${options.format}'\n`);
        process.exit(2);
      }
      let groupBy: ReturnType<typeof parseGroupBy>;
      try {
        groupBy = parseGroupBy(options.groupBy);
      } catch (error) {
        process.stderr.write(`gravity: ${(error as Error).message}\n`);
        process.exit(2);
      }
      // --ledger names a SQLite file, whatever the configuration says.
      const settings = ledgerStoreSettings(config);
      if (options.ledger) {
        settings.ledger = { ...settings.ledger, store: 'sqlite', url: undefined, retentionDays: undefined };
        settings.ledgerPath = options.ledger;
      }
      const postgres = settings.ledger.store === 'postgres';
      const ledgerName = postgres ? redactedUrl(settings.ledger.url as string) : sqliteLedgerPath(settings);
      if (!postgres && !existsSync(ledgerName)) {
        process.stderr.write(
          `gravity: no ledger at ${ledgerName} (has gravity serve run with this data directory?)\n`,
        );
        process.exit(2);
      }
      let store: LedgerStore;
      try {
        // Reading needs the schema as it is: a report never migrates.
        store = await openLedgerStore(settings, { migrate: false });
      } catch (error) {
        if (!(error instanceof StartupError)) throw error;
        process.stderr.write(`gravity: ${error.message}\n`);
        process.exit(1);
      }
      const range = { fromMs: options.from, toMs: options.to };
      // Totalled by SQLite: the report's memory does not grow with the ledger.
      const groups = await store.usageSummary({ ...range, tenant: options.tenant }, groupBy);
      const replicas = (await store.replicaSummary(range)).map(replicaTotalJson);
      await store.close();

      if (options.format === 'json') {
        process.stdout.write(
          `${JSON.stringify({ object: 'list', group_by: groupBy, data: groups.map(usageGroupJson), replicas }, null, 2)}\n`,
        );
        return;
      }
      const rows = groups.map(usageGroupJson);
      if (options.format === 'csv') {
        const columns = [...groupBy, ...usageFigureColumns];
        const csvField = (value: unknown) => {
          const text = Array.isArray(value)
            ? value.join(' ')
            : value === null || value === undefined
              ? ''
              : String(value);
          return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
        };
        process.stdout.write(`${columns.join(',')}\n`);
        for (const row of rows) {
          process.stdout.write(
            `${columns.map((column) => csvField((row as Record<string, unknown>)[column])).join(',')}\n`,
          );
        }
        return;
      }
      const table = new Table({
        head: [
          ...groupBy,
          'requests',
          'failed',
          'prompt tok',
          'cached',
          'completion tok',
          'TTFT p50 ms',
          'TTFT p95 ms',
          'energy J',
          'J/token',
          'energy source',
          'cost $',
          'price $',
          'margin $',
          'gCO2e',
        ],
        style: { head: [], border: [] },
      });
      for (const group of groups) {
        table.push([
          ...groupBy.map((key) => group.group[key] ?? ''),
          group.requests,
          group.failedRequests,
          group.promptTokens,
          group.cachedPromptTokens,
          group.completionTokens,
          formatNumber(group.ttftP50Ms, 1),
          formatNumber(group.ttftP95Ms, 1),
          formatNumber(group.energyJoules, 3),
          formatNumber(group.joulesPerCompletionToken, 4),
          group.energySources.join(' '),
          formatNumber(group.costUsd, 6),
          formatNumber(group.priceUsd, 6),
          formatNumber(group.marginUsd, 6),
          formatNumber(group.carbonGrams, 4),
        ]);
      }
      process.stdout.write(`Ledger: ${ledgerName}\n${table.toString()}\n`);
      if (replicas.length > 0) {
        const replicaTable = new Table({
          head: ['replica', 'energy J', 'idle J', 'source', 'cost $', 'idle cost $'],
          style: { head: [], border: [] },
        });
        for (const replica of replicas) {
          replicaTable.push([
            replica.replica,
            replica.energy_joules.toFixed(3),
            replica.idle_energy_joules.toFixed(3),
            replica.energy_source,
            replica.cost_usd.toFixed(6),
            replica.idle_cost_usd.toFixed(6),
          ]);
        }
        process.stdout.write(
          `Replicas (energy drawn in the range, including idle):\n${replicaTable.toString()}\n`,
        );
      }
    });
}
