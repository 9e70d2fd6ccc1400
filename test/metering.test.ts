import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';
import { spawnGravity } from './support/gravity-process.js';

interface Figures {
  energyJoules: number;
  costUsd: number;
  priceUsd: number;
  marginUsd: number;
}

let harness: Harness;
const seenRequestIds: string[] = [];
const completed: Figures[] = [];

beforeAll(async () => {
  harness = await startHarness(undefined, {
    metering: { intervalMs: 20 },
    engines: {
      tiny: {
        type: 'llama-cpp',
        model: { generated: 'gravity-tiny' },
        metering: { cost: { hourlyUsd: 3.6 } },
      },
      'tiny-random': {
        type: 'llama-cpp',
        model: { generated: 'gravity-tiny-random' },
        metering: { cost: { hourlyUsd: 3.6 } },
      },
    },
    pricing: {
      default: { inputPerMillionUsd: 1, outputPerMillionUsd: 2 },
      tierMultipliers: { priority: 3 },
    },
  });
});
afterAll(async () => {
  await harness?.close();
});

const sum = (figures: Figures[], field: keyof Figures) =>
  figures.reduce((total, item) => total + item[field], 0);
const close = (actual: number, expected: number) =>
  expect(Math.abs(actual - expected)).toBeLessThanOrEqual(Math.abs(expected) * 1e-9 + 1e-12);

describe('metering every response', () => {
  it('returns each completion’s energy, cost, price and margin in headers and in usage.gravity', async () => {
    for (const tier of ['default', 'priority'] as const) {
      const { data, response } = await harness.client.chat.completions
        .create({
          model: 'gravity-tiny-random',
          messages: [{ role: 'user', content: 'meter me' }],
          max_tokens: 30,
          service_tier: tier,
        })
        .withResponse();
      seenRequestIds.push(response.headers.get('x-request-id') ?? '');
      const gravity = (data.usage as unknown as { gravity: Record<string, number | string> }).gravity;
      const headerFigures: Figures = {
        energyJoules: Number(response.headers.get('x-gravity-energy-joules')),
        costUsd: Number(response.headers.get('x-gravity-cost-usd')),
        priceUsd: Number(response.headers.get('x-gravity-price-usd')),
        marginUsd: Number(response.headers.get('x-gravity-margin-usd')),
      };
      expect(headerFigures.energyJoules).toBeGreaterThan(0);
      expect(gravity.energy_joules).toBe(headerFigures.energyJoules);
      expect(gravity.cost_usd).toBe(headerFigures.costUsd);
      expect(response.headers.get('x-gravity-energy-source')).toBe(gravity.energy_source);
      expect(['estimated:power-model', 'measured:rapl']).toContain(gravity.energy_source);
      expect(gravity.cost_source).toBe('amortized-hourly');
      close(headerFigures.marginUsd, headerFigures.priceUsd - headerFigures.costUsd);
      // $1 per 1M input, $2 per 1M output, ×3 for priority.
      const expectedPrice =
        ((data.usage?.prompt_tokens ?? 0) * 1 + 30 * 2) * 1e-6 * (tier === 'priority' ? 3 : 1);
      close(headerFigures.priceUsd, expectedPrice);
      completed.push(headerFigures);
    }
  });

  it('puts the figures in the usage chunk of a stream', async () => {
    for (let index = 0; index < 3; index++) {
      const { data: stream, response } = await harness.client.chat.completions
        .create({
          model: 'gravity-tiny-random',
          messages: [{ role: 'user', content: `stream ${index}` }],
          max_tokens: 20,
          stream: true,
          stream_options: { include_usage: true },
        })
        .withResponse();
      seenRequestIds.push(response.headers.get('x-request-id') ?? '');
      let gravity: Record<string, number> | undefined;
      for await (const chunk of stream) {
        if (chunk.usage) gravity = (chunk.usage as unknown as { gravity: Record<string, number> }).gravity;
      }
      expect(gravity?.energy_joules).toBeGreaterThan(0);
      completed.push({
        energyJoules: gravity?.energy_joules ?? Number.NaN,
        costUsd: gravity?.cost_usd ?? Number.NaN,
        priceUsd: gravity?.price_usd ?? Number.NaN,
        marginUsd: gravity?.margin_usd ?? Number.NaN,
      });
    }
  });

  it('agrees across response figures, /v1/usage and gravity report', async () => {
    const usage = (await (await fetch(`${harness.url}/v1/usage`)).json()) as {
      data: Array<Record<string, number>>;
    };
    expect(usage.data).toHaveLength(1);
    const total = usage.data[0] as Record<string, number>;
    expect(total.requests).toBe(completed.length);
    close(total.energy_joules as number, sum(completed, 'energyJoules'));
    close(total.cost_usd as number, sum(completed, 'costUsd'));
    close(total.price_usd as number, sum(completed, 'priceUsd'));
    close(total.margin_usd as number, sum(completed, 'marginUsd'));
    expect(total.ttft_p50_ms).toBeGreaterThan(0);
    expect(total.joules_per_completion_token).toBeCloseTo(
      (total.energy_joules as number) / (total.completion_tokens as number),
      12,
    );

    const byTier = (await (await fetch(`${harness.url}/v1/usage?group_by=tier,model`)).json()) as {
      data: Array<Record<string, unknown>>;
    };
    expect(byTier.data.map((row) => row.tier).sort()).toEqual(['default', 'priority']);

    const report = spawnGravity([
      'report',
      '--ledger',
      harness.ledgerPath,
      '--format',
      'json',
      '--group-by',
      'tier,model',
    ]);
    expect((await report.exited).code).toBe(0);
    expect(JSON.parse(report.stdout()).data).toEqual(byTier.data);

    const table = spawnGravity(['report', '--ledger', harness.ledgerPath]);
    expect((await table.exited).code).toBe(0);
    expect(table.stdout()).toContain('energy J');
  });

  it('records failed, rejected and cancelled requests too, exactly once each', async () => {
    const notFound = await postRaw(
      `${harness.url}/v1/chat/completions`,
      JSON.stringify({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
    );
    const badJson = await postRaw(`${harness.url}/v1/completions`, '{"model":');
    const tooBig = await postRaw(
      `${harness.url}/v1/completions`,
      JSON.stringify({ model: 'gravity-tiny', prompt: 'x'.repeat(5_000_000) }),
    );
    for (const response of [notFound, badJson, tooBig])
      seenRequestIds.push(response.headers.get('x-request-id') ?? '');

    const controller = new AbortController();
    const { data: stream, response } = await harness.client.chat.completions
      .create(
        {
          model: 'gravity-tiny-random',
          messages: [{ role: 'user', content: 'cancel me' }],
          max_tokens: 3000,
          stream: true,
        },
        { signal: controller.signal },
      )
      .withResponse();
    seenRequestIds.push(response.headers.get('x-request-id') ?? '');
    let chunks = 0;
    for await (const _chunk of stream) if (++chunks === 5) controller.abort();

    // The cancelled request's record is written when the server notices the disconnect.
    const ledger = new SqliteLedgerStore(harness.ledgerPath);
    let records = await ledger.records({});
    for (let attempt = 0; attempt < 100 && records.length < seenRequestIds.length; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      records = await ledger.records({});
    }
    await ledger.close();
    expect(records.map((record) => record.requestId).sort()).toEqual([...seenRequestIds].sort());
    const statusOf = (id: string) => records.find((record) => record.requestId === id)?.status;
    expect(statusOf(notFound.headers.get('x-request-id') ?? '')).toBe(404);
    expect(statusOf(badJson.headers.get('x-request-id') ?? '')).toBe(400);
    expect(statusOf(tooBig.headers.get('x-request-id') ?? '')).toBe(413);
    const cancelled = records.find((record) => record.requestId === response.headers.get('x-request-id'));
    expect(cancelled).toMatchObject({ status: 499, errorCode: 'cancelled', usageSource: 'counted' });
    expect(cancelled?.completionTokens).toBeGreaterThanOrEqual(4);
    expect(cancelled?.energyJoules).toBeGreaterThan(0);
  });

  it('conserves energy end to end: request shares plus idle equal what the replicas drew', async () => {
    await harness.close();
    const ledger = new SqliteLedgerStore(harness.ledgerPath);
    const records = await ledger.records({});
    const periods = await ledger.replicaPeriods({});
    await ledger.close();
    const requestJoules = records.reduce((total, record) => total + record.energyJoules, 0);
    const idleJoules = periods.reduce((total, period) => total + period.idleEnergyJoules, 0);
    const drawnJoules = periods.reduce((total, period) => total + period.energyJoules, 0);
    expect(drawnJoules).toBeGreaterThan(0);
    expect(Math.abs(requestJoules + idleJoules - drawnJoules)).toBeLessThanOrEqual(drawnJoules * 0.01);
    const requestCost = records.reduce((total, record) => total + record.costUsd, 0);
    const drawnCost = periods.reduce((total, period) => total + period.costUsd, 0);
    const idleCost = periods.reduce((total, period) => total + period.idleCostUsd, 0);
    expect(Math.abs(requestCost + idleCost - drawnCost)).toBeLessThanOrEqual(drawnCost * 0.01);
  });
});
