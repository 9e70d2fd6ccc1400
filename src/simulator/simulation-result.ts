import type { ServiceBand } from '../core/service-tiers.js';

/** Percentiles of a latency distribution, in milliseconds. Null when nothing was recorded. */
export interface LatencySummary {
  count: number;
  meanMs: number | null;
  p50Ms: number | null;
  p90Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

export interface TierResult {
  tier: ServiceBand | 'all';
  submitted: number;
  completed: number;
  /**
   * Refused: by the gateway scheduler (shed or over its queue bound; none without `scheduling`), or
   * because no replica could take the request (`unserved` among them).
   */
  rejected: number;
  /** Of the rejected: no replica serves a feature the request uses (`workload.mix[].features`). */
  unserved: number;
  inputTokens: number;
  cachedInputTokens: number;
  outputTokens: number;
  requestsPerSecond: number;
  outputTokensPerSecond: number;
  /** Requests per second meeting both the tier's TTFT and TPOT targets (DistServe). */
  goodputRequestsPerSecond: number;
  /** Share of completed requests meeting both targets. */
  sloAttainment: number;
  slo: { ttftMs: number; tpotMs: number } | null;
  ttft: LatencySummary;
  /** Time per output token after the first: (E2E − TTFT) / (output − 1), per request. */
  tpot: LatencySummary;
  /** Gaps between consecutive tokens of a request, over all tokens. */
  itl: LatencySummary;
  e2e: LatencySummary;
  /** Arrival to admission into the batch. */
  queue: LatencySummary;
}

/** The sweep point a run stands for (empty for a single run). */
export type SweepPoint = Partial<{
  ratePerSecond: number;
  concurrency: number;
  replicas: number;
  hardware: string;
  devices: number;
  routing: string;
  ordering: string;
  scheduler: string;
}>;

export interface FleetResult {
  hardware: string;
  devicesPerReplica: number;
  replicas: number;
  gpus: number;
  model: string;
  flavour: string;
  routing: string;
  ordering: string;
  /** The gateway scheduler in front of replicas: `off`, `fcfs` (one queue) or `slo` (tiers, VTC, shedding). */
  scheduler: string;
  kvBlocksPerReplica: number;
  /** Share of wall time replicas spent in steps (mean over replicas). */
  utilisation: number;
  /** Time-weighted mean share of KV blocks in use (mean over replicas). */
  meanKvUse: number;
  /** Prompt tokens served from prefix caches over all prompt tokens admitted (vLLM's hits / queries). */
  prefixHitRate: number;
  preemptions: number;
  energyJoules: number;
  /** Where the joules come from: always a model in the simulator. */
  energySource: string;
  costUsd: number;
  costSource: string;
  joulesPerOutputToken: number | null;
  outputTokensPerKwh: number | null;
  /** $ per 1M output tokens at the fleet's hourly cost over the run. */
  usdPerMillionOutputTokens: number | null;
  outputTokensPerSecondPerGpu: number;
  /** Interactivity: 1000 / mean TPOT — InferenceMAX's x axis. */
  tokensPerSecondPerUser: number | null;
}

export interface SimulationResult {
  scenario: string;
  seed: number;
  point: SweepPoint;
  /** Simulated seconds from the first arrival to the last completion. */
  durationSeconds: number;
  overall: TierResult;
  tiers: TierResult[];
  fleet: FleetResult;
  /** Host seconds the run took, and simulated requests per host second. */
  wallSeconds: number;
  simulatedRequestsPerSecond: number;
}
