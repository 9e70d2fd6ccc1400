import { describe, expect, it } from 'vitest';
import { medianOf, quantileOf, quantileOfSorted } from './quantile.js';

describe('quantile (linear interpolation between closest ranks)', () => {
  it('gives the middle value of an odd count and the mean of the two middle values of an even count', () => {
    expect(medianOf([3, 1, 2])).toBe(2);
    expect(medianOf([4, 1, 3, 2])).toBe(2.5);
  });

  it('interpolates between ranks at position (n - 1) * q', () => {
    const sorted = [10, 20, 30, 40, 50];
    expect(quantileOfSorted(sorted, 0)).toBe(10);
    expect(quantileOfSorted(sorted, 1)).toBe(50);
    expect(quantileOfSorted(sorted, 0.9)).toBeCloseTo(46);
    expect(quantileOfSorted(sorted, 0.25)).toBe(20);
  });

  it('matches the spreadsheet definition on a hundred samples', () => {
    const values = Array.from({ length: 100 }, (_, index) => 100 - index);
    // 1..100: p99 sits at position 98.01, between 99 and 100.
    expect(quantileOf(values, 0.99)).toBeCloseTo(99.01);
    expect(quantileOf(values, 0.5)).toBe(50.5);
  });

  it("does not reorder the caller's array", () => {
    const values = [3, 1, 2];
    quantileOf(values, 0.5);
    expect(values).toEqual([3, 1, 2]);
  });

  it('returns null for no samples and rejects a quantile outside [0, 1]', () => {
    expect(medianOf([])).toBeNull();
    expect(() => quantileOfSorted([1], 1.5)).toThrow(RangeError);
    expect(() => quantileOfSorted([1], Number.NaN)).toThrow(RangeError);
  });
});
