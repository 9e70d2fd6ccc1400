import { describe, expect, it } from 'vitest';
import { publishedPoints } from './published-points.js';
import { medianAbsoluteError, validateModel } from './validate-model.js';

describe('performance model against published measurements', () => {
  const rows = validateModel();

  it('reproduces its calibration points (the constants in calibration.ts are current)', () => {
    for (const row of rows.filter((candidate) => candidate.point.role === 'calibration'))
      expect(Math.abs(row.error), row.point.id).toBeLessThan(0.02);
  });

  it('predicts the validation points with a median absolute error of at most 15%', () => {
    const validation = rows.filter((row) => row.point.role === 'validation');
    expect(validation.length).toBeGreaterThanOrEqual(20);
    expect(medianAbsoluteError(validation)).toBeLessThanOrEqual(0.15);
  });

  it('never counts a calibration point as validation', () => {
    const ids = publishedPoints.map((point) => point.id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
