import type { ApiKey } from './api-key.js';

/** What `gravity keys create` stores: everything about a key but its secret, which it gives as a hash. */
export type NewApiKey = Omit<ApiKey, 'revokedAtMs'>;

/**
 * Where keys live. Synchronous on purpose: the embedded SQLite store answers a lookup by primary key in
 * microseconds, and `Authenticator` caches what it reads, so the request path never waits on I/O for a
 * key it has seen. A networked store would sit behind the same cache.
 */
export interface KeyStore {
  /** Fails if the id exists. */
  insert(key: NewApiKey): void;
  /** The key with this id, revoked or not; null when there is none. */
  find(id: string): ApiKey | null;
  /** Every key, oldest first. */
  list(): ApiKey[];
  /** Marks the key revoked at `atMs`; returns it, or null when there is no such key. Idempotent. */
  revoke(id: string, atMs: number): ApiKey | null;
  /** How many keys were ever created, revoked ones included. */
  count(): number;
  close(): void;
}
