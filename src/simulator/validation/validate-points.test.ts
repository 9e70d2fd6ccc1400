import { describe, expect, it } from 'vitest';
import { type LoadedPoint, loadPoints } from './point-runs.js';
import { fitConstants, priorConstants, ValidationHarness } from './validate-points.js';

// Two simulable runs (one per set) and two that cannot be simulated: the mechanics, quickly.
const calibrationRun = 'lambda-v054-json-70b-fp8-2xh100-320prompts';
const validationRun = 'lambda-v054-json-8b-fp8-1xh100-10prompts';
const subsetRuns = [
  calibrationRun,
  validationRun,
  'trtllm-v1-8b-fp8-1xh200-isl128-osl4096',
  'kubeai-l4-8b-fp8-2replicas-leastload',
];
const subset = () => loadPoints().filter((point) => subsetRuns.includes(point.run));
const isCalibration = (point: LoadedPoint) => point.set === 'calibration';

describe('validation harness', () => {
  it('fits on calibration points only: corrupting validation points changes no fitted constant', () => {
    const points = subset();
    expect(points.some((point) => point.set === 'validation' && point.run === validationRun)).toBe(true);
    const harness = new ValidationHarness(points);
    const fitted = fitConstants(harness, isCalibration, priorConstants(), 1);
    expect(harness.simulatedRuns.has(validationRun)).toBe(false);

    const corrupted = subset().map((point) =>
      point.set === 'validation' ? { ...point, value: point.value * 10 } : point,
    );
    const refitted = fitConstants(new ValidationHarness(corrupted), isCalibration, priorConstants(), 1);
    expect(refitted.constants).toEqual(fitted.constants);
    // The fit moved something: the check above is not comparing two untouched priors.
    expect(fitted.constants).not.toEqual(priorConstants());
  });

  it('accounts for every point: simulated, or skipped with a reason', () => {
    const points = subset();
    const harness = new ValidationHarness(points);
    const { rows, skipped } = harness.evaluate(priorConstants(), () => true);
    const allSkipped = [...harness.skipped, ...skipped];
    expect(allSkipped.length).toBeGreaterThan(0);
    for (const { reason } of allSkipped) expect(reason.length).toBeGreaterThan(10);
    const seen = [...rows.map((row) => row.point.id), ...allSkipped.map(({ point }) => point.id)].sort();
    expect(seen).toEqual(points.map((point) => point.id).sort());
  });

  it('simulates a run once for all its metrics', () => {
    const harness = new ValidationHarness(subset());
    const { rows } = harness.evaluate(priorConstants(), (point) => point.run === validationRun);
    expect(rows.length).toBe(4);
    expect(harness.simulations).toBe(1);
  });
});
