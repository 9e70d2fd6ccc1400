import type { LimitSnapshot } from './limiter.js';

/**
 * A duration as OpenAI's `x-ratelimit-reset-*` headers write it (Go's `time.Duration` format): `20ms`,
 * `1s`, `1.5s`, `6m0s`, `1h2m3s`. Rounded up to the millisecond so a client that waits this long finds
 * the capacity there.
 */
export function formatResetDuration(ms: number): string {
  const totalMs = Math.max(0, Math.ceil(ms));
  if (totalMs === 0) return '0s';
  if (totalMs < 1000) return `${totalMs}ms`;
  const hours = Math.floor(totalMs / 3_600_000);
  const minutes = Math.floor((totalMs % 3_600_000) / 60_000);
  const secondsMs = totalMs % 60_000;
  const seconds =
    secondsMs % 1000 === 0 ? String(secondsMs / 1000) : (secondsMs / 1000).toFixed(3).replace(/0+$/, '');
  if (hours > 0) return `${hours}h${minutes}m${seconds}s`;
  if (minutes > 0) return `${minutes}m${seconds}s`;
  return `${seconds}s`;
}

/** Whole seconds for `retry-after`, at least 1 (0 would invite a retry storm). */
export function retryAfterSeconds(ms: number): string {
  return String(Math.max(1, Math.ceil(ms / 1000)));
}

/**
 * OpenAI's rate-limit headers for the limits that apply: requests and tokens per minute, each from the
 * scope (key or tenant) closest to its limit. Empty when no per-minute limit applies.
 */
export function rateLimitHeaders(snapshot: LimitSnapshot): Record<string, string> {
  const headers: Record<string, string> = {};
  if (snapshot.requests) {
    headers['x-ratelimit-limit-requests'] = String(snapshot.requests.limit);
    headers['x-ratelimit-remaining-requests'] = String(snapshot.requests.remaining);
    headers['x-ratelimit-reset-requests'] = formatResetDuration(snapshot.requests.resetMs);
  }
  if (snapshot.tokens) {
    headers['x-ratelimit-limit-tokens'] = String(snapshot.tokens.limit);
    headers['x-ratelimit-remaining-tokens'] = String(snapshot.tokens.remaining);
    headers['x-ratelimit-reset-tokens'] = formatResetDuration(snapshot.tokens.resetMs);
  }
  return headers;
}
