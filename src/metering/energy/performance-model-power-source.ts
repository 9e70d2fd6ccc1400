import type { ModelledPower } from '../../engines/engine-adapter.js';
import { performanceModelEnergySource } from '../../performance-model/calibration.js';
import type { PowerSource } from './power-source.js';

/**
 * Estimated energy of an engine that models its own device (the emulated engine): idle power for the
 * time since the first reading, plus the dynamic energy of the steps the performance model ran —
 * (max − idle) watts for each step's roofline busy time. Unlike the plain power model it knows when the
 * device computes, not only how many requests hold a slot.
 */
export class PerformanceModelPowerSource implements PowerSource {
  readonly source = performanceModelEnergySource;
  private firstReadingMs: number | null = null;
  private lastJoules = 0;

  constructor(private readonly power: ModelledPower) {}

  energyJoules(nowMs: number): number {
    this.firstReadingMs ??= nowMs;
    const idleJoules = (this.power.idleWatts * Math.max(0, nowMs - this.firstReadingMs)) / 1000;
    // Readings out of order (or a model that revises a step) must not make the counter go back.
    this.lastJoules = Math.max(this.lastJoules, idleJoules + this.power.dynamicEnergyJoules());
    return this.lastJoules;
  }

  close(): void {}
}
