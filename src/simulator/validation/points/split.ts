/**
 * The calibration/validation split of the published measurements (README.md in this folder). It was
 * declared before any constant was fitted to these points and is never changed to improve a figure.
 *
 * A point's set depends only on its `run` id, never on its value, source or on how well a model fits it:
 * all metrics of one benchmark run land in the same set, so no constant is fitted on a run's throughput
 * and then "validated" on the same run's latency.
 */
export type PointSet = 'calibration' | 'validation';

/** FNV-1a, 32 bits, over UTF-16 code units: a stable hash anyone can recompute, with no dependency. */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) {
    hash ^= text.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/** Two buckets of five calibrate (about 40% of runs); the other three validate. */
export function splitOf(runId: string): PointSet {
  return fnv1a32(runId) % 5 < 2 ? 'calibration' : 'validation';
}
