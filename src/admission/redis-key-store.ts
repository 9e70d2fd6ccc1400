import type { Redis } from 'ioredis';
import type { ApiKey } from './api-key.js';
import type { KeyStore, NewApiKey } from './key-store.js';

const keysHash = 'gravity:keys';
const changedChannel = 'gravity:keys:changed';

/** A key as stored in the hash: JSON, the secret's hash in base64. */
type StoredKey = Omit<ApiKey, 'secretSha256'> & { secretSha256: string };

function stored(key: ApiKey): string {
  return JSON.stringify({ ...key, secretSha256: key.secretSha256.toString('base64') } satisfies StoredKey);
}

function parsed(json: string): ApiKey {
  const key = JSON.parse(json) as StoredKey;
  return { ...key, secretSha256: Buffer.from(key.secretSha256, 'base64') };
}

/** Sets `revokedAtMs` once, atomically, and tells every replica. KEYS: hash; ARGV: id, at, channel. */
const revokeScript = `
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return nil end
local key = cjson.decode(json)
if key.revokedAtMs == nil or key.revokedAtMs == cjson.null then
  key.revokedAtMs = tonumber(ARGV[2])
  json = cjson.encode(key)
  redis.call('HSET', KEYS[1], ARGV[1], json)
end
redis.call('PUBLISH', ARGV[3], ARGV[1])
return json
`;

/** Puts back a key Redis lost, unless it holds it revoked. KEYS: hash; ARGV: id, json. */
const restoreScript = `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local key = cjson.decode(current)
  if key.revokedAtMs ~= nil and key.revokedAtMs ~= cjson.null then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`;

/**
 * Keys in Redis (`state.store: redis`), shared by every replica and by `gravity keys`. `KeyStore` is
 * synchronous (the Authenticator reads it on the request path), so each process keeps a mirror of the
 * whole set in memory: loaded at open, updated within milliseconds by a publish on every change, and
 * reloaded whenever the subscription reconnects (messages sent meanwhile are lost) and every `reloadMs`. A revocation anywhere thus
 * reaches every replica's mirror at once, and its Authenticator within `auth.keyCacheMs`.
 *
 * While Redis is away the mirror keeps answering: known keys keep working, and a revocation made
 * elsewhere is seen when Redis is back.
 */
export class RedisKeyStore implements KeyStore {
  private readonly mirror = new Map<string, ApiKey>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly failures: Error[] = [];
  private reloadTimer: NodeJS.Timeout | undefined;
  /** Servers put back what Redis lost; a CLI store, which inserts, never does. */
  private restores = false;
  private subscriber: Redis | undefined;

  private constructor(private readonly redis: Redis) {}

  /**
   * `watch`: follow changes (a server); a CLI command that reads or writes once passes false.
   * The connection is the caller's, and is closed with the store.
   */
  static async open(redis: Redis, options: { watch: boolean; reloadMs?: number }): Promise<RedisKeyStore> {
    const store = new RedisKeyStore(redis);
    await store.reload();
    if (options.watch) {
      store.restores = true;
      const subscriber = redis.duplicate({ enableOfflineQueue: true });
      subscriber.on('error', () => {});
      store.subscriber = subscriber;
      subscriber.on('message', (_channel: string, id: string) => store.refresh(id));
      await subscriber.subscribe(changedChannel);
      const reload = () =>
        store.reload().catch(() => {
          // Redis away: the mirror keeps answering until it is back.
        });
      // Messages published while the subscriber was disconnected are lost: read everything on reconnect.
      subscriber.on('ready', reload);
      store.reloadTimer = setInterval(reload, options.reloadMs ?? 5000);
      store.reloadTimer.unref();
    }
    return store;
  }

  insert(key: NewApiKey): void {
    if (this.mirror.has(key.id)) throw new Error(`a key with id ${key.id} exists`);
    const full: ApiKey = { ...key, revokedAtMs: null };
    this.mirror.set(key.id, full);
    this.track(
      this.redis.hsetnx(keysHash, key.id, stored(full)).then(async (created) => {
        if (created === 0) throw new Error(`a key with id ${key.id} exists`);
        await this.redis.publish(changedChannel, key.id);
      }),
    );
  }

  find(id: string): ApiKey | null {
    return this.mirror.get(id) ?? null;
  }

  list(): ApiKey[] {
    return [...this.mirror.values()].sort(
      (a, b) => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    );
  }

  revoke(id: string, atMs: number): ApiKey | null {
    const key = this.mirror.get(id);
    if (!key) return null;
    if (key.revokedAtMs === null) this.mirror.set(id, { ...key, revokedAtMs: Math.round(atMs) });
    this.track(this.redis.eval(revokeScript, 1, keysHash, id, Math.round(atMs), changedChannel));
    return this.mirror.get(id) ?? null;
  }

  count(): number {
    return this.mirror.size;
  }

  /** Waits for this process's writes to reach Redis; throws the first that failed. */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.pending]);
    const failure = this.failures.shift();
    if (failure) throw failure;
  }

  close(): void {
    clearInterval(this.reloadTimer);
    this.subscriber?.disconnect();
    // QUIT after whatever is queued: writes not yet flushed still reach Redis.
    this.redis.quit().catch(() => this.redis.disconnect());
  }

  private track(write: Promise<unknown>): void {
    const tracked = write.catch((error: Error) => {
      this.failures.push(error);
    });
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
  }

  private async reload(): Promise<void> {
    const all = await this.redis.hgetall(keysHash);
    const lost: ApiKey[] = [];
    // Only add and replace: a key is never deleted, and one inserted here may not be stored yet.
    for (const json of Object.values(all)) {
      const key = parsed(json);
      const known = this.mirror.get(key.id);
      // Revocation is for good: a Redis that lost one (restarted without persistence) does not undo it.
      if (known && known.revokedAtMs !== null && key.revokedAtMs === null) lost.push(known);
      else this.mirror.set(key.id, key);
    }
    if (!this.restores) return;
    for (const key of this.mirror.values()) if (!Object.hasOwn(all, key.id)) lost.push(key);
    // A Redis that came back empty gets the keys back from the replicas' mirrors, so that a replica
    // starting now (or `gravity keys list`) does not find the fleet keyless, and open.
    for (const key of lost) await this.redis.eval(restoreScript, 1, keysHash, key.id, stored(key));
  }

  private refresh(id: string): void {
    this.redis
      .hget(keysHash, id)
      .then((json) => {
        if (json) this.mirror.set(id, parsed(json));
      })
      .catch(() => {
        // The next reload brings it.
      });
  }
}
