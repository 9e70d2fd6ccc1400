/**
 * The one quantile definition for figures computed from arrays of samples (benchmark reports, usage
 * reports, per-request inter-token gaps): linear interpolation between the two closest ranks, position
 * (n − 1)·q in the sorted values (Hyndman and Fan's type 7, the default of NumPy, R and spreadsheets).
 *
 * Why linear rather than nearest-rank: the figures we report are compared against other tools' reports,
 * which mostly use this definition; it makes the median of an even count the mean of the two middle
 * values; and it moves smoothly as samples are added, where nearest-rank jumps from one sample to the next.
 * The metering ledger already used it, so its figures do not change. (Streaming histograms, as in the
 * simulator, have their own bucketed definition and do not go through here.)
 */

/** The `quantile` (0..1) of values already sorted ascending; null when there are none. */
export function quantileOfSorted(sorted: readonly number[], quantile: number): number | null {
  if (sorted.length === 0) return null;
  if (!(quantile >= 0 && quantile <= 1)) throw new RangeError(`quantile must be in [0, 1], got ${quantile}`);
  const position = (sorted.length - 1) * quantile;
  const lower = Math.floor(position);
  const low = sorted[lower] as number;
  const high = sorted[Math.ceil(position)] as number;
  return low + (high - low) * (position - lower);
}

/** The `quantile` (0..1) of unsorted values (sorted in a copy); null when there are none. */
export function quantileOf(values: readonly number[], quantile: number): number | null {
  return quantileOfSorted(
    [...values].sort((a, b) => a - b),
    quantile,
  );
}

/** The median: the middle value, or the mean of the two middle values; null when there are none. */
export function medianOf(values: readonly number[]): number | null {
  return quantileOf(values, 0.5);
}
