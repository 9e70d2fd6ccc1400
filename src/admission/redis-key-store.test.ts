import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../../test/support/redis-server.js';
import { hashSecret } from './api-key.js';
import type { NewApiKey } from './key-store.js';
import { connectRedis } from './redis-connection.js';
import { RedisKeyStore } from './redis-key-store.js';

/** Keys in Redis: what one process writes, another's mirror sees at once (a publish), or on its reload. */
let server: RedisServer;

beforeAll(async () => {
  server = await startRedis();
}, 30_000);

afterAll(async () => {
  await server?.close();
});

function newKey(id: string, createdAtMs: number): NewApiKey {
  return {
    id,
    prefix: `gk-${id}-abcd`,
    secretSha256: hashSecret(`secret-${id}`),
    tenant: 'acme',
    defaultTier: 'default',
    allowedTiers: ['default', 'flex'],
    limits: { rpm: 10, spendUsd: 2.5, period: 'day' },
    admin: false,
    createdAtMs,
  };
}

async function until(condition: () => boolean, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return true;
}

async function open(watch: boolean, reloadMs?: number): Promise<RedisKeyStore> {
  return RedisKeyStore.open(await connectRedis(server.url, { commandTimeoutMs: 1000 }), { watch, reloadMs });
}

describe('RedisKeyStore', () => {
  it('shows a key created by one process, and its revocation, to a watching one within milliseconds', async () => {
    // The server's store reloads only once a minute here: what it sees in time came by the publish.
    const replica = await open(true, 60_000);
    const cli = await open(false);
    cli.insert(newKey('aaaaaaaaaaa1', 1000));
    await cli.flush();
    expect(await until(() => replica.find('aaaaaaaaaaa1') !== null, 500)).toBe(true);
    const seen = replica.find('aaaaaaaaaaa1');
    expect(seen?.secretSha256.equals(hashSecret('secret-aaaaaaaaaaa1'))).toBe(true);
    expect(seen).toMatchObject({ tenant: 'acme', limits: { rpm: 10, spendUsd: 2.5, period: 'day' } });

    expect(cli.revoke('aaaaaaaaaaa1', 5000)?.revokedAtMs).toBe(5000);
    await cli.flush();
    expect(await until(() => replica.find('aaaaaaaaaaa1')?.revokedAtMs === 5000, 500)).toBe(true);
    // Idempotent: the first revocation's time stays.
    const again = await open(false);
    expect(again.revoke('aaaaaaaaaaa1', 9000)?.revokedAtMs).toBe(5000);
    await again.flush();
    expect((await open(false)).find('aaaaaaaaaaa1')?.revokedAtMs).toBe(5000);
    for (const store of [replica, cli, again]) store.close();
  });

  it('puts keys back, revoked ones revoked, when Redis comes back empty', async () => {
    const replica = await open(true, 100);
    const cli = await open(false);
    cli.insert(newKey('ccccccccccc1', 1000));
    cli.insert(newKey('ccccccccccc2', 1001));
    cli.revoke('ccccccccccc2', 2000);
    await cli.flush();
    cli.close();
    expect(await until(() => replica.find('ccccccccccc2')?.revokedAtMs === 2000, 500)).toBe(true);
    await server.restart();
    let restored: RedisKeyStore | undefined;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const reader = await open(false);
      if (reader.find('ccccccccccc1') && reader.find('ccccccccccc2')) {
        restored = reader;
        break;
      }
      reader.close();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(restored?.find('ccccccccccc1')?.revokedAtMs).toBeNull();
    expect(restored?.find('ccccccccccc2')?.revokedAtMs).toBe(2000);
    restored?.close();
    replica.close();
  }, 20_000);

  it('lists oldest first, counts revoked keys, refuses a duplicate id, and knows no unknown id', async () => {
    const store = await open(false);
    store.insert(newKey('bbbbbbbbbbb2', 3000));
    store.insert(newKey('bbbbbbbbbbb1', 2000));
    await store.flush();
    const fresh = await open(false);
    const ids = fresh.list().map((key) => key.id);
    expect(ids.indexOf('bbbbbbbbbbb1')).toBeLessThan(ids.indexOf('bbbbbbbbbbb2'));
    expect(fresh.count()).toBe(ids.length);
    expect(() => fresh.insert(newKey('bbbbbbbbbbb1', 4000))).toThrow(/exists/);
    expect(fresh.find('ffffffffffff')).toBeNull();
    expect(fresh.revoke('ffffffffffff', 1)).toBeNull();
    store.close();
    fresh.close();
  });
});
