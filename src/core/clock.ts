/**
 * Time as the policies see it. Scheduling, routing and metering take a Clock instead of reading
 * `Date.now()` or `performance.now()` themselves, so the fleet simulator can drive the very same code on
 * a virtual clock.
 */
export interface Clock {
  /** Monotonic milliseconds: only differences are meaningful. */
  nowMs(): number;
  /** Wall-clock milliseconds since the Unix epoch, for records and `created` fields. */
  epochMs(): number;
}

/** The live clock: monotonic time from `performance.now()`, wall time from `Date.now()`. */
export const systemClock: Clock = {
  nowMs: () => performance.now(),
  epochMs: () => Date.now(),
};
