import { describe, expect, it } from 'vitest';
import { performanceConstants } from '../../performance-model/calibration.js';
import { hardwareProfile } from '../../performance-model/hardware-profiles.js';
import { modelProfile } from '../../performance-model/model-profiles.js';
import { resolveReplicaSpec } from '../../performance-model/replica-spec.js';
import { type LoadedPoint, loadPoints, planRun, simulateRun } from './point-runs.js';
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

describe('ML.ENERGY runs follow their harnesses', () => {
  const pointsOf = (run: string) => loadPoints().filter((point) => point.run === run);
  const setupOf = (run: string) => {
    const plan = planRun(pointsOf(run));
    if ('skip' in plan) throw new Error(plan.skip);
    return plan.setup;
  };

  it('V3: 1,024 prompts × the sweep’s repeats at once, read from the B-th first token to the (N − B − 1)-th finish', () => {
    const setup = setupOf('mlenergy-v3-8b-1xh100-batch384');
    expect(setup.requests.length).toBe(2048);
    expect(setup.arrivals).toEqual({ kind: 'burst' });
    expect(setup.window).toEqual({ firstTokensOf: 384, untilFinished: 2048 - 384 - 1 });
    expect(setupOf('mlenergy-v3-70b-4xh100-batch1024').requests.length).toBe(2048);
    expect(setupOf('mlenergy-v3-70b-4xh100-batch64').requests.length).toBe(1024);

    const run = simulateRun(setup, performanceConstants);
    const total = Array.from(run.outputTokens).reduce((sum, tokens) => sum + tokens, 0);
    // The ramp-up and the drain are outside the window, and the window is most of the run.
    expect(run.window.outputTokens).toBeLessThan(total);
    expect(run.window.outputTokens).toBeGreaterThan(total / 2);
    expect(run.window.ms).toBeLessThan(run.durationMs);
  });

  it('V2: 500 prompts at once on an in-process API server; power over the whole run, rates until the queue empties', () => {
    const queued = setupOf('mlenergy-v2-8b-1xh100-batch128');
    expect(queued.requests.length).toBe(500);
    expect(queued.apiServerInProcess).toBe(true);
    expect(queued.gpuMemoryUtilization).toBe(0.95);
    expect(queued.window).toBe('until-queue-empty');
    expect(queued.powerWindow).toBe('whole');
    const run = simulateRun(queued, performanceConstants);
    expect(run.window.ms).toBeLessThan(run.durationMs);
    expect(run.powerWindow.ms).toBe(run.durationMs);
    // With max_num_seqs above the request count nothing queues behind a full batch: the whole run.
    const unqueued = simulateRun(setupOf('mlenergy-v2-8b-1xh100-batch768'), performanceConstants);
    expect(unqueued.window.ms).toBe(unqueued.durationMs);
  });

  it('draws unpublished lengths from the seed it is given, and leaves published traces as they are', () => {
    const plan = (run: string, draw: number) => {
      const planned = planRun(pointsOf(run), draw);
      if ('skip' in planned) throw new Error(planned.skip);
      return planned.setup.requests;
    };
    const drawn = 'mlenergy-v3-8b-1xh100-batch64';
    expect(plan(drawn, 1)).toEqual(plan(drawn, 1));
    expect(plan(drawn, 2)).not.toEqual(plan(drawn, 1));
    expect(plan(validationRun, 2)).toEqual(plan(validationRun, 1));
  });

  it('charges the in-process API server as vLLM’s profile does: host time × (1 + 33/29)', () => {
    const options = {
      hardware: hardwareProfile('h100-sxm') as NonNullable<ReturnType<typeof hardwareProfile>>,
      model: modelProfile('llama-3.1-8b') as NonNullable<ReturnType<typeof modelProfile>>,
      flavour: 'vllm-0.5' as const,
    };
    const separate = resolveReplicaSpec(options);
    const inProcess = resolveReplicaSpec({ ...options, apiServerInProcess: true });
    expect(inProcess.stepOverheadMs / separate.stepOverheadMs).toBeCloseTo(1 + 33 / 29, 9);
    expect(inProcess.perSequenceOverheadMs / separate.perSequenceOverheadMs).toBeCloseTo(1 + 33 / 29, 9);
    expect(inProcess.effectiveBytesPerMs).toBe(separate.effectiveBytesPerMs);
  });
});
