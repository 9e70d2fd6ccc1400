import { defaults } from '../core/defaults.js';
import { responsesNativeFeatures } from '../core/request-features.js';
import { SeededRandom } from '../core/seeded-random.js';
import type { ServiceBand } from '../core/service-tiers.js';
import type { PerformanceConstants } from '../performance-model/calibration.js';
import { hardwareProfiles } from '../performance-model/hardware-profiles.js';
import { type ModelProfile, modelProfile } from '../performance-model/model-profiles.js';
import { queueOrderingPolicies } from '../performance-model/queue-ordering.js';
import { ReplicaSpecError, resolveReplicaSpec } from '../performance-model/replica-spec.js';
import type { ReplicaSchedulerSettings } from '../scheduling/replica-scheduler.js';
import { schedulerSettings } from '../scheduling/scheduler-settings.js';
import { arrivalOrder, neverShed, noFairness } from '../scheduling/scheduling-policies.js';
import { type FleetSimulationOptions, FleetSimulator } from './fleet-simulator.js';
import type { Scenario } from './scenario-schema.js';
import type { SimulationResult, SweepPoint } from './simulation-result.js';
import type { LedgerReplay } from './workload/ledger-replay.js';
import { ReplayWorkload, readTraceFile } from './workload/replay-workload.js';
import { SyntheticWorkload } from './workload/synthetic-workload.js';
import type { WorkloadSource } from './workload/workload-source.js';

export interface RunScenarioOptions {
  onProgress?: (completed: number, expected: number | null) => void;
  /** A model read from a GGUF file (async, so resolved by the caller); otherwise `fleet.model` names a profile. */
  modelProfile?: ModelProfile;
  /** See FleetSimulationOptions.coalesceDecodeSteps. */
  coalesceDecodeSteps?: boolean;
  /** See FleetSimulationOptions.onDecision: every routing decision, in order (tests). */
  onDecision?: FleetSimulationOptions['onDecision'];
  /**
   * The ledger a `process: ledger` workload replays, read beforehand (`LedgerReplay.read(arrivals.path)`):
   * the ledger store reads asynchronously, a run is synchronous.
   */
  ledgerReplay?: LedgerReplay;
  /** The performance model's constants; default calibration.ts (a fit passes candidates). */
  constants?: PerformanceConstants;
}

/** The scenario with a sweep point's values in place. */
export function applySweepPoint(scenario: Scenario, point: SweepPoint): Scenario {
  const arrivals = { ...scenario.workload.arrivals };
  if (point.ratePerSecond !== undefined && (arrivals.process === 'poisson' || arrivals.process === 'gamma'))
    arrivals.ratePerSecond = point.ratePerSecond;
  if (point.concurrency !== undefined && arrivals.process === 'closed-loop')
    arrivals.concurrency = point.concurrency;
  return {
    ...scenario,
    fleet: {
      ...scenario.fleet,
      ...(point.replicas !== undefined && { replicas: point.replicas }),
      ...(point.hardware !== undefined && { hardware: point.hardware as Scenario['fleet']['hardware'] }),
      ...(point.devices !== undefined && { devices: point.devices }),
    },
    policies: { ordering: point.ordering ?? scenario.policies.ordering },
    routing: { ...scenario.routing, policy: point.routing ?? scenario.routing.policy },
    workload: { ...scenario.workload, arrivals },
  };
}

/**
 * Runs one simulation: synchronous, deterministic for a given scenario, point and seed. Throws
 * ReplicaSpecError when the model does not fit the hardware.
 */
export function runScenario(
  baseScenario: Scenario,
  point: SweepPoint = {},
  options: RunScenarioOptions = {},
): SimulationResult {
  const startedAt = performance.now();
  const scenario = applySweepPoint(baseScenario, point);
  const fleet = scenario.fleet;
  const model =
    options.modelProfile ??
    modelProfile(fleet.model, { weightDtype: fleet.weightDtype, kvDtype: fleet.kvDtype });
  if (!model) throw new ReplicaSpecError(`unknown model profile '${fleet.model}'`);
  const spec = resolveReplicaSpec(
    {
      hardware: hardwareProfiles[fleet.hardware],
      deviceCount: fleet.devices,
      model,
      flavour: fleet.flavour,
      ...(fleet.maxNumSeqs !== undefined && { maxNumSeqs: fleet.maxNumSeqs }),
      ...(fleet.maxNumBatchedTokens !== undefined && { maxNumBatchedTokens: fleet.maxNumBatchedTokens }),
      prefixCaching: fleet.prefixCaching,
    },
    options.constants,
  );
  const schedulerMode = point.scheduler ?? scenario.scheduling.mode;
  const random = new SeededRandom(scenario.seed);
  const routingRandom = random.fork('routing');
  // From a stream of its own, not forked from `random`: a fork draws from its parent, which would shift
  // the workload's draws and make a run with gateways differ from one without in more than the gateways.
  const balancerRandom = new SeededRandom(scenario.seed).fork('balancer');
  const scheduler = gatewayScheduler(scenario, schedulerMode);
  const replicas = fleetReplicas(fleet).map((replica, index) => ({
    id: `${spec.hardware.name}-${index}`,
    spec,
    ...replica,
  }));
  const simulator = new FleetSimulator({
    replicas,
    routing: scenario.routing,
    random: () => routingRandom.uniform(),
    gateways: {
      count: scenario.gateways.count,
      balancer: scenario.gateways.balancer,
      sharedRoutingState: scenario.gateways.routingState === 'shared',
      balancerRandom: () => balancerRandom.uniform(),
    },
    ordering: queueOrderingPolicies[scenario.policies.ordering] as (typeof queueOrderingPolicies)[string],
    workload: createWorkload(scenario, model.contextTokens, spec.kvBlockTokens, random, options.ledgerReplay),
    slo: scenario.slo,
    ...(options.onProgress && { onProgress: options.onProgress }),
    ...(options.coalesceDecodeSteps !== undefined && { coalesceDecodeSteps: options.coalesceDecodeSteps }),
    ...(options.onDecision && { onDecision: options.onDecision }),
    scheduler: scheduler && ((replica) => scheduler(replica.spec.maxNumSeqs)),
  });
  const outcome = simulator.run();
  const wallSeconds = (performance.now() - startedAt) / 1000;
  return {
    scenario: scenario.name,
    seed: scenario.seed,
    point,
    durationSeconds: outcome.durationSeconds,
    overall: outcome.overall,
    tiers: outcome.tiers,
    fleet: {
      ...outcome.fleet,
      replicas: replicas.length,
      hardware: fleet.hardware,
      model: model.name,
      flavour: spec.flavour,
      routing: scenario.routing.policy,
      ordering: scenario.policies.ordering,
      scheduler: schedulerMode,
    },
    wallSeconds,
    simulatedRequestsPerSecond: wallSeconds > 0 ? outcome.requestsSubmitted / wallSeconds : 0,
  };
}

/**
 * What distinguishes the fleet's replicas: nothing (`replicas` alike, serving `servedFeatures`, absent:
 * all), or their group's label and served features, group after group. Every simulated replica is an
 * emulated one and, like the live emulated engine, serves the Responses API through chat: it refuses the
 * features only a native `/v1/responses` serves (built-in tools …).
 */
function fleetReplicas(fleet: Scenario['fleet']): Array<{
  labels?: Record<string, string>;
  servedFeatures?: ReadonlySet<string>;
  unservedFeatures: ReadonlySet<string>;
}> {
  const served = (features: string[] | undefined) => ({
    ...(features ? { servedFeatures: new Set(features) } : {}),
    unservedFeatures: responsesNativeFeatures,
  });
  if (!fleet.groups) return Array.from({ length: fleet.replicas }, () => served(fleet.servedFeatures));
  return fleet.groups.flatMap((group, index) =>
    Array.from({ length: group.replicas }, () => ({
      labels: { group: group.name ?? `group-${index}` },
      ...served(group.servedFeatures),
    })),
  );
}

function createWorkload(
  scenario: Scenario,
  contextTokens: number,
  blockTokens: number,
  random: SeededRandom,
  ledgerReplay: LedgerReplay | undefined,
): WorkloadSource {
  const workload = scenario.workload;
  const maxRequests = workload.requests ?? Number.POSITIVE_INFINITY;
  const endMs =
    workload.durationSeconds !== undefined ? workload.durationSeconds * 1000 : Number.POSITIVE_INFINITY;
  const arrivals = workload.arrivals;
  if (arrivals.process === 'trace' || arrivals.process === 'ledger') {
    if (arrivals.process === 'ledger' && !ledgerReplay)
      throw new Error(
        `workload.arrivals: the ledger ${arrivals.path} must be read before the run (LedgerReplay.read, passed as ledgerReplay)`,
      );
    const source =
      arrivals.process === 'trace'
        ? { records: readTraceFile(arrivals.path), count: null }
        : { records: (ledgerReplay as LedgerReplay).records(), count: (ledgerReplay as LedgerReplay).count };
    return new ReplayWorkload(source.records, {
      timeScale: arrivals.timeScale,
      maxRequests,
      endMs,
      blockTokens,
      hashBlockTokens: arrivals.process === 'trace' ? arrivals.hashBlockTokens : blockTokens,
      contextTokens,
      expectedRequests: source.count === null ? null : Math.min(source.count, maxRequests),
    });
  }
  for (const requestClass of workload.mix)
    if (requestClass.sharedPrefix && requestClass.sharedPrefix.tokens >= contextTokens)
      throw new ReplicaSpecError(
        `workload.mix.${requestClass.name}.sharedPrefix.tokens (${requestClass.sharedPrefix.tokens}) does not fit the model's ${contextTokens}-token context`,
      );
  return new SyntheticWorkload({
    arrivals,
    mix: workload.mix,
    maxRequests,
    endMs,
    contextTokens,
    blockTokens,
    random,
  });
}

/**
 * The gateway scheduler's settings for a run, by the replica's slots: `slo` as the scenario's `scheduling`
 * section says (Gravity's defaults otherwise), exactly as `gravity serve` builds them; `fcfs` one
 * first-come queue with no shedding and no reserve (the baseline); `off` none. Tier targets come from the
 * scenario's SLOs, queue bounds from `slo.<tier>.maxQueueWaitMs` or Gravity's defaults, slots from
 * `slotsPerReplica` or the replica's maxNumSeqs.
 */
function gatewayScheduler(
  scenario: Scenario,
  mode: string,
): ((maxNumSeqs: number) => ReplicaSchedulerSettings) | null {
  if (mode === 'off') return null;
  const scheduling = scenario.scheduling;
  const tier = (name: ServiceBand) => ({
    ttftMs: scenario.slo[name].ttftMs,
    tpotMs: scenario.slo[name].tpotMs,
    maxQueueWaitMs: scenario.slo[name].maxQueueWaitMs ?? defaults.tiers[name].maxQueueWaitMs,
  });
  const tiers = {
    priority: tier('priority'),
    default: tier('default'),
    flex: tier('flex'),
    batch: tier('batch'),
  };
  return (maxNumSeqs) => {
    const settings = schedulerSettings(scheduling, tiers, scheduling.slotsPerReplica ?? maxNumSeqs);
    if (mode === 'slo') return settings;
    return {
      ...settings,
      tierBands: false,
      ordering: arrivalOrder,
      fairness: noFairness,
      saturation: neverShed,
      priorityReserveFraction: 0,
    };
  };
}
