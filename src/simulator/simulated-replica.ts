import { bandRank } from '../core/service-tiers.js';
import type { AttemptFailure, ReplicaSignals } from '../fleet/fleet-core.js';
import type { QueueOrderingPolicy } from '../performance-model/queue-ordering.js';
import { type ModelledSequence, ReplicaModel } from '../performance-model/replica-model.js';
import type { ReplicaSpec } from '../performance-model/replica-spec.js';
import type { SimulatedRequest } from './workload/workload-source.js';

/** How a simulated request ended on its replica, for the run's statistics. */
export interface CompletionFigures {
  firstTokenMs: number;
  /** When the engine admitted it into its batch (after Gravity's queue and the engine's own). */
  admittedMs: number;
  cachedPromptTokens: number;
}

/** What a simulated engine tells the simulator; the simulator tells the fleet core. */
export interface SimulatedEngineEvents {
  firstToken(request: SimulatedRequest, atMs: number): void;
  /** Tokens streamed (engines with `reportsTokens`); they count against the tenant's fair share. */
  tokens(request: SimulatedRequest, tokens: number): void;
  finished(request: SimulatedRequest, atMs: number, figures: CompletionFigures): void;
  failed(request: SimulatedRequest, atMs: number, failure: AttemptFailure): void;
  /**
   * Decoding sequences each made one token per step for `steps` steps of `durationMs` in all, by tier rank.
   * `pause`: before these steps, prefill-only steps (engines without chunked prefill) held
   * `pause.sequencesByRank` of them for `pause.ms`, so each of those waited that much longer for its
   * first token of these steps.
   */
  decodeSteps(
    sequencesByRank: ArrayLike<number>,
    steps: number,
    durationMs: number,
    pause?: DecodePause,
  ): void;
}

/** Decodes held back by prefill-only steps, reported with the decode steps that follow them. */
export interface DecodePause {
  ms: number;
  sequencesByRank: ArrayLike<number>;
}

/** What one replica's engine did over the run, for fleet figures. */
export interface ReplicaRunFigures {
  busyMs: number;
  kvUseIntegralMs: number;
  dynamicEnergyJoules: number;
  preemptions: number;
  prefixQueriedTokens: number;
  prefixHitTokens: number;
}

/**
 * One replica's engine on the simulator's clock: the fleet core dispatches requests to it (`submit`),
 * the simulator runs its next event when the clock reaches `nextEventMs()`. The performance model is the
 * engine the simulator ships (ModelledReplica); tests can drive the core with scripted engines.
 */
export interface SimulatedEngine {
  readonly signals: ReplicaSignals;
  /**
   * Whether it reports tokens as they stream (`tokens` events). The performance model does not: it
   * steps whole batches in O(1), so its answers count for fairness at their end instead.
   */
  readonly reportsTokens: boolean;
  submit(request: SimulatedRequest, nowMs: number): void;
  /** When its next event is due; Infinity while idle. */
  nextEventMs(): number;
  /** Runs the event due at `nowMs` (= `nextEventMs()`). */
  runEvent(nowMs: number): void;
  /** Totals at the end of the run (`endMs`). */
  runFigures(endMs: number): ReplicaRunFigures;
}

/**
 * A replica whose engine is the performance model (src/performance-model/), stepped on virtual time: the
 * same ReplicaModel the emulated engine steps in real time. Runs of decode-only steps may be taken as one
 * span (`coalesceDecodeSteps`), cut short when a newcomer can join the batch.
 */
export class ModelledReplica implements SimulatedEngine {
  readonly model: ReplicaModel<SimulatedRequest>;
  readonly signals: ReplicaSignals;
  readonly reportsTokens = false;
  private kvUseIntegralMs = 0;
  private lastSampleMs = 0;
  /** True while the model completes a step: dispatches then join the step that starts right after. */
  private completing = false;
  /** Prefill-only steps since the last decode step: how long, and which sequences they held (by rank). */
  private pausedMs = 0;
  private readonly pausedByRank = new Int32Array(8);

  constructor(
    spec: ReplicaSpec,
    ordering: QueueOrderingPolicy,
    events: SimulatedEngineEvents,
    private readonly coalesceDecodeSteps: boolean,
  ) {
    const model = new ReplicaModel<SimulatedRequest>(spec, ordering, {
      onFirstToken: (sequence, atMs) => events.firstToken(sequence.tag, atMs),
      onDecodeSteps: (sequencesByPriority, steps, durationMs) => {
        if (this.pausedMs === 0) {
          events.decodeSteps(sequencesByPriority, steps, durationMs);
          return;
        }
        const pause = { ms: this.pausedMs, sequencesByRank: this.pausedByRank };
        events.decodeSteps(sequencesByPriority, steps, durationMs, pause);
        this.pausedMs = 0;
      },
      // vLLM 0.5 / 0.6 multi-step: a whole-prompt prefill step stretches the gap of every waiting decode.
      onDecodesPaused: (_sequences, durationMs, sequencesByPriority) => {
        if (this.pausedMs === 0) this.pausedByRank.set(sequencesByPriority);
        this.pausedMs += durationMs;
      },
      onFinish: (sequence, atMs, cancelled) => {
        if (!cancelled) events.finished(sequence.tag, atMs, figuresOf(sequence));
      },
    });
    this.model = model;
    // Read live at every routing decision, as a live engine's load is.
    this.signals = {
      get waitingRequests() {
        return model.waitingRequests;
      },
      get runningRequests() {
        return model.runningRequests;
      },
      get kvUsedFraction() {
        return model.kv.usedFraction;
      },
    };
  }

  submit(request: SimulatedRequest, nowMs: number): void {
    const model = this.model;
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
    if (this.completing) return; // `runEvent` starts the next step right after
    if (!model.stepInProgress) {
      this.sampleKv(nowMs);
      model.startStep(nowMs, this.horizonMs(nowMs));
    } else if (model.canAdmitHead()) {
      // A decode span in progress ends after its current step, so the newcomer joins the next one.
      model.interruptSpan(nowMs);
    }
  }

  nextEventMs(): number {
    return this.model.stepInProgress ? this.model.stepEndMs : Number.POSITIVE_INFINITY;
  }

  runEvent(nowMs: number): void {
    this.sampleKv(nowMs);
    this.completing = true;
    this.model.completeStep();
    this.completing = false;
    this.model.startStep(nowMs, this.horizonMs(nowMs));
  }

  runFigures(endMs: number): ReplicaRunFigures {
    this.sampleKv(endMs);
    const stats = this.model.kv.prefixStats;
    return {
      busyMs: this.model.busyMs,
      kvUseIntegralMs: this.kvUseIntegralMs,
      dynamicEnergyJoules: this.model.dynamicEnergyJoules,
      preemptions: this.model.preemptionsTotal,
      prefixQueriedTokens: stats.queriedTokens,
      prefixHitTokens: stats.hitTokens,
    };
  }

  private horizonMs(nowMs: number): number {
    return this.coalesceDecodeSteps ? Number.POSITIVE_INFINITY : nowMs;
  }

  private sampleKv(nowMs: number): void {
    this.kvUseIntegralMs += this.model.kv.usedFraction * (nowMs - this.lastSampleMs);
    this.lastSampleMs = nowMs;
  }
}

function figuresOf(sequence: ModelledSequence<SimulatedRequest>): CompletionFigures {
  return {
    firstTokenMs: sequence.firstTokenMs as number,
    admittedMs: sequence.admittedMs as number,
    cachedPromptTokens: sequence.cachedPromptTokens,
  };
}
