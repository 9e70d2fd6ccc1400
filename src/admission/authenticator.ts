import type { Clock } from '../core/clock.js';
import { errors } from '../core/errors.js';
import { type ApiKey, parseApiKey, redactKey, secretMatches } from './api-key.js';
import type { KeyStore } from './key-store.js';
import { type Caller, keyCaller, openModeCaller } from './request-caller.js';

/**
 * Turns an `Authorization` header into a Caller, or a 401. Keys are read from the store on first use and
 * trusted for `cacheMs`, then read again: a key created or revoked with `gravity keys` while the server
 * runs takes effect within `cacheMs`, and a request for a known key costs a Map lookup and one SHA-256.
 */
export class Authenticator {
  private readonly cache = new Map<string, { key: ApiKey; readAtMs: number }>();
  /** Once any key exists the server is never open again, even if every key is revoked. */
  private keysExist = false;
  private keysCheckedAtMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly options: {
      store: KeyStore;
      clock: Clock;
      /** How long a key read from the store is trusted before it is read again. */
      cacheMs: number;
      /** Demand a key even while none exist (every request is refused until one is created). */
      required: boolean;
    },
  ) {}

  /** Open mode: no key was ever created and none is required; every caller is anonymous. */
  isOpen(): boolean {
    if (this.options.required || this.keysExist) return false;
    const nowMs = this.options.clock.nowMs();
    if (nowMs - this.keysCheckedAtMs >= this.options.cacheMs) {
      this.keysCheckedAtMs = nowMs;
      this.keysExist = this.options.store.count() > 0;
    }
    return !this.keysExist;
  }

  /** The caller for a request's `Authorization` header value; throws the 401 to answer otherwise. */
  authenticate(authorization: string | undefined): Caller {
    const token = bearerToken(authorization);
    if (this.isOpen()) {
      // A Gravity key in open mode may be one created moments ago: if the store knows it, the server is
      // no longer open, and this request is the key's, not anonymous.
      const candidate = token === null ? null : parseApiKey(token);
      if (candidate === null || this.lookUp(candidate.id) === null) return openModeCaller;
      this.keysExist = true;
    }
    if (token === null) throw errors.missingApiKey();
    const parsed = parseApiKey(token);
    if (!parsed) throw errors.invalidApiKey(redactKey(token));
    const key = this.lookUp(parsed.id);
    // An unknown id is refused without a hash comparison: ids are not secret (lists and logs show them),
    // so that timing reveals nothing. The secret itself is only ever compared in constant time.
    if (!key || !secretMatches(parsed.secret, key.secretSha256)) throw errors.invalidApiKey(redactKey(token));
    if (key.revokedAtMs !== null) throw errors.revokedApiKey(key.prefix);
    return keyCaller(key);
  }

  /** A key by id, revoked or not, cached like every lookup; null when the store has none. */
  keyById(id: string): ApiKey | null {
    return this.lookUp(id);
  }

  private lookUp(id: string): ApiKey | null {
    const nowMs = this.options.clock.nowMs();
    const cached = this.cache.get(id);
    if (cached && nowMs - cached.readAtMs < this.options.cacheMs) return cached.key;
    // Unknown ids are not cached: ids are random, so a cache of misses would only grow.
    const key = this.options.store.find(id);
    if (key) this.cache.set(id, { key, readAtMs: nowMs });
    else this.cache.delete(id);
    return key;
  }
}

/** The token of `Bearer <token>` (the scheme is case-insensitive, as RFC 9110 says); null if absent. */
function bearerToken(authorization: string | undefined): string | null {
  if (!authorization) return null;
  const match = /^bearer\s+(\S+)\s*$/i.exec(authorization);
  return match ? (match[1] as string) : null;
}
