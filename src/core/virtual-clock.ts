import type { Clock } from './clock.js';

/**
 * The simulator's clock: time moves only when the event loop says so. Policies read it through the same
 * `Clock` interface as the live gateway's, which is what lets them run unchanged in both.
 */
export class VirtualClock implements Clock {
  private currentMs = 0;

  constructor(private readonly epochStartMs = Date.UTC(2026, 0, 1)) {}

  nowMs(): number {
    return this.currentMs;
  }

  epochMs(): number {
    return this.epochStartMs + this.currentMs;
  }

  /** Moves time forward; never backward (events are processed in time order). */
  advanceTo(ms: number): void {
    if (ms < this.currentMs) throw new Error(`virtual time cannot go back (${ms} < ${this.currentMs})`);
    this.currentMs = ms;
  }
}
