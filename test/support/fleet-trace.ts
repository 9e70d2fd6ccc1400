import { vi } from 'vitest';
import { z } from 'zod';
import type { Clock } from '../../src/core/clock.js';
import { errors } from '../../src/core/errors.js';
import { estimateInputTokens } from '../../src/core/prompt-size.js';
import type { RequestContext } from '../../src/core/request-context.js';
import { SeededRandom } from '../../src/core/seeded-random.js';
import type { ServiceBand } from '../../src/core/service-tiers.js';
import type { StreamPart } from '../../src/core/stream-parts.js';
import {
  type EngineAdapter,
  type EngineLoad,
  type EngineModelInfo,
  engineSpecificationVersion,
  type GenerationRequest,
} from '../../src/engines/engine-adapter.js';
import type { FleetDecision, ReplicaSignals } from '../../src/fleet/fleet-core.js';
import { Gateway, type LiveRequest } from '../../src/gateway/gateway.js';
import { promptBlockHashes } from '../../src/performance-model/block-hashes.js';
import { hardwareProfiles } from '../../src/performance-model/hardware-profiles.js';
import { modelProfile } from '../../src/performance-model/model-profiles.js';
import { firstComeFirstServed } from '../../src/performance-model/queue-ordering.js';
import { type ReplicaSpec, resolveReplicaSpec } from '../../src/performance-model/replica-spec.js';
import { timerSleep } from '../../src/pipeline/request-pipeline.js';
import { type RoutingConfig, routingConfigSchema } from '../../src/routing/routing-config.js';
import type { ReplicaSchedulerSettings } from '../../src/scheduling/replica-scheduler.js';
import { schedulerSettings } from '../../src/scheduling/scheduler-settings.js';
import { schedulingSettingsShape } from '../../src/scheduling/scheduling-config.js';
import { FleetSimulator, type SimulatedReplicaOptions } from '../../src/simulator/fleet-simulator.js';
import type {
  ReplicaRunFigures,
  SimulatedEngine,
  SimulatedEngineEvents,
} from '../../src/simulator/simulated-replica.js';
import type { SimulatedRequest, WorkloadSource } from '../../src/simulator/workload/workload-source.js';

/**
 * One recorded trace of fleet events — arrivals, and how each replica answers each attempt (first token,
 * tokens, finish, or failure) — driven through both drivers of the fleet core: the live gateway (async,
 * on timers; here fake timers, so the run is exact and instant) and the fleet simulator (events on a
 * virtual clock). Both log every decision the core takes; the parity tests compare the logs.
 */

/** How a replica answers one attempt, relative to when the attempt reaches it. */
export type TraceOutcome =
  | { kind: 'answer'; ttftMs: number; gapMs: number }
  | { kind: 'fail'; afterMs: number };

export interface TraceRequest {
  id: string;
  atMs: number;
  tenant: string;
  band: ServiceBand;
  prompt: string;
  /** Completion tokens asked for; an answer runs to this length. */
  maxTokens: number;
  /** Attempt k gets outcomes[k] (the last one repeats). */
  outcomes: TraceOutcome[];
  /** Request features it uses (core/request-features.ts); absent: none. */
  features?: string[];
}

export interface TraceReplica {
  id: string;
  contextTokens: number;
  kvUsedFraction?: number;
  /** Request features it serves; absent: all. */
  servedFeatures?: string[];
}

export interface FleetSetup {
  replicas: TraceReplica[];
  /** The `routing` section as a config writes it (defaults filled in). */
  routing: Record<string, unknown>;
  /** The `scheduling` settings (defaults filled in) and tier targets; null: no gateway queue. */
  scheduling: { slots: number; settings?: Record<string, unknown>; tiers?: Partial<TierTargets> } | null;
  seed: number;
}

type TierTargets = ReplicaSchedulerSettings['tiers'];
const defaultTiers: TierTargets = {
  priority: { ttftMs: 500, tpotMs: 50, maxQueueWaitMs: 60_000 },
  default: { ttftMs: 2000, tpotMs: 100, maxQueueWaitMs: 30_000 },
  flex: { ttftMs: 10_000, tpotMs: 200, maxQueueWaitMs: 120_000 },
  batch: { ttftMs: 86_400_000, tpotMs: 1000, maxQueueWaitMs: 86_400_000 },
};

function routingOf(setup: FleetSetup): RoutingConfig {
  return routingConfigSchema.parse(setup.routing);
}

function schedulerOf(setup: FleetSetup): ReplicaSchedulerSettings | null {
  if (!setup.scheduling) return null;
  const settings = z.strictObject(schedulingSettingsShape).parse(setup.scheduling.settings ?? {});
  return schedulerSettings(settings, { ...defaultTiers, ...setup.scheduling.tiers }, setup.scheduling.slots);
}

/** A decision as one comparable line: time, what, which request, where or why. */
function describe(decision: FleetDecision<unknown>, id: string): string {
  switch (decision.type) {
    case 'routed':
      return `${decision.atMs} routed ${id} → ${decision.replica} (attempt ${decision.attempt})`;
    case 'dispatched':
      return `${decision.atMs} dispatched ${id} on ${decision.replica}`;
    case 'refused':
      return `${decision.atMs} refused ${id}: ${decision.refusal}`;
    case 'retried':
      return `${decision.atMs} retried ${id} away from ${decision.from}`;
  }
}

function outcomeOf(request: TraceRequest, attempt: number): TraceOutcome {
  return request.outcomes[Math.min(attempt, request.outcomes.length - 1)] as TraceOutcome;
}

/** Attempts each request has had, across replicas (a retry goes to another replica). */
class AttemptCounter {
  private readonly counts = new Map<string, number>();
  next(id: string): number {
    const count = this.counts.get(id) ?? 0;
    this.counts.set(id, count + 1);
    return count;
  }
}

const liveModel = 'traced-model';

/** A live engine that answers as the trace says, on (fake) timers. */
class ScriptedEngine implements EngineAdapter {
  readonly specificationVersion = engineSpecificationVersion;
  readonly type = 'scripted';
  readonly id: string;
  readonly servedFeatures: ReadonlySet<string> | undefined;
  private running = 0;

  constructor(
    private readonly replica: TraceReplica,
    private readonly byPrompt: ReadonlyMap<string, TraceRequest>,
    private readonly attempts: AttemptCounter,
  ) {
    this.id = replica.id;
    this.servedFeatures = replica.servedFeatures ? new Set(replica.servedFeatures) : undefined;
  }

  async start(): Promise<void> {}
  async close(): Promise<void> {}

  models(): EngineModelInfo[] {
    return [{ id: liveModel, contextTokens: this.replica.contextTokens, ownedBy: 'trace' }];
  }

  load(): EngineLoad {
    return {
      slotsTotal: 64,
      slotsBusy: this.running,
      waiting: 0,
      kvUsedFraction: this.replica.kvUsedFraction ?? null,
    };
  }

  async *generate(request: GenerationRequest, signal: AbortSignal): AsyncGenerator<StreamPart> {
    const prompt = request.input.kind === 'completion' ? request.input.prompt : '';
    const traced = this.byPrompt.get(prompt) as TraceRequest;
    const outcome = outcomeOf(traced, this.attempts.next(traced.id));
    this.running++;
    try {
      yield { type: 'response-start', promptTokens: null, cachedPromptTokens: null, queueWaitMs: 0 };
      if (outcome.kind === 'fail') {
        await timerSleep(outcome.afterMs, signal);
        throw errors.upstream({ status: 502, message: `${this.id} failed as scripted` });
      }
      for (let token = 0; token < traced.maxTokens; token++) {
        await timerSleep(token === 0 ? outcome.ttftMs : outcome.gapMs, signal);
        yield { type: 'text-delta', text: ' x', tokens: 1 };
      }
      yield {
        type: 'finish',
        finishReason: 'length',
        usage: {
          promptTokens: estimateInputTokens(request.input),
          cachedPromptTokens: 0,
          completionTokens: traced.maxTokens,
          source: 'engine',
        },
      };
    } finally {
      this.running--;
    }
  }
}

/** The last event time of a trace, with room for every answer and retry to end. */
function horizonMs(trace: readonly TraceRequest[]): number {
  return Math.max(...trace.map((request) => request.atMs)) + 100_000_000;
}

/** Runs the trace through the live gateway (real Gateway, real FleetCore, fake timers). */
export async function runLive(setup: FleetSetup, trace: readonly TraceRequest[]): Promise<string[]> {
  vi.useFakeTimers({
    toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
    now: 0,
  });
  try {
    const clock: Clock = { nowMs: () => Date.now(), epochMs: () => Date.now() };
    const byPrompt = new Map(trace.map((request) => [request.prompt, request]));
    const attempts = new AttemptCounter();
    const engines = setup.replicas.map((replica) => new ScriptedEngine(replica, byPrompt, attempts));
    const ids = new Map<RequestContext, string>();
    const decisions: string[] = [];
    const random = new SeededRandom(setup.seed).fork('routing');
    const scheduler = schedulerOf(setup);
    const gateway = new Gateway({
      engines,
      clock,
      observers: [],
      routing: routingOf(setup),
      schedulerFor: scheduler ? () => scheduler : null,
      random: () => random.uniform(),
      onDecision: (decision) =>
        decisions.push(describe(decision, ids.get((decision.tag as LiveRequest).context) ?? '(unknown)')),
    });
    await gateway.start();
    const runs: Promise<void>[] = [];
    for (const request of trace)
      setTimeout(() => {
        const context = gateway.begin({
          endpoint: 'completions',
          stream: true,
          model: liveModel,
          serviceTier: request.band,
        });
        context.tenant = request.tenant;
        ids.set(context, request.id);
        runs.push(consume(gateway, context, request));
      }, request.atMs);
    await vi.advanceTimersByTimeAsync(horizonMs(trace));
    await Promise.all(runs);
    await gateway.shutdown(0);
    return decisions;
  } finally {
    vi.useRealTimers();
  }
}

async function consume(gateway: Gateway, context: RequestContext, request: TraceRequest): Promise<void> {
  try {
    for await (const _part of gateway.execute(
      context,
      {
        model: liveModel,
        input: { kind: 'completion', prompt: request.prompt },
        maxTokens: request.maxTokens,
        temperature: 0,
        topP: 1,
        seed: null,
        stop: [],
        user: null,
        features: request.features,
      },
      new AbortController().signal,
    )) {
      // The decisions are what the test compares; the parts only have to flow.
    }
  } catch {
    // Refused or failed: the decision log says so.
  }
}

/** A simulated engine that answers as the trace says, on the simulator's virtual clock. */
class ScriptedSimulatedEngine implements SimulatedEngine {
  readonly reportsTokens = true;
  readonly signals: ReplicaSignals;
  private running = 0;
  /** Pending events in time order; same-time events keep the order they were scheduled in. */
  private readonly pending: Array<{ atMs: number; run: () => void }> = [];

  constructor(
    replica: TraceReplica,
    private readonly trace: readonly TraceRequest[],
    private readonly attempts: AttemptCounter,
    private readonly events: SimulatedEngineEvents,
  ) {
    const engine = () => this.running;
    this.signals = {
      waitingRequests: 0,
      get runningRequests() {
        return engine();
      },
      kvUsedFraction: replica.kvUsedFraction ?? null,
    };
  }

  submit(request: SimulatedRequest, nowMs: number): void {
    const traced = this.trace[request.id] as TraceRequest;
    const outcome = outcomeOf(traced, this.attempts.next(traced.id));
    this.running++;
    if (outcome.kind === 'fail') {
      this.schedule(nowMs + outcome.afterMs, () => {
        this.running--;
        this.events.failed(request, nowMs + outcome.afterMs, {
          replicaFault: true,
          retryable: true,
          message: 'failed as scripted',
        });
      });
      return;
    }
    const firstTokenMs = nowMs + outcome.ttftMs;
    this.schedule(firstTokenMs, () => {
      this.events.firstToken(request, firstTokenMs);
      this.events.tokens(request, 1);
    });
    let atMs = firstTokenMs;
    for (let token = 1; token < traced.maxTokens; token++) {
      atMs += outcome.gapMs;
      this.schedule(atMs, () => this.events.tokens(request, 1));
    }
    const finishedMs = atMs;
    this.schedule(finishedMs, () => {
      this.events.finished(request, finishedMs, {
        firstTokenMs,
        admittedMs: nowMs,
        cachedPromptTokens: 0,
      });
      this.running--;
    });
  }

  private schedule(atMs: number, run: () => void): void {
    let index = this.pending.length;
    while (index > 0 && (this.pending[index - 1] as { atMs: number }).atMs > atMs) index--;
    this.pending.splice(index, 0, { atMs, run });
  }

  nextEventMs(): number {
    return this.pending[0]?.atMs ?? Number.POSITIVE_INFINITY;
  }

  runEvent(nowMs: number): void {
    while (this.pending.length > 0 && (this.pending[0] as { atMs: number }).atMs === nowMs)
      (this.pending.shift() as { run: () => void }).run();
  }

  runFigures(): ReplicaRunFigures {
    return {
      busyMs: 0,
      kvUseIntegralMs: 0,
      dynamicEnergyJoules: 0,
      preemptions: 0,
      prefixQueriedTokens: 0,
      prefixHitTokens: 0,
    };
  }
}

/** The trace's arrivals as a workload source (request id = index in the trace). */
class TraceWorkload implements WorkloadSource {
  private next = 0;
  readonly expectedRequests: number;

  constructor(private readonly trace: readonly TraceRequest[]) {
    this.expectedRequests = trace.length;
  }

  peekArrivalMs(): number {
    return this.trace[this.next]?.atMs ?? Number.POSITIVE_INFINITY;
  }

  takeArrival(): SimulatedRequest {
    const index = this.next++;
    const request = this.trace[index] as TraceRequest;
    return {
      id: index,
      arrivalMs: request.atMs,
      tenant: request.tenant,
      tier: request.band,
      promptTokens: estimateInputTokens({ kind: 'completion', prompt: request.prompt }),
      outputTokens: request.maxTokens,
      promptBlockHashes: promptBlockHashes(request.prompt),
      outputSeed: null,
      client: null,
      features: request.features,
    };
  }

  onComplete(): null {
    return null;
  }
}

let baseSpec: ReplicaSpec | undefined;
function specWithContext(contextTokens: number): ReplicaSpec {
  baseSpec ??= resolveReplicaSpec({
    hardware: hardwareProfiles['h100-sxm'],
    model: modelProfile('llama-3.1-8b') as NonNullable<ReturnType<typeof modelProfile>>,
  });
  return { ...baseSpec, model: { ...baseSpec.model, contextTokens } };
}

/** Runs the trace through the fleet simulator (real FleetSimulator, real FleetCore, virtual clock). */
export function runSimulated(setup: FleetSetup, trace: readonly TraceRequest[]): string[] {
  const sorted = [...trace].sort((a, b) => a.atMs - b.atMs);
  const attempts = new AttemptCounter();
  const decisions: string[] = [];
  const random = new SeededRandom(setup.seed).fork('routing');
  const scheduler = schedulerOf(setup);
  const replicas: SimulatedReplicaOptions[] = setup.replicas.map((replica) => ({
    id: replica.id,
    spec: specWithContext(replica.contextTokens),
    servedFeatures: replica.servedFeatures ? new Set(replica.servedFeatures) : undefined,
  }));
  const simulator = new FleetSimulator({
    replicas,
    routing: routingOf(setup),
    random: () => random.uniform(),
    ordering: firstComeFirstServed,
    workload: new TraceWorkload(sorted),
    slo: {
      priority: defaultTiers.priority,
      default: defaultTiers.default,
      flex: defaultTiers.flex,
      batch: defaultTiers.batch,
      attainment: 0.9,
    },
    scheduler: scheduler ? () => scheduler : null,
    engineFor: (replica, events) =>
      new ScriptedSimulatedEngine(
        setup.replicas.find((candidate) => candidate.id === replica.id) as TraceReplica,
        sorted,
        attempts,
        events,
      ),
    onDecision: (decision) =>
      decisions.push(describe(decision, (sorted[decision.tag.id] as TraceRequest).id)),
  });
  simulator.run();
  return decisions;
}
