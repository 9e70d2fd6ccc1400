import { describe, expect, it } from 'vitest';
import { createRequestContext } from '../core/request-context.js';
import { engineConfigSchema } from '../engines/engine-registry.js';
import { PowerModelSource } from './energy/power-model-source.js';
import { ReplicaMeter } from './replica-meter.js';

const meteringConfig = () => {
  const engine = engineConfigSchema.parse({
    type: 'llama-cpp',
    model: { generated: 'gravity-tiny' },
    metering: { cost: { hourlyUsd: 36 } },
  });
  return engine.metering;
};

function context(nowMs: number) {
  return createRequestContext({
    endpoint: 'completions',
    stream: false,
    model: 'm',
    serviceTier: 'auto',
    nowMs,
    epochMs: nowMs,
  });
}

describe('ReplicaMeter', () => {
  it('charges a request only for energy and cost after it arrived', () => {
    // A constant 10 W replica costing $36 an hour ($0.01 a second).
    const meter = new ReplicaMeter(
      'r',
      new PowerModelSource({ idleWatts: 10, maxWatts: 10, utilisation: () => 0 }),
      meteringConfig(),
      0,
    );
    const request = context(1000);
    meter.begin(request, 1000);
    request.decodeTokens = 5;
    const share = meter.end(request, 1100);
    expect(share.energyJoules).toBeCloseTo(1, 9); // 10 W for 0.1 s
    expect(share.costUsd).toBeCloseTo(0.001, 12);
    expect(meter.totals().idleEnergyJoules).toBeCloseTo(10, 9); // the second before it arrived
  });

  it('splits an interval between two requests by their weighted tokens', () => {
    const meter = new ReplicaMeter(
      'r',
      new PowerModelSource({ idleWatts: 10, maxWatts: 10, utilisation: () => 0 }),
      meteringConfig(),
      0,
    );
    const prefillHeavy = context(0);
    const decodeHeavy = context(0);
    meter.begin(prefillHeavy, 0);
    meter.begin(decodeHeavy, 0);
    prefillHeavy.prefillTokens = 50; // × 0.2 = 10 units
    decodeHeavy.decodeTokens = 30; // × 1 = 30 units
    meter.closeInterval(1000);
    expect(meter.end(prefillHeavy, 1000).energyJoules).toBeCloseTo(2.5, 9);
    expect(meter.end(decodeHeavy, 1000).energyJoules).toBeCloseTo(7.5, 9);
  });
});
