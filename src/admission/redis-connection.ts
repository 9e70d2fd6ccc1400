import { Redis } from 'ioredis';
import { redactedUrl } from '../core/redacted-url.js';
import { StartupError } from '../core/startup-error.js';

/**
 * Connects to the shared-state Redis, or throws a StartupError naming it (password hidden): a replica
 * that cannot reach its Redis at start must not serve with limits of its own.
 *
 * After the start the connection reconnects on its own, and commands fail at once while it is down
 * (no offline queue) or after `commandTimeoutMs`: admission then decides as `state.onUnavailable` says,
 * instead of requests piling up behind a dead socket.
 */
export async function connectRedis(
  url: string,
  options: { commandTimeoutMs: number; connectTimeoutMs?: number },
): Promise<Redis> {
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: options.connectTimeoutMs ?? 5000,
    // Back within a second of Redis coming back, without hammering it while it is away.
    retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
  });
  // Without a listener ioredis prints every reconnection failure; the callers log what matters.
  let socketError: Error | undefined;
  redis.on('error', (error: Error) => {
    socketError = error;
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    redis.disconnect();
    // `connect` says only "Connection is closed"; the socket's error says why (ECONNREFUSED …).
    const reason = socketError ?? (error as Error);
    throw new StartupError(`state: cannot reach Redis at ${redactedUrl(url)}: ${reason.message}`, {
      cause: error,
    });
  }
  return redis;
}
