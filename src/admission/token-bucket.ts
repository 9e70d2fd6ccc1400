/**
 * A per-minute limit as a token bucket: it holds up to `capacity` units and refills at `capacity` per
 * minute, continuously. Unlike a fixed one-minute window it has no boundary at which a client can spend
 * two minutes' worth at once, and its state is two numbers. Plain state and explicit times: no clock is
 * read here, so the simulator and the tests drive it with any time they like.
 */
export interface TokenBucket {
  /** Units available now; negative after a request used more than it reserved. */
  level: number;
  /** When `level` was last brought up to date (Clock milliseconds). */
  updatedAtMs: number;
}

export const minuteMs = 60_000;

export function newBucket(capacity: number, nowMs: number): TokenBucket {
  return { level: capacity, updatedAtMs: nowMs };
}

/** Brings the bucket up to `nowMs`: what refilled since the last update, never above capacity. */
export function refill(bucket: TokenBucket, capacity: number, nowMs: number): void {
  const elapsedMs = nowMs - bucket.updatedAtMs;
  if (elapsedMs <= 0) return;
  bucket.level = Math.min(capacity, bucket.level + (elapsedMs * capacity) / minuteMs);
  bucket.updatedAtMs = nowMs;
}

/** Milliseconds until the bucket holds `amount` (0 if it does now). Call after `refill`. */
export function msUntilAvailable(bucket: TokenBucket, capacity: number, amount: number): number {
  const deficit = amount - bucket.level;
  return deficit <= 0 ? 0 : (deficit * minuteMs) / capacity;
}

/** Milliseconds until the bucket is full again: OpenAI's `x-ratelimit-reset-*`. Call after `refill`. */
export function msUntilFull(bucket: TokenBucket, capacity: number): number {
  return msUntilAvailable(bucket, capacity, capacity);
}
