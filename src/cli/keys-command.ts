import Table from 'cli-table3';
import type { Command } from 'commander';
import {
  type ApiKey,
  anonymousTenant,
  displayPrefix,
  generateApiKey,
  hashSecret,
  type Limits,
  parseApiKey,
  type SpendPeriod,
  spendPeriods,
  tenantNamePattern,
} from '../admission/api-key.js';
import type { KeyStore } from '../admission/key-store.js';
import { keysPathOf } from '../admission/open-mode.js';
import type { RedisKeyStore } from '../admission/redis-key-store.js';
import { openSharedKeyStore } from '../admission/shared-state.js';
import { SqliteKeyStore } from '../admission/sqlite-key-store.js';
import { loadConfig } from '../config/load-config.js';
import { ConfigError } from '../core/config-error.js';
import { type GrantableTier, grantableTiers, tiersGrantedByDefault } from '../core/service-tiers.js';
import { StartupError } from '../core/startup-error.js';

/** A mistake in the command's arguments: printed as is, exit status 2. */
export class KeysCommandError extends Error {
  override name = 'KeysCommandError';
}

export interface CreateKeyOptions {
  tenant: string;
  defaultTier?: string | undefined;
  /** Comma-separated, or a list. */
  tiers?: string | readonly string[] | undefined;
  rpm?: number | undefined;
  tpm?: number | undefined;
  concurrency?: number | undefined;
  spendUsd?: number | undefined;
  period?: string | undefined;
  admin?: boolean | undefined;
}

function tierOf(value: string, flag: string): GrantableTier {
  if (!(grantableTiers as readonly string[]).includes(value))
    throw new KeysCommandError(`${flag}: unknown tier '${value}' (expected ${grantableTiers.join(', ')})`);
  return value as GrantableTier;
}

/**
 * Creates a key and stores its hash. The returned `key` is the only time the secret exists outside the
 * client: it cannot be shown again.
 */
export function createKey(
  store: KeyStore,
  options: CreateKeyOptions,
  nowEpochMs = Date.now(),
): { key: string; record: ApiKey } {
  if (!tenantNamePattern.test(options.tenant))
    throw new KeysCommandError(
      `--tenant: '${options.tenant}' is not a tenant name (letters, digits, '.', '_', '-'; up to 64)`,
    );
  if (options.tenant === anonymousTenant)
    throw new KeysCommandError(`--tenant: '${anonymousTenant}' is reserved for requests without a key`);
  const defaultTier = tierOf(options.defaultTier ?? 'default', '--default-tier');
  const listed =
    options.tiers === undefined
      ? undefined
      : (typeof options.tiers === 'string' ? options.tiers.split(',') : [...options.tiers])
          .map((tier) => tier.trim())
          .filter(Boolean)
          .map((tier) => tierOf(tier, '--tiers'));
  let allowedTiers: GrantableTier[];
  if (listed === undefined) {
    allowedTiers = [...new Set([...tiersGrantedByDefault, defaultTier])];
  } else {
    if (!listed.includes(defaultTier))
      throw new KeysCommandError(`--tiers must include the default tier '${defaultTier}'`);
    allowedTiers = [...new Set(listed)];
  }
  const period = options.period ?? 'month';
  if (!(spendPeriods as readonly string[]).includes(period))
    throw new KeysCommandError(`--period: expected ${spendPeriods.join(' or ')}, got '${period}'`);
  const limits: Limits = { period: period as SpendPeriod };
  for (const [name, value, integer] of [
    ['rpm', options.rpm, true],
    ['tpm', options.tpm, true],
    ['concurrency', options.concurrency, true],
    ['spend-usd', options.spendUsd, false],
  ] as const) {
    if (value === undefined) continue;
    if (!Number.isFinite(value) || value < 0 || (integer && (!Number.isInteger(value) || value < 1)))
      throw new KeysCommandError(
        `--${name}: expected a ${integer ? 'positive integer' : 'number ≥ 0'}, got ${value}`,
      );
  }
  limits.rpm = options.rpm;
  limits.tpm = options.tpm;
  limits.concurrency = options.concurrency;
  limits.spendUsd = options.spendUsd;

  // An id collision (48 random bits) is astronomically rare; the primary key would refuse it anyway.
  const { id, secret, key } = generateApiKey();
  const record: ApiKey = {
    id,
    prefix: displayPrefix(id, secret),
    secretSha256: hashSecret(secret),
    tenant: options.tenant,
    defaultTier,
    allowedTiers,
    limits,
    admin: options.admin === true,
    createdAtMs: nowEpochMs,
    revokedAtMs: null,
  };
  store.insert(record);
  return { key, record };
}

/** Revokes by id, or by the key itself (its id is read from it). Idempotent. */
export function revokeKey(store: KeyStore, idOrKey: string, nowEpochMs = Date.now()): ApiKey {
  const id = parseApiKey(idOrKey)?.id ?? idOrKey.replace(/^gk-/, '');
  const revoked = store.revoke(id, nowEpochMs);
  if (!revoked) throw new KeysCommandError(`no key with id '${idOrKey}'`);
  return revoked;
}

/** A key as `keys list --format json` shows it: everything but the secret (and its hash). */
export function keyJson(key: ApiKey) {
  return {
    id: key.id,
    prefix: key.prefix,
    tenant: key.tenant,
    default_tier: key.defaultTier,
    allowed_tiers: key.allowedTiers,
    rpm: key.limits.rpm ?? null,
    tpm: key.limits.tpm ?? null,
    concurrency: key.limits.concurrency ?? null,
    spend_usd: key.limits.spendUsd ?? null,
    period: key.limits.period,
    admin: key.admin,
    created_at: new Date(key.createdAtMs).toISOString(),
    revoked_at: key.revokedAtMs === null ? null : new Date(key.revokedAtMs).toISOString(),
  };
}

/** `keys list` output: a table, or JSON. Never a secret: the store holds none. */
export function formatKeyList(keys: readonly ApiKey[], format: 'table' | 'json'): string {
  if (format === 'json') return `${JSON.stringify({ object: 'list', data: keys.map(keyJson) }, null, 2)}\n`;
  if (keys.length === 0)
    return 'No keys: the server is open on loopback (gravity keys create --tenant <name>).\n';
  const table = new Table({
    head: [
      'id',
      'prefix',
      'tenant',
      'tiers',
      'rpm',
      'tpm',
      'concurrent',
      'spend $',
      'admin',
      'created',
      'revoked',
    ],
    style: { head: [], border: [] },
  });
  const orDash = (value: number | undefined) => (value === undefined ? '–' : String(value));
  for (const key of keys) {
    table.push([
      key.id,
      `${key.prefix}…`,
      key.tenant,
      key.allowedTiers.map((tier) => (tier === key.defaultTier ? `${tier}*` : tier)).join(','),
      orDash(key.limits.rpm),
      orDash(key.limits.tpm),
      orDash(key.limits.concurrency),
      key.limits.spendUsd === undefined ? '–' : `${key.limits.spendUsd}/${key.limits.period}`,
      key.admin ? 'yes' : '',
      new Date(key.createdAtMs).toISOString().slice(0, 19).replace('T', ' '),
      key.revokedAtMs === null ? '' : new Date(key.revokedAtMs).toISOString().slice(0, 19).replace('T', ' '),
    ]);
  }
  return `${table.toString()}\n(* default tier)\n`;
}

function numberOption(value: string): number {
  const parsed = Number(value);
  if (value.trim() === '' || !Number.isFinite(parsed)) throw new Error(`expected a number, got '${value}'`);
  return parsed;
}

interface StoreOptions {
  config?: string;
  dataDir?: string;
  keys?: string;
}

/**
 * Opens the key store the configuration names (the one `gravity serve` reads, live or not): the shared
 * Redis one with `state.store: redis` (GRAVITY_STATE_URL), unless `--keys` names a file.
 */
async function openStore(
  options: StoreOptions,
): Promise<{ store: KeyStore; path: string; shared?: RedisKeyStore }> {
  let keysPath = options.keys;
  if (!keysPath) {
    const config = loadConfig({ configPath: options.config, dataDir: options.dataDir });
    if (config.state.store === 'redis') {
      const shared = await openSharedKeyStore(config.state);
      return { store: shared, path: 'the shared Redis (state.url)', shared };
    }
    keysPath = keysPathOf(config);
  }
  return { store: new SqliteKeyStore(keysPath), path: keysPath };
}

/**
 * Runs an action on the store; argument and config mistakes exit 2 with their message, an unreachable
 * Redis exits 1. With Redis, the action's writes have reached it before this returns.
 */
async function withStore(
  options: StoreOptions,
  action: (store: KeyStore, path: string) => (() => void) | undefined,
) {
  let opened: Awaited<ReturnType<typeof openStore>> | undefined;
  try {
    opened = await openStore(options);
    const print = action(opened.store, opened.path);
    // Printed only once stored: a key shown but never saved would be worse than an error.
    await opened.shared?.flush();
    print?.();
  } catch (error) {
    if (error instanceof StartupError) {
      process.stderr.write(`gravity: ${error.message}\n`);
      process.exitCode = 1;
      return;
    }
    if (!(error instanceof KeysCommandError || error instanceof ConfigError)) throw error;
    process.stderr.write(`gravity: ${error.message}\n`);
    process.exitCode = 2;
  } finally {
    opened?.store.close();
  }
}

function storeOptions(command: Command): Command {
  return command
    .option('-c, --config <file>', 'YAML configuration (to find the key store)')
    .option('--data-dir <dir>', 'data directory (default .gravity): keys live in <dataDir>/keys.sqlite')
    .option('--keys <file>', 'key store file (default: auth.keysPath, or <dataDir>/keys.sqlite)');
}

export function registerKeysCommand(program: Command): void {
  const keys = program
    .command('keys')
    .description('Create, list and revoke API keys (a running server sees changes within auth.keyCacheMs)');

  storeOptions(keys.command('create'))
    .description('Create a key for a tenant; the key is printed once and stored only as a hash')
    .requiredOption('--tenant <name>', 'the tenant the key acts for')
    .option(
      '--default-tier <tier>',
      `tier for service_tier auto or absent (${grantableTiers.join('|')})`,
      'default',
    )
    .option(
      '--tiers <list>',
      `comma-separated tiers the key may use (default: ${tiersGrantedByDefault.join(',')})`,
    )
    .option('--rpm <n>', 'requests per minute', numberOption)
    .option('--tpm <n>', 'tokens per minute (prompt + completion)', numberOption)
    .option('--concurrency <n>', 'requests in flight at once', numberOption)
    .option('--spend-usd <usd>', 'spend budget per period, in USD', numberOption)
    .option('--period <period>', 'budget period: day or month (UTC)', 'month')
    .option('--admin', 'may read every tenant’s usage and /metrics from anywhere')
    .option('-f, --format <format>', 'text or json', 'text')
    .action(async (options) => {
      await withStore(options, (store, path) => {
        const { key, record } = createKey(store, options);
        return () => {
          if (options.format === 'json') {
            process.stdout.write(`${JSON.stringify({ ...keyJson(record), key }, null, 2)}\n`);
            return;
          }
          process.stderr.write(
            `Created key ${record.id} for tenant ${record.tenant} in ${path}.\n` +
              'Store it now: it is shown only this once.\n',
          );
          process.stdout.write(`${key}\n`);
        };
      });
    });

  storeOptions(keys.command('list'))
    .description('List keys (never their secrets)')
    .option('--tenant <name>', 'only this tenant’s keys')
    .option('-f, --format <format>', 'table or json', 'table')
    .action(async (options) => {
      await withStore(options, (store) => {
        if (options.format !== 'table' && options.format !== 'json')
          throw new KeysCommandError(`--format must be table or json, not '${options.format}'`);
        const listed = store.list().filter((key) => !options.tenant || key.tenant === options.tenant);
        process.stdout.write(formatKeyList(listed, options.format));
        return undefined;
      });
    });

  storeOptions(keys.command('revoke'))
    .description('Revoke a key by id (or by the key itself); it stops working within auth.keyCacheMs')
    .argument('<id>', 'the key id, as keys list shows it')
    .action(async (id: string, options) => {
      await withStore(options, (store) => {
        const revoked = revokeKey(store, id);
        return () =>
          process.stdout.write(
            `Revoked key ${revoked.id} (tenant ${revoked.tenant}) at ${new Date(revoked.revokedAtMs ?? 0).toISOString()}\n`,
          );
      });
    });
}
