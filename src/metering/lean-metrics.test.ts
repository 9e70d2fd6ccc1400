import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LeanHistogram, LeanValue } from './lean-metrics.js';

/** Lean metrics must render exactly as prom-client's do, so scrapers and promtool see no difference. */
describe('lean request-path metrics', () => {
  it("export histograms exactly as prom-client's Histogram does for the same observations", async () => {
    const options = {
      name: 'gravity_test_seconds',
      help: 'A test histogram.',
      labelNames: ['model'] as const,
      buckets: [0.001, 0.01, 0.1, 1],
    };
    const reference = new Registry();
    const lean = new Registry();
    const prom = new Histogram({ ...options, labelNames: [...options.labelNames], registers: [reference] });
    const ours = new LeanHistogram({ ...options, registers: [lean] });
    const values = [0.0005, 0.001, 0.002, 0.05, 0.1, 0.5, 3, 0, 0.01];
    for (const model of ['a', 'b "quoted"']) {
      const promChild = prom.labels({ model });
      const leanChild = ours.labels({ model });
      for (const value of values) {
        promChild.observe(value);
        leanChild.observe(value);
      }
    }
    expect(await lean.metrics()).toBe(await reference.metrics());
    ours.reset();
    prom.reset();
    expect(await lean.metrics()).toBe(await reference.metrics());
  });

  it("export counters and gauges exactly as prom-client's do", async () => {
    const reference = new Registry();
    const lean = new Registry();
    const labelNames = ['model', 'tier'] as const;
    const promCounter = new Counter({
      name: 'gravity_things_total',
      help: 'Things.',
      labelNames: [...labelNames],
      registers: [reference],
    });
    const promGauge = new Gauge({
      name: 'gravity_things_now',
      help: 'Now.',
      labelNames: [...labelNames],
      registers: [reference],
    });
    const leanCounter = new LeanValue({
      name: 'gravity_things_total',
      help: 'Things.',
      type: 'counter',
      labelNames,
      registers: [lean],
    });
    const leanGauge = new LeanValue({
      name: 'gravity_things_now',
      help: 'Now.',
      type: 'gauge',
      labelNames,
      registers: [lean],
    });
    for (const [model, tier, amount] of [
      ['a', 'default', 3],
      ['b', 'flex', 0.25],
      ['a', 'default', 1e-9],
    ] as const) {
      promCounter.labels({ model, tier }).inc(amount);
      leanCounter.labels({ model, tier }).inc(amount);
      promGauge.labels({ model, tier }).inc();
      leanGauge.labels({ model, tier }).inc();
    }
    promGauge.labels({ model: 'a', tier: 'default' }).dec();
    leanGauge.labels({ model: 'a', tier: 'default' }).dec();
    expect(await lean.metrics()).toBe(await reference.metrics());
  });
});
