import FlatQueue from 'flatqueue';
import { bandRank, serviceBands } from '../core/service-tiers.js';
import { VirtualClock } from '../core/virtual-clock.js';
import {
  type AttemptFailure,
  type FleetAttempt,
  FleetCore,
  type FleetDecision,
  type FleetRoutingSettings,
  fleetRequest,
  isRefusal,
} from '../fleet/fleet-core.js';
import { performanceModelEnergySource } from '../performance-model/calibration.js';
import type { QueueOrderingPolicy } from '../performance-model/queue-ordering.js';
import type { ReplicaSpec } from '../performance-model/replica-spec.js';
import { servesFeaturesFilter } from '../routing/filters/serves-features-filter.js';
import type { ReplicaLabels } from '../routing/routing-policy.js';
import type { ReplicaSchedulerSettings } from '../scheduling/replica-scheduler.js';
import type { SloTargets } from './scenario-schema.js';
import {
  type CompletionFigures,
  ModelledReplica,
  type SimulatedEngine,
  type SimulatedEngineEvents,
} from './simulated-replica.js';
import type { FleetResult, TierResult } from './simulation-result.js';
import { TierStatistics } from './tier-statistics.js';
import type { SimulatedRequest, WorkloadSource } from './workload/workload-source.js';

/** The one model a simulated fleet serves (every replica serves it). */
export const simulatedModel = 'simulated-model';

export interface SimulatedReplicaOptions {
  /** Stable id, e.g. `h100-sxm-0`: what routing explanations and `routing.replicas.<id>` labels name. */
  id: string;
  spec: ReplicaSpec;
  /** Labels the replica carries by itself; `routing.replicas.<id>` adds to them. */
  labels?: ReplicaLabels;
  /** Request features it serves (core/request-features.ts); absent: all of them. */
  servedFeatures?: ReadonlySet<string> | undefined;
  /** Request features it refuses although `servedFeatures` lets them in; absent: none. */
  unservedFeatures?: ReadonlySet<string> | undefined;
}

export interface FleetSimulationOptions {
  replicas: readonly SimulatedReplicaOptions[];
  /** The `routing` settings, as Gravity's config writes them (same schema, same defaults). */
  routing: FleetRoutingSettings;
  /** Uniform in [0, 1) for routing ties: seeded, so a run is reproducible. */
  random: () => number;
  ordering: QueueOrderingPolicy;
  workload: WorkloadSource;
  slo: SloTargets;
  /**
   * Take runs of decode-only steps as one event (default). Off, every step is an event — the emulated
   * engine's way; results are the same, which the tests check.
   */
  coalesceDecodeSteps?: boolean;
  /**
   * The gateway's scheduler in front of each replica (tier bands, VTC, shedding), as `gravity serve`
   * runs it; null: straight to the engine queues.
   */
  scheduler?: ((replica: SimulatedReplicaOptions) => ReplicaSchedulerSettings) | null;
  /** Each replica's engine; default: the performance model (ModelledReplica). Tests script their own. */
  engineFor?: (replica: SimulatedReplicaOptions, events: SimulatedEngineEvents) => SimulatedEngine;
  /**
   * Gateway replicas behind a load balancer, all in front of these replicas (`gateways:` in a scenario);
   * absent: one gateway, as before.
   */
  gateways?: SimulatedGateways | undefined;
  /** Every decision of the fleet core, in order (parity tests; allocates per request). */
  onDecision?: (decision: FleetDecision<SimulatedRequest>) => void;
  /** Called now and then with completed requests and the expected total (null when unknown). */
  onProgress?: (completed: number, expected: number | null) => void;
}

export interface SimulatedGateways {
  count: number;
  /** How the load balancer spreads requests: in turn, or uniformly at random (`balancerRandom`). */
  balancer: 'round-robin' | 'random';
  /** One prefix index and latency view for all of them (a shared store, without its latency). */
  sharedRoutingState: boolean;
  /** Uniform in [0, 1) for the random balancer: seeded, apart from routing's draws. */
  balancerRandom: () => number;
}

export interface FleetSimulationOutcome {
  durationSeconds: number;
  overall: TierResult;
  tiers: TierResult[];
  fleet: Omit<FleetResult, 'routing' | 'ordering' | 'scheduler' | 'hardware' | 'model' | 'flavour'>;
  requestsSubmitted: number;
}

/**
 * The fleet simulator: the fleet core's event-loop driver. The same FleetCore the live gateway drives
 * routes, queues and retries every request here; each replica's engine is the performance model stepped
 * on a virtual clock. Events are the next open-loop arrival, follow-ups (the next turn of a session, a
 * closed-loop user's next request), each engine's next event (step end) and the core's next queue bound;
 * the earliest runs next — at a tie engine events first (a step end may dispatch a queued request), then
 * queue bounds, follow-ups and arrivals.
 */
export class FleetSimulator {
  readonly clock = new VirtualClock();
  private readonly core: FleetCore<SimulatedRequest>;
  private readonly engines: SimulatedEngine[];
  /** Each engine's next event by replica index; entries superseded by a change are dropped lazily. */
  private readonly engineEvents = new FlatQueue<number>();
  private readonly followUps = new FlatQueue<SimulatedRequest>();
  private readonly tierStatistics: TierStatistics[];
  private readonly overall = new TierStatistics('all', null);
  private submitted = 0;
  private completed = 0;
  private firstArrivalMs = Number.POSITIVE_INFINITY;
  private lastCompletionMs = 0;
  private readonly progressEvery: number;
  /** The round-robin balancer's last gateway. */
  private lastGateway = -1;

  constructor(private readonly options: FleetSimulationOptions) {
    this.tierStatistics = serviceBands.map((tier) => new TierStatistics(tier, options.slo[tier]));
    const engineEvents: SimulatedEngineEvents = {
      firstToken: (request, atMs) => {
        if (request.attempt) this.core.firstToken(request.attempt, atMs);
      },
      tokens: (request, tokens) => {
        if (request.attempt) this.core.tokens(request.attempt, tokens);
      },
      finished: (request, atMs, figures) => this.complete(request, atMs, figures),
      failed: (request, atMs, failure) => this.failed(request, atMs, failure),
      decodeSteps: (sequencesByRank, steps, durationMs, pause) => {
        const gapMs = durationMs / steps;
        let all = 0;
        let allPaused = 0;
        for (let rank = 0; rank < serviceBands.length; rank++) {
          const sequences = sequencesByRank[rank] as number;
          // A sequence held by prefill-only steps waited the pause plus one step for its next token.
          const paused = pause ? Math.min(sequences, pause.sequencesByRank[rank] as number) : 0;
          const count = sequences * steps - paused;
          all += count;
          allPaused += paused;
          this.tierStatistics[rank]?.recordInterTokenGaps(gapMs, count);
          if (pause) this.tierStatistics[rank]?.recordInterTokenGaps(gapMs + pause.ms, paused);
        }
        this.overall.recordInterTokenGaps(gapMs, all);
        if (pause) this.overall.recordInterTokenGaps(gapMs + pause.ms, allPaused);
      },
    };
    const coalesce = options.coalesceDecodeSteps !== false;
    this.engines = options.replicas.map(
      (replica) =>
        options.engineFor?.(replica, engineEvents) ??
        new ModelledReplica(replica.spec, options.ordering, engineEvents, coalesce),
    );
    this.core = new FleetCore<SimulatedRequest>({
      replicas: options.replicas.map((replica, index) => ({
        id: replica.id,
        models: [{ id: simulatedModel, contextTokens: replica.spec.model.contextTokens }],
        labels: { hardware: replica.spec.hardware.name, ...replica.labels },
        signals: (this.engines[index] as SimulatedEngine).signals,
        scheduler: options.scheduler?.(replica) ?? null,
        servedFeatures: replica.servedFeatures,
        unservedFeatures: replica.unservedFeatures,
      })),
      routing: options.routing,
      random: options.random,
      explain: false,
      ...(options.gateways && {
        gateways: { count: options.gateways.count, sharedRoutingState: options.gateways.sharedRoutingState },
      }),
      events: {
        onDispatch: (attempt, nowMs) => {
          attempt.request.tag.attempt = attempt;
          this.runOnEngine(attempt, nowMs);
        },
        onExpire: (attempt, _refusal, nowMs) => this.refuse(attempt.request.tag, nowMs),
        ...(options.onDecision && { onDecision: options.onDecision }),
      },
    });
    const expected = options.workload.expectedRequests;
    this.progressEvery = expected ? Math.max(1, Math.floor(expected / 200)) : 1000;
  }

  private submit(request: SimulatedRequest, nowMs: number): void {
    this.submitted++;
    this.firstArrivalMs = Math.min(this.firstArrivalMs, nowMs);
    (this.tierStatistics[bandRank[request.tier]] as TierStatistics).submitted++;
    this.overall.submitted++;
    const core = this.core;
    const gateway = this.balance();
    const outcome = core.submit(
      fleetRequest({
        tag: request,
        model: simulatedModel,
        tenant: request.tenant,
        band: request.tier,
        promptTokens: request.promptTokens,
        maxTokens: request.outputTokens,
        // The workload's block hashes are the router's prefix-index keys, as prompt-text hashes are live.
        promptBlockHashes: core.usesPromptBlocks(request.tier) ? request.promptBlockHashes : null,
        features: request.features,
        gateway,
      }),
      nowMs,
    );
    if (isRefusal(outcome)) {
      // The live gateway answers these with a 400 naming the parameter; the result counts them apart.
      if (outcome.kind === 'no-replica' && outcome.filter === servesFeaturesFilter.type)
        this.countUnserved(request);
      this.refuse(request, nowMs);
    }
  }

  /**
   * The gateway the load balancer hands the request to. Every request goes through the balancer again, a
   * session's next turn included: a load balancer without session affinity, the case in question.
   */
  private balance(): number {
    const gateways = this.options.gateways;
    if (!gateways || gateways.count === 1) return 0;
    if (gateways.balancer === 'random') return Math.floor(gateways.balancerRandom() * gateways.count);
    this.lastGateway = (this.lastGateway + 1) % gateways.count;
    return this.lastGateway;
  }

  private countUnserved(request: SimulatedRequest): void {
    (this.tierStatistics[bandRank[request.tier]] as TierStatistics).unserved++;
    this.overall.unserved++;
  }

  /** The core dispatched the attempt: its replica's engine takes it. */
  private runOnEngine(attempt: FleetAttempt<SimulatedRequest>, nowMs: number): void {
    const index = attempt.replica.index;
    const engine = this.engines[index] as SimulatedEngine;
    engine.submit(attempt.request.tag, nowMs);
    const atMs = engine.nextEventMs();
    if (Number.isFinite(atMs)) this.engineEvents.push(index, atMs);
  }

  private complete(request: SimulatedRequest, atMs: number, figures: CompletionFigures): void {
    const statistics = this.tierStatistics[bandRank[request.tier]] as TierStatistics;
    const result = {
      ttftMs: figures.firstTokenMs - request.arrivalMs,
      e2eMs: atMs - request.arrivalMs,
      queueMs: figures.admittedMs - request.arrivalMs,
      promptTokens: request.promptTokens,
      cachedPromptTokens: figures.cachedPromptTokens,
      outputTokens: request.outputTokens,
    };
    const metSlo = statistics.recordCompletion(result);
    this.overall.recordCompletion({ ...result, metSlo });
    this.completed++;
    this.lastCompletionMs = atMs;
    const attempt = request.attempt;
    if (attempt) {
      // An engine that does not stream tokens (the performance model) has its answer counted for
      // fairness at the end; the live gateway and scripted engines count token by token.
      if (!(this.engines[attempt.replica.index] as SimulatedEngine).reportsTokens)
        this.core.tokens(attempt, request.outputTokens);
      this.core.finish(
        attempt,
        atMs,
        request.outputTokens > 1 ? (atMs - figures.firstTokenMs) / (request.outputTokens - 1) : null,
      );
    }
    if (this.completed % this.progressEvery === 0)
      this.options.onProgress?.(this.completed, this.options.workload.expectedRequests);
    const next = this.options.workload.onComplete(request, atMs);
    if (next) this.followUps.push(next, next.arrivalMs);
  }

  /** An attempt failed on its engine: the core retries it elsewhere or the request fails. */
  private failed(request: SimulatedRequest, atMs: number, failure: AttemptFailure): void {
    const attempt = request.attempt;
    if (!attempt) return;
    const next = this.core.fail(attempt, atMs, failure);
    if (next === null || isRefusal(next)) this.refuse(request, atMs);
  }

  /** The fleet refused or failed the request (shed, past its queue bound, no replica). Its client carries on. */
  private refuse(request: SimulatedRequest, nowMs: number): void {
    (this.tierStatistics[bandRank[request.tier]] as TierStatistics).rejected++;
    this.overall.rejected++;
    const next = this.options.workload.onComplete(request, nowMs);
    if (next) this.followUps.push(next, next.arrivalMs);
  }

  private nextEngineEventMs(): number {
    while (this.engineEvents.length > 0) {
      const engine = this.engines[this.engineEvents.peek() as number] as SimulatedEngine;
      const atMs = this.engineEvents.peekValue() as number;
      if (engine.nextEventMs() === atMs) return atMs;
      this.engineEvents.pop();
    }
    return Number.POSITIVE_INFINITY;
  }

  run(): FleetSimulationOutcome {
    const workload = this.options.workload;
    const core = this.core;
    for (;;) {
      const engineMs = this.nextEngineEventMs();
      const followUpMs =
        this.followUps.length > 0 ? (this.followUps.peekValue() as number) : Number.POSITIVE_INFINITY;
      const arrivalMs = workload.peekArrivalMs();
      const expiryMs = core.nextExpiryMs();
      if (expiryMs < engineMs && expiryMs <= followUpMs && expiryMs <= arrivalMs) {
        this.clock.advanceTo(expiryMs);
        core.expire(expiryMs);
      } else if (engineMs <= followUpMs && engineMs <= arrivalMs) {
        if (engineMs === Number.POSITIVE_INFINITY) break;
        const index = this.engineEvents.pop() as number;
        const engine = this.engines[index] as SimulatedEngine;
        this.clock.advanceTo(engineMs);
        engine.runEvent(engineMs);
        const nextMs = engine.nextEventMs();
        if (Number.isFinite(nextMs)) this.engineEvents.push(index, nextMs);
      } else if (followUpMs <= arrivalMs) {
        this.clock.advanceTo(followUpMs);
        this.submit(this.followUps.pop() as SimulatedRequest, followUpMs);
      } else {
        this.clock.advanceTo(arrivalMs);
        this.submit(workload.takeArrival(), arrivalMs);
      }
    }
    this.options.onProgress?.(this.completed, this.options.workload.expectedRequests);
    return this.outcome();
  }

  private outcome(): FleetSimulationOutcome {
    const startMs = Number.isFinite(this.firstArrivalMs) ? this.firstArrivalMs : 0;
    const endMs = Math.max(this.lastCompletionMs, startMs);
    const durationMs = endMs - startMs;
    const durationSeconds = durationMs / 1000;
    let busyMs = 0;
    let kvUse = 0;
    let energyJoules = 0;
    let preemptions = 0;
    let queried = 0;
    let hits = 0;
    let gpus = 0;
    let costUsd = 0;
    let kvBlocks = 0;
    const replicas = this.options.replicas;
    replicas.forEach((replica, index) => {
      const figures = (this.engines[index] as SimulatedEngine).runFigures(endMs);
      const spec = replica.spec;
      busyMs += figures.busyMs;
      kvUse += durationMs > 0 ? figures.kvUseIntegralMs / durationMs : 0;
      energyJoules += (spec.idleWatts * durationMs) / 1000 + figures.dynamicEnergyJoules;
      preemptions += figures.preemptions;
      queried += figures.prefixQueriedTokens;
      hits += figures.prefixHitTokens;
      gpus += spec.deviceCount;
      costUsd += (spec.hourlyUsd * durationSeconds) / 3600;
      kvBlocks += spec.kvBlocks;
    });
    const count = replicas.length;
    const overall = this.overall.result(durationSeconds);
    const outputTokens = overall.outputTokens;
    const meanTpotMs = overall.tpot.meanMs;
    const hardware = [...new Set(replicas.map((replica) => replica.spec.hardware))];
    return {
      durationSeconds,
      overall,
      tiers: this.tierStatistics
        .filter((tier) => tier.submitted > 0)
        .map((tier) => tier.result(durationSeconds)),
      requestsSubmitted: this.submitted,
      fleet: {
        devicesPerReplica: count > 0 ? gpus / count : 0,
        replicas: count,
        gpus,
        kvBlocksPerReplica: count > 0 ? Math.round(kvBlocks / count) : 0,
        utilisation: durationMs > 0 && count > 0 ? busyMs / (durationMs * count) : 0,
        meanKvUse: count > 0 ? kvUse / count : 0,
        prefixHitRate: queried > 0 ? hits / queried : 0,
        preemptions,
        energyJoules,
        energySource: performanceModelEnergySource,
        costUsd,
        costSource: `estimated:hourly-price (${hardware
          .map((profile) => `${profile.name} at $${profile.hourlyUsd}/device-hour`)
          .join(', ')})`,
        joulesPerOutputToken: outputTokens > 0 ? energyJoules / outputTokens : null,
        outputTokensPerKwh: energyJoules > 0 ? outputTokens / (energyJoules / 3.6e6) : null,
        usdPerMillionOutputTokens: outputTokens > 0 ? (costUsd / outputTokens) * 1e6 : null,
        outputTokensPerSecondPerGpu:
          durationSeconds > 0 && gpus > 0 ? outputTokens / durationSeconds / gpus : 0,
        tokensPerSecondPerUser: meanTpotMs ? 1000 / meanTpotMs : null,
      },
    };
  }
}
