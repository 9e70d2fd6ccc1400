import { describe, expect, it } from 'vitest';
import { spendPeriodRange } from './spend-period.js';

describe('spend periods', () => {
  it('are UTC calendar days and months', () => {
    const at = Date.UTC(2026, 11, 31, 23, 30);
    expect(spendPeriodRange('day', at)).toEqual({
      startEpochMs: Date.UTC(2026, 11, 31),
      endEpochMs: Date.UTC(2027, 0, 1),
    });
    expect(spendPeriodRange('month', at)).toEqual({
      startEpochMs: Date.UTC(2026, 11, 1),
      endEpochMs: Date.UTC(2027, 0, 1),
    });
  });
});
