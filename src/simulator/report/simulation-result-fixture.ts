import type { ServiceBand } from '../../core/service-tiers.js';
import type { LatencySummary, SimulationResult, SweepPoint, TierResult } from '../simulation-result.js';

/**
 * Hand-made simulation results for the report and planner tests: plausible figures, scaled by a load
 * factor so sweeps produce distinct rows and curves. Not used outside tests.
 */

function latency(p50Ms: number): LatencySummary {
  return {
    count: 100,
    meanMs: p50Ms * 1.1,
    p50Ms,
    p90Ms: p50Ms * 1.8,
    p95Ms: p50Ms * 2.2,
    p99Ms: p50Ms * 3,
    maxMs: p50Ms * 4,
  };
}

export function tierResultFixture(
  tier: ServiceBand | 'all',
  load = 1,
  overrides: Partial<TierResult> = {},
): TierResult {
  return {
    tier,
    submitted: 100,
    completed: 100,
    rejected: 0,
    unserved: 0,
    inputTokens: 20_000,
    cachedInputTokens: 4_000,
    outputTokens: 18_000,
    requestsPerSecond: 2 * load,
    outputTokensPerSecond: 360 * load,
    goodputRequestsPerSecond: 1.9 * load,
    sloAttainment: Math.max(0, 0.99 - 0.05 * load),
    slo: tier === 'all' ? null : { ttftMs: 500, tpotMs: 50 },
    ttft: latency(80 * load),
    tpot: latency(12 + 3 * load),
    itl: latency(11 + 3 * load),
    e2e: latency(2500 * load),
    queue: latency(5 * load),
    ...overrides,
  };
}

export interface ResultFixtureOptions {
  scenario?: string;
  point?: SweepPoint;
  tiers?: (ServiceBand | 'all')[];
  load?: number;
  hardware?: string;
  devices?: number;
  replicas?: number;
  routing?: string;
  ordering?: string;
}

export function simulationResultFixture(options: ResultFixtureOptions = {}): SimulationResult {
  const point = options.point ?? {};
  const load = options.load ?? point.ratePerSecond ?? point.concurrency ?? 1;
  const hardware = point.hardware ?? options.hardware ?? 'h100-sxm';
  const devices = point.devices ?? options.devices ?? 1;
  const replicas = point.replicas ?? options.replicas ?? 2;
  const serviceBands = options.tiers ?? ['default'];
  return {
    scenario: options.scenario ?? 'fixture',
    seed: 1,
    point,
    durationSeconds: 50,
    overall: tierResultFixture('all', load),
    tiers: serviceBands.map((tier) => tierResultFixture(tier, load)),
    fleet: {
      hardware,
      devicesPerReplica: devices,
      replicas,
      gpus: devices * replicas,
      model: 'llama-3.1-8b',
      flavour: 'vllm-v1',
      routing: point.routing ?? options.routing ?? 'least-loaded',
      ordering: point.ordering ?? options.ordering ?? 'fcfs',
      scheduler: point.scheduler ?? 'off',
      kvBlocksPerReplica: 20_000,
      utilisation: Math.min(1, 0.3 * load),
      meanKvUse: Math.min(1, 0.2 * load),
      prefixHitRate: 0.2,
      preemptions: 0,
      energyJoules: 40_000 * load,
      energySource: 'estimated:performance-model',
      costUsd: 0.07,
      costSource: `estimated:hourly-price (${hardware} at $2.5/device-hour)`,
      joulesPerOutputToken: 0.45 / load,
      outputTokensPerKwh: 8_000_000 * load,
      usdPerMillionOutputTokens: 0.9 / load,
      outputTokensPerSecondPerGpu: (360 * load) / (devices * replicas),
      tokensPerSecondPerUser: 1000 / (12 + 3 * load),
    },
    wallSeconds: 0.2,
    simulatedRequestsPerSecond: 1000,
  };
}
