import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { GrantableTier } from '../core/service-tiers.js';

export type SpendPeriod = 'day' | 'month';
export const spendPeriods = ['day', 'month'] as const satisfies readonly SpendPeriod[];

/**
 * Limits of one key or one tenant; an absent figure is no limit. The names follow the `tenants:` config
 * section and the `gravity keys create` flags (`--rpm`, `--tpm`, …), which use OpenAI's own abbreviations.
 */
export interface Limits {
  /** Requests per minute. */
  rpm?: number | undefined;
  /** Tokens per minute: prompt plus completion. */
  tpm?: number | undefined;
  /** Requests in flight at once. */
  concurrency?: number | undefined;
  /** Spend per `period`, in USD, as priced by metering. */
  spendUsd?: number | undefined;
  /** Calendar period (UTC) over which `spendUsd` is summed. */
  period: SpendPeriod;
}

/** A stored key, as the key store returns it: never the secret, only its hash. */
export interface ApiKey {
  /** Public identifier, also embedded in the key itself so a lookup needs no scan. */
  id: string;
  /** What lists and logs show: `gk-<id>-` and the secret's first four characters. */
  prefix: string;
  secretSha256: Buffer;
  tenant: string;
  defaultTier: GrantableTier;
  allowedTiers: GrantableTier[];
  limits: Limits;
  /** Admin keys read every tenant's usage and the fleet's figures. */
  admin: boolean;
  createdAtMs: number;
  revokedAtMs: number | null;
}

/** Tenant names appear in the ledger and in metric labels; `anonymous` is what open mode records. */
export const tenantNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const anonymousTenant = 'anonymous';

const keyPrefix = 'gk-';
const idHexLength = 12;
const secretBytes = 32;
/** `gk-<12 hex id>-<43 base64url characters: 256 random bits>`. */
const keyPattern = /^gk-([0-9a-f]{12})-([A-Za-z0-9_-]{43})$/;

export function newKeyId(): string {
  return randomBytes(idHexLength / 2).toString('hex');
}

/** A fresh key: its id, its secret and the full string the client sends. */
export function generateApiKey(id = newKeyId()): { id: string; secret: string; key: string } {
  const secret = randomBytes(secretBytes).toString('base64url');
  return { id, secret, key: `${keyPrefix}${id}-${secret}` };
}

/** Splits a presented key into id and secret; null when it is not shaped like a Gravity key. */
export function parseApiKey(key: string): { id: string; secret: string } | null {
  const match = keyPattern.exec(key);
  if (!match) return null;
  return { id: match[1] as string, secret: match[2] as string };
}

export function displayPrefix(id: string, secret: string): string {
  return `${keyPrefix}${id}-${secret.slice(0, 4)}`;
}

/**
 * SHA-256, not a slow KDF: the secret is 256 bits from the CSPRNG, so there is no dictionary to try and
 * a stolen hash cannot be reversed by brute force whatever the hash speed. Slow KDFs (scrypt, argon2)
 * protect low-entropy passwords; here they would only add milliseconds to every request.
 */
export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** Constant-time: how much of the hash matched must not show in the time the check takes. */
export function secretMatches(secret: string, expectedSha256: Buffer): boolean {
  const presented = hashSecret(secret);
  return presented.length === expectedSha256.length && timingSafeEqual(presented, expectedSha256);
}

/**
 * How an error message shows a presented key: its first characters and last four, as OpenAI does
 * (`Incorrect API key provided: gk-3f9a***wxyz`). The client sent it, so this leaks nothing new, and a
 * reader can still tell which of their keys it was.
 */
export function redactKey(key: string): string {
  if (key.length <= 12) return `${key.slice(0, 3)}***`;
  return `${key.slice(0, 7)}***${key.slice(-4)}`;
}
