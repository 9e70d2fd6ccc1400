import { describe, expect, it } from 'vitest';
import { llamaSeed } from './sampling-options.js';

describe('llamaSeed', () => {
  it('maps a given seed to the same uint32 every time, never llama.cpp’s "random" value', () => {
    for (const seed of [0, 1, -1, 2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER, 1e300]) {
      const mapped = llamaSeed(seed);
      expect(mapped).toBe(llamaSeed(seed));
      expect(Number.isInteger(mapped) && mapped >= 0 && mapped < 0xffff_ffff).toBe(true);
    }
  });

  it('keeps apart seeds that truncation would merge, and the choices of one request', () => {
    expect(llamaSeed(-1)).not.toBe(llamaSeed(0));
    expect(llamaSeed(1)).not.toBe(llamaSeed(2 ** 32 + 1));
    expect(llamaSeed(2 ** 53)).not.toBe(llamaSeed(2 ** 53 + 2));
    expect(llamaSeed(7, 0)).not.toBe(llamaSeed(7, 1));
  });

  it('draws a fresh random seed when none is given', () => {
    const draws = new Set(Array.from({ length: 8 }, () => llamaSeed(null)));
    expect(draws.size).toBeGreaterThan(1);
  });
});
