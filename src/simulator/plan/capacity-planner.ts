import { type ServiceBand, serviceBands } from '../../core/service-tiers.js';
import { hardwareProfile } from '../../performance-model/hardware-profiles.js';
import type { ModelProfile } from '../../performance-model/model-profiles.js';
import { ReplicaSpecError } from '../../performance-model/replica-spec.js';
import { runScenario as simulate } from '../run-scenario.js';
import type { Scenario } from '../scenario-schema.js';
import type { LatencySummary, SimulationResult, SweepPoint, TierResult } from '../simulation-result.js';
import type { LedgerReplay } from '../workload/ledger-replay.js';

/**
 * `gravity plan`: for each candidate fleet shape (hardware × devices per replica × routing × ordering),
 * the fewest replicas whose simulated run meets every tier's SLO attainment, then the candidates ranked by
 * what the fleet costs per hour. Each probe is one deterministic `runScenario`; the search assumes more
 * replicas never make a tier's attainment worse, which holds for the load-balancing policies we ship up
 * to simulation noise (a plan is a sizing estimate, not a guarantee).
 */

export interface PlanCandidate {
  hardware: string;
  devices: number;
  routing: string;
  ordering: string;
}

/** How one tier fared in one probe. */
export interface TierCheck {
  tier: ServiceBand;
  submitted: number;
  /** Share of the tier's submitted requests that completed within both targets. */
  attainment: number;
  required: number;
  ttftTargetMs: number;
  tpotTargetMs: number;
  /** The percentile nearest the attainment target (p90 for 0.9), to say which target was missed. */
  percentile: 'p50' | 'p90' | 'p95' | 'p99';
  ttftAtPercentileMs: number | null;
  tpotAtPercentileMs: number | null;
  meets: boolean;
  /** Which targets the percentile misses: both when attainment fails but neither percentile shows it. */
  missed: ('TTFT' | 'TPOT')[];
}

export interface PlanProbe {
  replicas: number;
  meetsSlo: boolean;
  tiers: TierCheck[];
  result: SimulationResult;
}

export interface FeasibleCandidate {
  status: 'feasible';
  candidate: PlanCandidate;
  replicas: number;
  gpus: number;
  usdPerHour: number;
  usdPerMillionOutputTokens: number | null;
  joulesPerOutputToken: number | null;
  /** The run at `replicas`. */
  result: SimulationResult;
  /** Every probe, in the order they ran. */
  probes: PlanProbe[];
}

export interface InfeasibleCandidate {
  status: 'does-not-fit' | 'misses-slo';
  candidate: PlanCandidate;
  reason: string;
  probes: PlanProbe[];
}

export type CandidateOutcome = FeasibleCandidate | InfeasibleCandidate;

export interface CapacityPlan {
  scenario: string;
  attainment: number;
  maxReplicas: number;
  /** The targets of the tiers that had requests in any probe. */
  tierTargets: { tier: ServiceBand; ttftMs: number; tpotMs: number }[];
  /** Cheapest first: $ per hour of the fleet, then $ per 1M output tokens, then J per output token. */
  feasible: FeasibleCandidate[];
  infeasible: InfeasibleCandidate[];
}

export type PlanProgressEvent =
  | {
      kind: 'probe';
      candidate: PlanCandidate;
      candidateIndex: number;
      candidateCount: number;
      replicas: number;
    }
  | { kind: 'candidate'; outcome: CandidateOutcome; candidateIndex: number; candidateCount: number };

export type RunScenario = (
  scenario: Scenario,
  point: SweepPoint,
  options?: {
    modelProfile?: ModelProfile;
    onProgress?: (completed: number, expected: number | null) => void;
    ledgerReplay?: LedgerReplay;
  },
) => SimulationResult;

export interface PlanCapacityOptions {
  /** The simulator; replaceable so the search can be tested against a synthetic fleet. */
  runScenario?: RunScenario;
  /** A model read from a GGUF file, passed through to every probe. */
  modelProfile?: ModelProfile;
  /** The ledger a `process: ledger` workload replays, read beforehand, passed through to every probe. */
  ledgerReplay?: LedgerReplay;
  onProgress?: (event: PlanProgressEvent) => void;
  /** Requests completed in the running probe (a plan's probes can each take seconds on big workloads). */
  onProbeProgress?: (completed: number, expected: number | null) => void;
}

export class PlanError extends Error {}

export function planCandidates(scenario: Scenario): PlanCandidate[] {
  const plan = scenario.plan;
  if (!plan)
    throw new PlanError(
      `scenario '${scenario.name}' has no plan section (plan.hardware lists the candidates)`,
    );
  const candidates: PlanCandidate[] = [];
  for (const hardware of plan.hardware)
    for (const devices of plan.devices)
      for (const routing of plan.routing)
        for (const ordering of plan.ordering) candidates.push({ hardware, devices, routing, ordering });
  return candidates;
}

const percentiles = [
  { name: 'p50', share: 0.5, pick: (summary: LatencySummary) => summary.p50Ms },
  { name: 'p90', share: 0.9, pick: (summary: LatencySummary) => summary.p90Ms },
  { name: 'p95', share: 0.95, pick: (summary: LatencySummary) => summary.p95Ms },
  { name: 'p99', share: 0.99, pick: (summary: LatencySummary) => summary.p99Ms },
] as const;

function checkTier(tier: TierResult, scenario: Scenario): TierCheck {
  const name = tier.tier as ServiceBand;
  const targets = tier.slo ?? scenario.slo[name];
  const required = scenario.slo.attainment;
  // Requests that never completed count as misses: attainment is over what was submitted.
  const attainment = tier.submitted > 0 ? (tier.sloAttainment * tier.completed) / tier.submitted : 1;
  const percentile = percentiles.find((candidate) => candidate.share >= required) ?? percentiles[3];
  const ttftAtPercentileMs = percentile.pick(tier.ttft);
  const tpotAtPercentileMs = percentile.pick(tier.tpot);
  const meets = attainment >= required;
  const missed: ('TTFT' | 'TPOT')[] = [];
  if (!meets) {
    if (ttftAtPercentileMs === null || ttftAtPercentileMs > targets.ttftMs) missed.push('TTFT');
    if (tpotAtPercentileMs !== null && tpotAtPercentileMs > targets.tpotMs) missed.push('TPOT');
    // Each target alone can be met by 90% while fewer than 90% meet both.
    if (missed.length === 0) missed.push('TTFT', 'TPOT');
  }
  return {
    tier: name,
    submitted: tier.submitted,
    attainment,
    required,
    ttftTargetMs: targets.ttftMs,
    tpotTargetMs: targets.tpotMs,
    percentile: percentile.name,
    ttftAtPercentileMs,
    tpotAtPercentileMs,
    meets,
    missed,
  };
}

/** Every tier that had requests must reach the scenario's attainment; tiers without requests are ignored. */
export function checkSlo(
  result: SimulationResult,
  scenario: Scenario,
): { meetsSlo: boolean; tiers: TierCheck[] } {
  const tiers = result.tiers
    .filter((tier) => tier.tier !== 'all' && tier.submitted > 0)
    .map((tier) => checkTier(tier, scenario));
  return { meetsSlo: tiers.every((tier) => tier.meets), tiers };
}

function formatMs(value: number | null): string {
  if (value === null) return 'none';
  if (Number.isInteger(value) || value >= 100) return `${Math.round(value)} ms`;
  return `${value.toFixed(1)} ms`;
}

/** `misses priority TTFT at 64 replicas (71.2% within SLO, 90% required; TTFT p90 820 ms, target 500 ms)`. */
export function describeMiss(probe: PlanProbe): string {
  const failing = probe.tiers.filter((tier) => !tier.meets);
  const summary = failing.map((tier) => `${tier.tier} ${tier.missed.join(' and ')}`).join(', ');
  const details = failing
    .map((tier) => {
      const figures = tier.missed.map((target) =>
        target === 'TTFT'
          ? `TTFT ${tier.percentile} ${formatMs(tier.ttftAtPercentileMs)}, target ${formatMs(tier.ttftTargetMs)}`
          : `TPOT ${tier.percentile} ${formatMs(tier.tpotAtPercentileMs)}, target ${formatMs(tier.tpotTargetMs)}`,
      );
      return `${tier.tier}: ${(tier.attainment * 100).toFixed(1)}% within SLO, ${(tier.required * 100).toFixed(0)}% required; ${figures.join('; ')}`;
    })
    .join(' | ');
  return `misses ${summary} at ${probe.replicas} replica${probe.replicas === 1 ? '' : 's'} (${details})`;
}

export function candidateLabel(candidate: PlanCandidate): string {
  return `${candidate.hardware} ×${candidate.devices}, ${candidate.routing}, ${candidate.ordering}`;
}

function fleetUsdPerHour(candidate: PlanCandidate, replicas: number): number {
  const profile = hardwareProfile(candidate.hardware);
  if (!profile) throw new PlanError(`unknown hardware '${candidate.hardware}'`);
  return profile.hourlyUsd * candidate.devices * replicas;
}

/**
 * The fewest replicas (≤ maxReplicas) meeting the SLOs: double from 1 until a probe passes, then bisect
 * between the last failure and the first pass. Probes are cached, so no replica count runs twice.
 */
function searchCandidate(
  scenario: Scenario,
  candidate: PlanCandidate,
  options: PlanCapacityOptions & { report: (replicas: number) => void },
): CandidateOutcome {
  const run = options.runScenario ?? simulate;
  const maxReplicas = scenario.plan?.maxReplicas ?? 64;
  const probes: PlanProbe[] = [];
  const byReplicas = new Map<number, PlanProbe>();
  const probe = (replicas: number): PlanProbe => {
    const cached = byReplicas.get(replicas);
    if (cached) return cached;
    options.report(replicas);
    const result = run(
      scenario,
      { ...candidate, replicas },
      {
        ...(options.modelProfile && { modelProfile: options.modelProfile }),
        ...(options.ledgerReplay && { ledgerReplay: options.ledgerReplay }),
        ...(options.onProbeProgress && { onProgress: options.onProbeProgress }),
      },
    );
    const check = checkSlo(result, scenario);
    const entry: PlanProbe = { replicas, meetsSlo: check.meetsSlo, tiers: check.tiers, result };
    byReplicas.set(replicas, entry);
    probes.push(entry);
    return entry;
  };

  let lastFailure = 0;
  let replicas = 1;
  let passing: PlanProbe;
  try {
    for (;;) {
      const attempt = probe(replicas);
      if (attempt.meetsSlo) {
        passing = attempt;
        break;
      }
      lastFailure = replicas;
      if (replicas >= maxReplicas)
        return { status: 'misses-slo', candidate, reason: describeMiss(attempt), probes };
      replicas = Math.min(replicas * 2, maxReplicas);
    }
  } catch (error) {
    if (!(error instanceof ReplicaSpecError)) throw error;
    return { status: 'does-not-fit', candidate, reason: `does not fit: ${error.message}`, probes };
  }
  let low = lastFailure;
  let high = passing.replicas;
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    const attempt = probe(middle);
    if (attempt.meetsSlo) {
      high = middle;
      passing = attempt;
    } else {
      low = middle;
    }
  }
  const result = passing.result;
  return {
    status: 'feasible',
    candidate,
    replicas: passing.replicas,
    gpus: passing.replicas * candidate.devices,
    usdPerHour: fleetUsdPerHour(candidate, passing.replicas),
    usdPerMillionOutputTokens: result.fleet.usdPerMillionOutputTokens,
    joulesPerOutputToken: result.fleet.joulesPerOutputToken,
    result,
    probes,
  };
}

/** Missing figures rank last. */
function compareNullable(a: number | null, b: number | null): number {
  return (a ?? Number.POSITIVE_INFINITY) - (b ?? Number.POSITIVE_INFINITY);
}

export function rankFeasible(outcomes: readonly FeasibleCandidate[]): FeasibleCandidate[] {
  return [...outcomes].sort(
    (a, b) =>
      a.usdPerHour - b.usdPerHour ||
      compareNullable(a.usdPerMillionOutputTokens, b.usdPerMillionOutputTokens) ||
      compareNullable(a.joulesPerOutputToken, b.joulesPerOutputToken),
  );
}

export function planCapacity(scenario: Scenario, options: PlanCapacityOptions = {}): CapacityPlan {
  const candidates = planCandidates(scenario);
  const feasible: FeasibleCandidate[] = [];
  const infeasible: InfeasibleCandidate[] = [];
  candidates.forEach((candidate, candidateIndex) => {
    const position = { candidateIndex, candidateCount: candidates.length };
    const outcome = searchCandidate(scenario, candidate, {
      ...options,
      report: (replicas) => options.onProgress?.({ kind: 'probe', candidate, replicas, ...position }),
    });
    if (outcome.status === 'feasible') feasible.push(outcome);
    else infeasible.push(outcome);
    options.onProgress?.({ kind: 'candidate', outcome, ...position });
  });
  const tierTargets = new Map<ServiceBand, { tier: ServiceBand; ttftMs: number; tpotMs: number }>();
  for (const outcome of [...feasible, ...infeasible])
    for (const probe of outcome.probes)
      for (const tier of probe.tiers)
        tierTargets.set(tier.tier, { tier: tier.tier, ttftMs: tier.ttftTargetMs, tpotMs: tier.tpotTargetMs });
  return {
    scenario: scenario.name,
    attainment: scenario.slo.attainment,
    maxReplicas: scenario.plan?.maxReplicas ?? 64,
    tierTargets: serviceBands.flatMap((tier) => tierTargets.get(tier) ?? []),
    feasible: rankFeasible(feasible),
    infeasible,
  };
}
