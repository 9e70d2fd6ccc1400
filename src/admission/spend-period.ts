import type { SpendPeriod } from './api-key.js';

/** The calendar period (UTC) holding `epochMs`: a day or a month, start inclusive, end exclusive. */
export function spendPeriodRange(
  period: SpendPeriod,
  epochMs: number,
): { startEpochMs: number; endEpochMs: number } {
  const date = new Date(epochMs);
  const year = date.getUTCFullYear();
  const month = date.getUTCMonth();
  if (period === 'month')
    return { startEpochMs: Date.UTC(year, month, 1), endEpochMs: Date.UTC(year, month + 1, 1) };
  const day = date.getUTCDate();
  return { startEpochMs: Date.UTC(year, month, day), endEpochMs: Date.UTC(year, month, day + 1) };
}
