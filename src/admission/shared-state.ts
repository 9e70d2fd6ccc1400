import type { Redis } from 'ioredis';
import type { Clock } from '../core/clock.js';
import type { StateConfig } from './admission-config.js';
import { connectRedis } from './redis-connection.js';
import { RedisKeyStore } from './redis-key-store.js';
import { RedisLimiter } from './redis-limiter.js';

/** What `state.store: redis` opens for a server: the shared key store and the shared limiter. */
export interface SharedState {
  keys: RedisKeyStore;
  limiter: RedisLimiter;
  /** A connection for the gateway's fleet sync (VTC counters, replica health): its rounds never delay admissions. */
  fleetConnection: Redis;
  close(): void;
}

/**
 * Connects to the state Redis (a StartupError naming it when it cannot be reached) and opens the shared
 * keys and limits. Keys and limits use separate connections: a key reload never waits behind admissions.
 */
export async function openSharedState(
  state: StateConfig,
  options: { clock: Clock; log: (message: string, details: Record<string, unknown>) => void },
): Promise<SharedState> {
  const url = state.url as string;
  const limitsConnection = await connectRedis(url, { commandTimeoutMs: state.timeoutMs });
  let keysConnection: Redis | undefined;
  let fleetConnection: Redis | undefined;
  try {
    keysConnection = await connectRedis(url, { commandTimeoutMs: 5000 });
    const fleet = await connectRedis(url, { commandTimeoutMs: state.timeoutMs });
    fleetConnection = fleet;
    const keys = await RedisKeyStore.open(keysConnection, { watch: true });
    const limiter = new RedisLimiter({
      redis: limitsConnection,
      clock: options.clock,
      leaseMs: state.leaseMs,
      log: options.log,
    });
    return {
      keys,
      limiter,
      fleetConnection: fleet,
      close() {
        limiter.close();
        keys.close();
        fleet.disconnect();
        limitsConnection.disconnect();
      },
    };
  } catch (error) {
    fleetConnection?.disconnect();
    keysConnection?.disconnect();
    limitsConnection.disconnect();
    throw error;
  }
}

/** Opens the shared key store alone, for `gravity keys`: no watching, the caller closes it. */
export async function openSharedKeyStore(state: StateConfig): Promise<RedisKeyStore> {
  const connection = await connectRedis(state.url as string, { commandTimeoutMs: 5000 });
  try {
    return await RedisKeyStore.open(connection, { watch: false });
  } catch (error) {
    connection.disconnect();
    throw error;
  }
}
