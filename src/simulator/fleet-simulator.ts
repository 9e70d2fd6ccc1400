import FlatQueue from 'flatqueue';
import { bandRank, type ServiceBand, serviceBands } from '../core/service-tiers.js';
import { powerModelName } from '../performance-model/calibration.js';
import {
  type ModelledSequence,
  ReplicaModel,
  type ReplicaModelEvents,
} from '../performance-model/replica-model.js';
import type { ReplicaSpec } from '../performance-model/replica-spec.js';
import type { ReplicaLoadView, RoutingPolicy } from '../routing/routing-policy.js';
import type { QueueOrderingPolicy } from '../scheduling/queue-ordering.js';
import { ReplicaScheduler, type ReplicaSchedulerSettings } from '../scheduling/replica-scheduler.js';
import type { SloTargets } from './scenario-schema.js';
import type { FleetResult, TierResult } from './simulation-result.js';
import { TierStatistics } from './tier-statistics.js';
import { VirtualClock } from './virtual-clock.js';
import type { SimulatedRequest, WorkloadSource } from './workload/workload-source.js';

/** A replica as routing policies see it: live figures read from its engine model, no copies. */
class SimulatedReplica implements ReplicaLoadView {
  kvUseIntegralMs = 0;
  lastSampleMs = 0;

  scheduler: ReplicaScheduler<SimulatedRequest> | null = null;

  constructor(
    readonly id: string,
    readonly model: ReplicaModel<SimulatedRequest>,
  ) {}

  /** Waiting in the engine's queue and, with a gateway scheduler, in the gateway's queue for it. */
  get waitingRequests(): number {
    return this.model.waitingRequests + (this.scheduler?.queuedRequests ?? 0);
  }
  get runningRequests(): number {
    return this.model.runningRequests;
  }
  get kvUsedFraction(): number {
    return this.model.kv.usedFraction;
  }

  sampleKv(nowMs: number): void {
    this.kvUseIntegralMs += this.model.kv.usedFraction * (nowMs - this.lastSampleMs);
    this.lastSampleMs = nowMs;
  }
}

export interface FleetSimulationOptions {
  spec: ReplicaSpec;
  replicas: number;
  routing: RoutingPolicy;
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
   * runs it (run-scenario gives it the replica's maxNumSeqs as slots unless set). Null: straight to the engine queues.
   */
  scheduler?: ReplicaSchedulerSettings | null;
  /** Called now and then with completed requests and the expected total (null when unknown). */
  onProgress?: (completed: number, expected: number | null) => void;
}

export interface FleetSimulationOutcome {
  durationSeconds: number;
  overall: TierResult;
  tiers: TierResult[];
  fleet: Omit<FleetResult, 'routing' | 'ordering' | 'scheduler' | 'hardware' | 'model' | 'flavour'>;
  requestsSubmitted: number;
}

/**
 * The discrete-event fleet simulator: arrivals, routing, and every replica's engine steps on one virtual
 * clock. Events are the next open-loop arrival, follow-ups (the next turn of a session, a closed-loop
 * user's next request) and each replica's step end; the earliest runs next, step ends first at a tie.
 * The routing policy and the engine model are the very modules the live gateway and emulated engine use.
 */
export class FleetSimulator {
  readonly clock = new VirtualClock();
  private readonly replicas: SimulatedReplica[] = [];
  private readonly stepEnds = new FlatQueue<number>();
  private readonly followUps = new FlatQueue<SimulatedRequest>();
  private readonly tierStatistics: TierStatistics[];
  private readonly overall = new TierStatistics('all', null);
  private submitted = 0;
  private completed = 0;
  private firstArrivalMs = Number.POSITIVE_INFINITY;
  private lastCompletionMs = 0;
  private readonly progressEvery: number;
  private readonly horizonMs: (nowMs: number) => number;
  /** Gateway-queue wait bounds, by replica index: the earliest per replica, checked lazily. */
  private readonly expiries = new FlatQueue<number>();
  /** True while a replica completes a step: dispatches then join the step the loop starts next. */
  private completingStep = false;

  constructor(private readonly options: FleetSimulationOptions) {
    this.tierStatistics = serviceBands.map((tier) => new TierStatistics(tier, options.slo[tier]));
    for (let index = 0; index < options.replicas; index++) {
      const model = new ReplicaModel(options.spec, options.ordering, this.replicaEvents());
      const replica = new SimulatedReplica(`${options.spec.hardware.name}-${index}`, model);
      if (options.scheduler) {
        replica.scheduler = new ReplicaScheduler<SimulatedRequest>(options.scheduler, {
          onDispatch: (ticket, nowMs) => {
            ticket.tag.ticket = ticket;
            this.startOnReplica(index, ticket.tag, nowMs);
          },
          onExpire: (ticket, nowMs) => this.reject(ticket.tag, nowMs),
        });
      }
      this.replicas.push(replica);
    }
    this.horizonMs =
      options.coalesceDecodeSteps === false ? (nowMs) => nowMs : () => Number.POSITIVE_INFINITY;
    const expected = options.workload.expectedRequests;
    this.progressEvery = expected ? Math.max(1, Math.floor(expected / 200)) : 1000;
  }

  private replicaEvents(): ReplicaModelEvents<SimulatedRequest> {
    return {
      onFirstToken: (sequence, atMs) => {
        // The gateway scheduler learns the engine's own TTFT from it, as it does live.
        const request = sequence.tag;
        if (request.ticket)
          (this.replicas[request.replicaIndex as number] as SimulatedReplica).scheduler?.onFirstToken(
            request.ticket,
            atMs,
          );
      },
      onDecodeSteps: (sequencesByPriority, steps, durationMs) => {
        const gapMs = durationMs / steps;
        let all = 0;
        for (let rank = 0; rank < serviceBands.length; rank++) {
          const count = (sequencesByPriority[rank] as number) * steps;
          all += count;
          this.tierStatistics[rank]?.recordInterTokenGaps(gapMs, count);
        }
        this.overall.recordInterTokenGaps(gapMs, all);
      },
      onFinish: (sequence, atMs, cancelled) => {
        if (!cancelled) this.complete(sequence, atMs);
      },
    };
  }

  private complete(sequence: ModelledSequence<SimulatedRequest>, atMs: number): void {
    const request = sequence.tag;
    const statistics = this.tierStatistics[bandRank[request.tier]] as TierStatistics;
    const figures = {
      ttftMs: (sequence.firstTokenMs as number) - request.arrivalMs,
      e2eMs: atMs - request.arrivalMs,
      queueMs: (sequence.admittedMs as number) - request.arrivalMs,
      promptTokens: request.promptTokens,
      cachedPromptTokens: sequence.cachedPromptTokens,
      outputTokens: request.outputTokens,
    };
    const metSlo = statistics.recordCompletion(figures);
    this.overall.recordCompletion({ ...figures, metSlo });
    this.completed++;
    this.lastCompletionMs = atMs;
    if (request.ticket) {
      // VTC counts the answer at its end here (the live gateway counts it token by token).
      const scheduler = (this.replicas[request.replicaIndex as number] as SimulatedReplica).scheduler;
      scheduler?.onTokens(request.ticket, request.outputTokens);
      scheduler?.release(request.ticket, atMs);
      this.armExpiry(request.replicaIndex as number);
    }
    if (this.completed % this.progressEvery === 0)
      this.options.onProgress?.(this.completed, this.options.workload.expectedRequests);
    const next = this.options.workload.onComplete(request, atMs);
    if (next) this.followUps.push(next, next.arrivalMs);
  }

  private submit(request: SimulatedRequest, nowMs: number): void {
    this.submitted++;
    this.firstArrivalMs = Math.min(this.firstArrivalMs, nowMs);
    (this.tierStatistics[bandRank[request.tier]] as TierStatistics).submitted++;
    this.overall.submitted++;
    const priority = bandRank[request.tier];
    const routing = this.options.routing;
    const index = routing.pick(
      this.replicas,
      {
        promptTokens: request.promptTokens,
        priority,
        maxTokens: request.outputTokens,
        tenant: request.tenant,
        // The workload's block hashes are the router's prefix-index keys, as prompt-text hashes are live.
        promptBlockHashes: routing.usesPromptBlocks ? request.promptBlockHashes : null,
      },
      nowMs,
    );
    request.replicaIndex = index;
    const scheduler = (this.replicas[index] as SimulatedReplica).scheduler;
    if (!scheduler) {
      this.startOnReplica(index, request, nowMs);
      return;
    }
    const outcome = scheduler.submit(
      { tag: request, tenant: request.tenant, tier: request.tier, promptTokens: request.promptTokens },
      nowMs,
    );
    if (outcome.decision.kind === 'shed') this.reject(request, nowMs);
    else this.armExpiry(index);
  }

  /** Hands a request to the replica's engine model, starting a step or ending a span if it can join now. */
  private startOnReplica(index: number, request: SimulatedRequest, nowMs: number): void {
    const replica = this.replicas[index] as SimulatedReplica;
    const model = replica.model;
    model.submit(
      {
        promptTokens: request.promptTokens,
        outputTokens: request.outputTokens,
        promptBlockHashes: request.promptBlockHashes,
        outputSeed: request.outputSeed,
        priority: bandRank[request.tier],
        tag: request,
      },
      nowMs,
    );
    if (this.completingStep) return; // the event loop starts the replica's next step right after
    if (!model.stepInProgress) {
      replica.sampleKv(nowMs);
      if (model.startStep(nowMs, this.horizonMs(nowMs))) this.stepEnds.push(index, model.stepEndMs);
    } else if (model.canAdmitHead()) {
      // A decode span in progress ends after its current step, so the newcomer joins the next one.
      const plannedEndMs = model.stepEndMs;
      model.interruptSpan(nowMs);
      if (model.stepEndMs !== plannedEndMs) this.stepEnds.push(index, model.stepEndMs);
    }
  }

  /** The scheduler refused the request (shed, or it waited past its bound). Its client carries on. */
  private reject(request: SimulatedRequest, nowMs: number): void {
    (this.tierStatistics[bandRank[request.tier]] as TierStatistics).rejected++;
    this.overall.rejected++;
    const next = this.options.workload.onComplete(request, nowMs);
    if (next) this.followUps.push(next, next.arrivalMs);
  }

  private armExpiry(index: number): void {
    const atMs =
      (this.replicas[index] as SimulatedReplica).scheduler?.nextExpiryMs() ?? Number.POSITIVE_INFINITY;
    if (Number.isFinite(atMs)) this.expiries.push(index, atMs);
  }

  private nextExpiryMs(): number {
    while (this.expiries.length > 0) {
      const replica = this.replicas[this.expiries.peek() as number] as SimulatedReplica;
      const atMs = this.expiries.peekValue() as number;
      if (replica.scheduler?.nextExpiryMs() === atMs) return atMs;
      this.expiries.pop();
    }
    return Number.POSITIVE_INFINITY;
  }

  private nextStepEndMs(): number {
    // Entries superseded by an interrupted span are dropped lazily.
    while (this.stepEnds.length > 0) {
      const replica = this.replicas[this.stepEnds.peek() as number] as SimulatedReplica;
      if (replica.model.stepEndMs === this.stepEnds.peekValue()) return this.stepEnds.peekValue() as number;
      this.stepEnds.pop();
    }
    return Number.POSITIVE_INFINITY;
  }

  run(): FleetSimulationOutcome {
    const workload = this.options.workload;
    for (;;) {
      const stepEndMs = this.nextStepEndMs();
      const followUpMs =
        this.followUps.length > 0 ? (this.followUps.peekValue() as number) : Number.POSITIVE_INFINITY;
      const arrivalMs = workload.peekArrivalMs();
      const expiryMs = this.nextExpiryMs();
      if (expiryMs < stepEndMs && expiryMs <= followUpMs && expiryMs <= arrivalMs) {
        const index = this.expiries.pop() as number;
        this.clock.advanceTo(expiryMs);
        (this.replicas[index] as SimulatedReplica).scheduler?.expire(expiryMs);
        this.armExpiry(index);
      } else if (stepEndMs <= followUpMs && stepEndMs <= arrivalMs) {
        if (stepEndMs === Number.POSITIVE_INFINITY) break;
        const index = this.stepEnds.pop() as number;
        const replica = this.replicas[index] as SimulatedReplica;
        this.clock.advanceTo(stepEndMs);
        replica.sampleKv(stepEndMs);
        this.completingStep = true;
        replica.model.completeStep();
        this.completingStep = false;
        if (replica.model.startStep(stepEndMs, this.horizonMs(stepEndMs)))
          this.stepEnds.push(index, replica.model.stepEndMs);
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
    const spec = this.options.spec;
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
    for (const replica of this.replicas) {
      replica.sampleKv(endMs);
      busyMs += replica.model.busyMs;
      kvUse += durationMs > 0 ? replica.kvUseIntegralMs / durationMs : 0;
      energyJoules += (spec.idleWatts * durationMs) / 1000 + replica.model.dynamicEnergyJoules;
      preemptions += replica.model.preemptionsTotal;
      const stats = replica.model.kv.prefixStats;
      queried += stats.queriedTokens;
      hits += stats.hitTokens;
    }
    const replicas = this.replicas.length;
    const gpus = replicas * spec.deviceCount;
    const costUsd = (spec.hourlyUsd * replicas * durationSeconds) / 3600;
    const overall = this.overall.result(durationSeconds);
    const outputTokens = overall.outputTokens;
    const meanTpotMs = overall.tpot.meanMs;
    return {
      durationSeconds,
      overall,
      tiers: this.tierStatistics
        .filter((tier) => tier.submitted > 0)
        .map((tier) => tier.result(durationSeconds)),
      requestsSubmitted: this.submitted,
      fleet: {
        devicesPerReplica: spec.deviceCount,
        replicas,
        gpus,
        kvBlocksPerReplica: spec.kvBlocks,
        utilisation: durationMs > 0 ? busyMs / (durationMs * replicas) : 0,
        meanKvUse: kvUse / replicas,
        prefixHitRate: queried > 0 ? hits / queried : 0,
        preemptions,
        energyJoules,
        energySource: powerModelName,
        costUsd,
        costSource: `estimated:hourly-price (${spec.hardware.name} at $${spec.hardware.hourlyUsd}/device-hour)`,
        joulesPerOutputToken: outputTokens > 0 ? energyJoules / outputTokens : null,
        outputTokensPerKwh: energyJoules > 0 ? outputTokens / (energyJoules / 3.6e6) : null,
        usdPerMillionOutputTokens: outputTokens > 0 ? (costUsd / outputTokens) * 1e6 : null,
        outputTokensPerSecondPerGpu: durationSeconds > 0 ? outputTokens / durationSeconds / gpus : 0,
        tokensPerSecondPerUser: meanTpotMs ? 1000 / meanTpotMs : null,
      },
    };
  }
}
