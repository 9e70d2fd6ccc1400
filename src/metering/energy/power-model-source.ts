import type { PowerSource } from './power-source.js';

/**
 * Estimated energy from a declared power model: P = idle + (max − idle) × utilisation, integrated over
 * time with the trapezoid rule between readings. Utilisation is sampled at each reading, so readings at
 * least every metering interval keep the estimate close to the load it follows.
 */
export class PowerModelSource implements PowerSource {
  readonly source = 'estimated:power-model' as const;
  private lastReadingMs: number | null = null;
  private lastUtilisation = 0;
  private totalJoules = 0;

  constructor(
    private readonly options: {
      idleWatts: number;
      maxWatts: number;
      /** Fraction of the replica's capacity in use now, in [0, 1]. */
      utilisation: () => number;
    },
  ) {}

  energyJoules(nowMs: number): number {
    const utilisation = Math.min(1, Math.max(0, this.options.utilisation()));
    if (this.lastReadingMs !== null && nowMs > this.lastReadingMs) {
      const { idleWatts, maxWatts } = this.options;
      const meanUtilisation = (utilisation + this.lastUtilisation) / 2;
      const watts = idleWatts + (maxWatts - idleWatts) * meanUtilisation;
      this.totalJoules += (watts * (nowMs - this.lastReadingMs)) / 1000;
    }
    if (this.lastReadingMs === null || nowMs >= this.lastReadingMs) {
      this.lastReadingMs = nowMs;
      this.lastUtilisation = utilisation;
    }
    return this.totalJoules;
  }

  close(): void {}
}
