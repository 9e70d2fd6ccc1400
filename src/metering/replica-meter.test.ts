import { describe, expect, it } from 'vitest';
import { createRequestContext, type Endpoint } from '../core/request-context.js';
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

function context(nowMs: number, endpoint: Endpoint = 'completions') {
  return createRequestContext({
    endpoint,
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

  it('charges a per-token engine’s embeddings at its embedding rate, else at its input rate', () => {
    const perTokenMeter = (cost: object) =>
      new ReplicaMeter(
        'r',
        new PowerModelSource({ idleWatts: 0, maxWatts: 0, utilisation: () => 0 }),
        engineConfigSchema.parse({
          type: 'openai-upstream',
          baseUrl: 'http://127.0.0.1:1/v1',
          metering: { cost },
        }).metering,
        0,
      );
    const usage = {
      promptTokens: 1000,
      cachedPromptTokens: 0,
      completionTokens: 0,
      source: 'engine',
    } as const;
    const charged = (cost: object, endpoint: Endpoint) => {
      const meter = perTokenMeter(cost);
      const request = context(0, endpoint);
      meter.begin(request, 0);
      request.usage = usage;
      return meter.end(request, 0).costUsd;
    };
    const rates = { inputPerMillionUsd: 2, outputPerMillionUsd: 8 };
    expect(charged({ ...rates, embeddingInputPerMillionUsd: 0.1 }, 'embeddings')).toBeCloseTo(0.0001, 12);
    expect(charged({ ...rates, embeddingInputPerMillionUsd: 0.1 }, 'chat.completions')).toBeCloseTo(
      0.002,
      12,
    );
    expect(charged(rates, 'embeddings')).toBeCloseTo(0.002, 12);
  });
});
