import { type Clock, systemClock } from '../../core/clock.js';
import { errors } from '../../core/errors.js';
import { firstUnservedFeature, unservedFeatureError } from '../../core/request-features.js';
import { SeededRandom } from '../../core/seeded-random.js';
import { bandRank, serviceBand } from '../../core/service-tiers.js';
import type { FinishReason, StreamPart } from '../../core/stream-parts.js';
import { stringSeed } from '../../performance-model/block-hashes.js';
import type { QueueOrderingPolicy } from '../../performance-model/queue-ordering.js';
import {
  type ModelledSequence,
  ReplicaModel,
  type ReplicaModelEvents,
} from '../../performance-model/replica-model.js';
import type { ReplicaSpec } from '../../performance-model/replica-spec.js';
import {
  type EngineAdapter,
  type EngineCounters,
  type EngineExtensions,
  type EngineLoad,
  type EngineModelInfo,
  engineSpecificationVersion,
  type GenerationRequest,
} from '../engine-adapter.js';
import { estimatePromptTokens, promptBlockHashes, promptText } from './emulated-prompt.js';
import { describeReplicaSpec } from './emulated-replica-spec.js';
import { drawAnswerTokens, SyntheticText } from './synthetic-text.js';

export interface EmulatedEngineOptions {
  id: string;
  /** The id clients use in `model`. */
  modelId: string;
  spec: ReplicaSpec;
  ordering: QueueOrderingPolicy;
  /** Context window in tokens (configured, or the model profile's). Capped by what the KV cache holds. */
  contextTokens: number;
  /** Real time the replica runs on; tests may pass their own. */
  clock?: Clock;
}

/** A timer that fires a little early would deliver tokens before their modelled time; this much is noise. */
const timerToleranceMs = 0.25;

/** One generation in flight: what the step loop hands to the client's iterator. */
class EmulatedStream {
  sequence: ModelledSequence<EmulatedStream> | null = null;
  emittedTokens = 0;
  /** Set when the model has produced the last token; the finish part follows the last text. */
  done = false;
  /** The signal's reason (client gone) or an engine failure: the iterator throws it next. */
  failure: unknown;
  private readonly parts: StreamPart[] = [];
  private wake: (() => void) | null = null;

  constructor(
    readonly text: SyntheticText,
    readonly finishReason: FinishReason,
  ) {}

  push(part: StreamPart): void {
    this.parts.push(part);
    this.notify();
  }

  fail(reason: unknown): void {
    if (this.failure === undefined) this.failure = reason ?? new Error('aborted');
    this.notify();
  }

  shift(): StreamPart | undefined {
    return this.parts.shift();
  }

  waitForPart(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}

/**
 * An emulated engine replica: the performance model of one vLLM-like replica (ReplicaModel) driven in
 * real time, answering with synthetic text at the speed the modelled hardware would. It lets Gravity's
 * routing, queueing and metering run against a fleet of H100s on a laptop.
 *
 * The step loop runs one engine step at a time: it starts a step, sets a timer for the step's modelled
 * end, then emits every running stream's new tokens and starts the next step at that modelled end (not at
 * the time the timer fired), so timer lateness never accumulates. When the loop falls behind real time it
 * runs the next step at once until it catches up.
 */
export class EmulatedEngine implements EngineAdapter {
  readonly specificationVersion = engineSpecificationVersion;
  readonly type = 'emulated';
  /**
   * What the emulated engine serves beyond plain text. Until tools, formats and logprobs are modelled
   * here, requests that use them are routed elsewhere or refused with a 400 naming the parameter.
   */
  readonly servedFeatures: ReadonlySet<string> = new Set<string>();
  readonly id: string;
  readonly spec: ReplicaSpec;
  /** Modelled power and vLLM-style counters, as the emulated definition declares. */
  readonly extensions: Required<EngineExtensions>;
  private readonly options: EmulatedEngineOptions;
  private readonly clock: Clock;
  private readonly model: ReplicaModel<EmulatedStream>;
  private readonly contextTokens: number;
  /** Streams whose sequence has been admitted and has not finished: the ones a step can give tokens. */
  private readonly admitted = new Set<EmulatedStream>();
  private readonly finishedInStep: EmulatedStream[] = [];
  private readonly open = new Set<EmulatedStream>();
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private started = false;
  private closed = false;
  private promptTokensTotal = 0;

  constructor(options: EmulatedEngineOptions) {
    this.id = options.id;
    this.options = options;
    this.spec = options.spec;
    this.clock = options.clock ?? systemClock;
    // A sequence can never hold more KV than the whole cache, or it would wait for room forever.
    this.contextTokens = Math.min(options.contextTokens, options.spec.kvBlocks * options.spec.kvBlockTokens);
    const events: ReplicaModelEvents<EmulatedStream> = {
      onAdmit: (sequence, atMs) => {
        const stream = sequence.tag;
        this.admitted.add(stream);
        stream.push({
          type: 'response-start',
          promptTokens: sequence.request.promptTokens,
          cachedPromptTokens: sequence.cachedPromptTokens,
          // The loop may run behind real time, so a modelled admission can precede the arrival reading.
          queueWaitMs: Math.max(0, atMs - sequence.arrivalMs),
        });
      },
      onFirstToken: (sequence) => {
        this.promptTokensTotal += sequence.request.promptTokens;
      },
      onFinish: (sequence, _atMs, cancelled) => {
        const stream = sequence.tag;
        if (cancelled) {
          this.admitted.delete(stream);
          return;
        }
        stream.done = true;
        this.finishedInStep.push(stream);
      },
    };
    this.model = new ReplicaModel(options.spec, options.ordering, events);
    const model = this.model;
    this.extensions = {
      modelledPower: {
        idleWatts: options.spec.idleWatts,
        dynamicEnergyJoules: () => model.dynamicEnergyJoules,
      },
      counters: () => this.counters(),
      description: describeReplicaSpec(options.spec),
    };
  }

  async start(): Promise<void> {
    this.started = true;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    for (const stream of this.open) stream.fail(errors.engineFailed(this.id, 'engine closed'));
  }

  models(): EngineModelInfo[] {
    return [{ id: this.options.modelId, contextTokens: this.contextTokens, ownedBy: 'gravity-emulated' }];
  }

  load(): EngineLoad {
    return {
      slotsTotal: this.spec.maxNumSeqs,
      slotsBusy: this.model.runningRequests,
      waiting: this.model.waitingRequests,
      kvUsedFraction: this.model.kv.usedFraction,
    };
  }

  private counters(): EngineCounters {
    const { queriedTokens, hitTokens } = this.model.kv.prefixStats;
    return {
      promptTokens: this.promptTokensTotal,
      generationTokens: this.model.generatedTokensTotal,
      preemptions: this.model.preemptionsTotal,
      prefixCacheQueriedTokens: queriedTokens,
      prefixCacheHitTokens: hitTokens,
    };
  }

  async *generate(request: GenerationRequest, signal: AbortSignal): AsyncGenerator<StreamPart> {
    const unserved = firstUnservedFeature(request.features, this.servedFeatures);
    if (unserved !== null) throw unservedFeatureError(unserved, `engine '${this.id}' (${this.type})`);
    if (!this.started || this.closed) throw errors.engineFailed(this.id, 'engine is not started');
    const text = promptText(request.input);
    const promptTokens = estimatePromptTokens(text);
    const contextTokens = this.contextTokens;
    if (promptTokens >= contextTokens || promptTokens + (request.maxTokens ?? 0) > contextTokens) {
      throw errors.contextLengthExceeded({ contextTokens, promptTokens, maxTokens: request.maxTokens });
    }
    // The same prompt without a seed gets the same answer, as greedy decoding would.
    const random = new SeededRandom(request.seed ?? stringSeed(text, 0, text.length));
    let outputTokens: number;
    let finishReason: FinishReason;
    if (request.maxTokens !== null) {
      // The emulated model always talks until it is cut off.
      outputTokens = request.maxTokens;
      finishReason = 'length';
    } else {
      const drawn = drawAnswerTokens(random);
      const room = contextTokens - promptTokens;
      outputTokens = Math.min(drawn, room);
      finishReason = drawn > room ? 'length' : 'stop';
    }

    const stream = new EmulatedStream(new SyntheticText(random), finishReason);
    const onAbort = () => {
      stream.fail(signal.reason);
      if (stream.sequence) this.model.cancel(stream.sequence, this.clock.nowMs());
    };
    if (signal.aborted) throw signal.reason;
    signal.addEventListener('abort', onAbort, { once: true });
    this.open.add(stream);
    try {
      const nowMs = this.clock.nowMs();
      stream.sequence = this.model.submit(
        {
          promptTokens,
          outputTokens: Math.max(1, outputTokens),
          promptBlockHashes: this.spec.prefixCaching
            ? promptBlockHashes(text, this.spec.kvBlockTokens)
            : null,
          outputSeed: null,
          priority: bandRank[serviceBand(request.serviceTier ?? 'default')],
          tag: stream,
        },
        nowMs,
      );
      // An idle replica starts a step at once; a busy one admits the request at its next step.
      if (!this.closed && !this.model.stepInProgress) this.startStep(nowMs);
      for (;;) {
        if (stream.failure !== undefined) throw stream.failure;
        const part = stream.shift();
        if (part === undefined) {
          await stream.waitForPart();
          continue;
        }
        yield part;
        if (part.type === 'finish') return;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.open.delete(stream);
      // A consumer that stops early (error, disconnect) frees the sequence's KV blocks.
      if (!stream.done && stream.sequence && !this.closed)
        this.model.cancel(stream.sequence, this.clock.nowMs());
    }
  }

  private startStep(startMs: number): void {
    if (!this.model.startStep(startMs, startMs)) return; // nothing to run: the loop sleeps until a submit
    this.scheduleStepEnd();
  }

  private scheduleStepEnd(): void {
    const delayMs = this.model.stepEndMs - this.clock.nowMs();
    if (delayMs <= timerToleranceMs) this.immediate = setImmediate(this.onStepEnd);
    else this.timer = setTimeout(this.onStepEnd, Math.ceil(delayMs));
  }

  private readonly onStepEnd = (): void => {
    this.timer = undefined;
    this.immediate = undefined;
    if (this.closed) return;
    const endMs = this.model.stepEndMs;
    if (this.clock.nowMs() + timerToleranceMs < endMs) {
      this.scheduleStepEnd();
      return;
    }
    this.model.completeStep();
    this.deliver();
    // The next step starts at this one's modelled end, however late the timer fired.
    this.startStep(endMs);
  };

  /**
   * Hot path, once per step: each admitted stream that gained tokens gets one text-delta for them
   * (decode gives one token per step; a prefill's end gives the first). Finished streams then get their
   * finish part.
   */
  private deliver(): void {
    for (const stream of this.admitted) {
      const generated = this.model.generatedTokens(stream.sequence as ModelledSequence<EmulatedStream>);
      const fresh = generated - stream.emittedTokens;
      if (fresh <= 0) continue;
      stream.emittedTokens = generated;
      stream.push({ type: 'text-delta', text: stream.text.take(fresh), tokens: fresh });
    }
    for (const stream of this.finishedInStep) {
      this.admitted.delete(stream);
      const sequence = stream.sequence as ModelledSequence<EmulatedStream>;
      stream.push({
        type: 'finish',
        finishReason: stream.finishReason,
        usage: {
          promptTokens: sequence.request.promptTokens,
          cachedPromptTokens: sequence.cachedPromptTokens,
          completionTokens: stream.emittedTokens,
          source: 'engine',
        },
      });
    }
    this.finishedInStep.length = 0;
  }
}
