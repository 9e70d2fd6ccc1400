/**
 * Where a joule figure came from. Every energy number Gravity reports carries one of these, so a reader
 * can tell a measurement from an estimate.
 */
export type EnergySource =
  | 'measured:nvml'
  | 'measured:rapl'
  | 'estimated:power-model'
  /** An emulated engine's own modelled device energy (performance-model-power-source.ts). */
  | 'estimated:performance-model';

/**
 * A replica's energy counter. Readings are cumulative joules since the source started; meters take
 * differences between readings to get an interval's energy.
 */
export interface PowerSource {
  readonly source: EnergySource;
  /** Cumulative joules at `nowMs` (Clock milliseconds). Must never decrease. */
  energyJoules(nowMs: number): number;
  close(): void;
}
