import { type Clock, systemClock } from '../../core/clock.js';
import { errors } from '../../core/errors.js';
import {
  firstUnservedFeature,
  responsesNativeFeatures,
  unservedFeatureError,
} from '../../core/request-features.js';
import { bandRank, serviceBand } from '../../core/service-tiers.js';
import type { EmbeddingsPart, StreamPart } from '../../core/stream-parts.js';
import { stringSeed } from '../../performance-model/block-hashes.js';
import type { QueueOrderingPolicy } from '../../performance-model/queue-ordering.js';
import {
  type ModelledSequence,
  ReplicaModel,
  type ReplicaModelEvents,
} from '../../performance-model/replica-model.js';
import type { ReplicaSpec } from '../../performance-model/replica-spec.js';
import {
  defaultGenerationOptions,
  type EmbeddingInput,
  type EngineAdapter,
  type EngineCounters,
  type EngineExtensions,
  type EngineLoad,
  type EngineModelInfo,
  engineSpecificationVersion,
  type GenerationRequest,
} from '../engine-adapter.js';
import type { ChoiceOutput } from './choice-output.js';
import { type EmulatedPrompt, emulatedPrompts, promptBlockHashes } from './emulated-prompt.js';
import { describeReplicaSpec } from './emulated-replica-spec.js';
import { planChoiceOutput } from './reply-plan.js';
import { syntheticEmbedding } from './synthetic-embeddings.js';

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
  /**
   * Request features this replica serves (core/request-features.ts); absent: all of them, as vLLM, which
   * accepts every OpenAI parameter and ignores fields it does not know. Set to emulate a mixed fleet.
   */
  servedFeatures?: ReadonlySet<string> | undefined;
}

/** A timer that fires a little early would deliver tokens before their modelled time; this much is noise. */
const timerToleranceMs = 0.25;

/**
 * One generation in flight: the parts its choices produce, queued for the client's iterator. A request
 * has one choice, or several (n > 1, several prompts), each its own modelled sequence.
 */
class EmulatedStream {
  readonly choices: EmulatedChoice[] = [];
  /** Choices whose sequence has not produced its last token. */
  choicesLeft = 0;
  /** Set when the first sequence is admitted: the response-start has gone out. */
  started = false;
  /** The signal's reason (client gone) or an engine failure: the iterator throws it next. */
  failure: unknown;
  private readonly parts: StreamPart[] = [];
  private wake: (() => void) | null = null;

  /**
   * Set for an embeddings request: builds its vectors, which go out all at once before the finish part.
   * `generate` calls it when it takes the finish part off the queue, not the per-step loop: a request
   * cancelled before its prefill ends costs no vectors, and building them delays no other request's step.
   */
  embeddings: (() => EmbeddingsPart) | null = null;

  constructor(
    /** Prompt tokens of the request (each prompt once, however many choices share it). */
    readonly promptTokens: number,
  ) {}

  /** Hot path: each choice's output pushes its parts here (the PartSink of choice-output.ts). */
  push(part: StreamPart): void {
    this.parts.push(part);
    this.notify();
  }

  get done(): boolean {
    return this.choicesLeft === 0;
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

/** One choice of a generation: a modelled sequence and what it says. */
class EmulatedChoice {
  sequence: ModelledSequence<EmulatedChoice> | null = null;
  emittedTokens = 0;
  /** Set when the model has produced the choice's last token. */
  done = false;

  constructor(
    readonly stream: EmulatedStream,
    readonly output: ChoiceOutput,
    readonly prompt: EmulatedPrompt,
    /** The first choice of its prompt: the one whose prefix-cache hits usage reports. */
    readonly firstOfPrompt: boolean,
  ) {}
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
   * Request features served (core/request-features.ts); absent (the default): all of them. The emulated
   * engine models what each asks for (tools, response formats, logprobs, n, several prompts, media
   * inputs counted as prompt tokens) or, like vLLM, accepts it and ignores it (penalties, logit_bias,
   * top_k …, vendor extras): README.md in this folder lists which.
   */
  readonly servedFeatures: ReadonlySet<string> | undefined;
  /** It serves the Responses API through the translation onto chat: never what only a native one serves. */
  readonly unservedFeatures = responsesNativeFeatures;
  readonly id: string;
  readonly spec: ReplicaSpec;
  /** Modelled power and vLLM-style counters, as the emulated definition declares. */
  readonly extensions: Required<EngineExtensions>;
  private readonly options: EmulatedEngineOptions;
  private readonly clock: Clock;
  private readonly model: ReplicaModel<EmulatedChoice>;
  private readonly contextTokens: number;
  /** Choices whose sequence has been admitted and has not finished: the ones a step can give tokens. */
  private readonly admitted = new Set<EmulatedChoice>();
  private readonly finishedInStep: EmulatedChoice[] = [];
  private readonly open = new Set<EmulatedStream>();
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private started = false;
  /** The model's `created` in /v1/models: an emulated model comes to be when its replica is built. */
  private readonly createdSeconds = Math.floor(Date.now() / 1000);
  private closed = false;
  private promptTokensTotal = 0;

  constructor(options: EmulatedEngineOptions) {
    this.id = options.id;
    this.options = options;
    this.spec = options.spec;
    this.servedFeatures = options.servedFeatures;
    this.clock = options.clock ?? systemClock;
    // A sequence can never hold more KV than the whole cache, or it would wait for room forever.
    this.contextTokens = Math.min(options.contextTokens, options.spec.kvBlocks * options.spec.kvBlockTokens);
    const events: ReplicaModelEvents<EmulatedChoice> = {
      onAdmit: (sequence, atMs) => {
        const choice = sequence.tag;
        this.admitted.add(choice);
        const stream = choice.stream;
        if (stream.started) return;
        stream.started = true;
        stream.push({
          type: 'response-start',
          promptTokens: stream.promptTokens,
          cachedPromptTokens: sequence.cachedPromptTokens,
          // The loop may run behind real time, so a modelled admission can precede the arrival reading.
          queueWaitMs: Math.max(0, atMs - sequence.arrivalMs),
        });
      },
      onFirstToken: (sequence) => {
        this.promptTokensTotal += sequence.request.promptTokens;
      },
      onFinish: (sequence, _atMs, cancelled) => {
        const choice = sequence.tag;
        if (cancelled) {
          this.admitted.delete(choice);
          return;
        }
        choice.done = true;
        this.finishedInStep.push(choice);
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
    return [
      {
        id: this.options.modelId,
        contextTokens: this.contextTokens,
        ownedBy: 'gravity-emulated',
        created: this.createdSeconds,
      },
    ];
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
    const unserved = firstUnservedFeature(request.features, this);
    if (unserved !== null) throw unservedFeatureError(unserved, `engine '${this.id}' (${this.type})`);
    if (!this.started || this.closed) throw errors.engineFailed(this.id, 'engine is not started');
    const stream = this.plan(request);
    const onAbort = () => {
      stream.fail(signal.reason);
      this.cancelUnfinished(stream);
    };
    if (signal.aborted) throw signal.reason;
    signal.addEventListener('abort', onAbort, { once: true });
    this.open.add(stream);
    try {
      const nowMs = this.clock.nowMs();
      const priority = bandRank[serviceBand(request.serviceTier ?? 'default')];
      for (const choice of stream.choices) {
        choice.sequence = this.model.submit(
          {
            promptTokens: choice.prompt.tokens,
            outputTokens: choice.output.tokens,
            promptBlockHashes: this.spec.prefixCaching
              ? promptBlockHashes(choice.prompt.text, this.spec.kvBlockTokens)
              : null,
            outputSeed: null,
            priority,
            tag: choice,
          },
          nowMs,
        );
      }
      // An idle replica starts a step at once; a busy one admits the request at its next step.
      if (!this.closed && !this.model.stepInProgress) this.startStep(nowMs);
      for (;;) {
        if (stream.failure !== undefined) throw stream.failure;
        const part = stream.shift();
        if (part === undefined) {
          await stream.waitForPart();
          continue;
        }
        if (part.type === 'finish') {
          if (stream.embeddings) yield stream.embeddings();
          yield part;
          return;
        }
        yield part;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.open.delete(stream);
      // A consumer that stops early (error, disconnect) frees the sequences' KV blocks.
      if (!stream.done && !this.closed) this.cancelUnfinished(stream);
    }
  }

  /**
   * The request's choices, each with its output decided (reply-plan.ts): one per prompt and per `n`,
   * numbered as OpenAI numbers them (prompt-major). Throws, before any part, what a real engine would
   * refuse up front: a prompt that does not fit the context, a schema that admits no value.
   */
  private plan(request: GenerationRequest): EmulatedStream {
    if (request.input.kind === 'embedding') return this.planEmbeddings(request, request.input);
    const options = request.options ?? defaultGenerationOptions;
    const prompts = emulatedPrompts(request);
    const contextTokens = this.contextTokens;
    for (const prompt of prompts) {
      const promptTokens = prompt.tokens;
      if (promptTokens >= contextTokens || promptTokens + (request.maxTokens ?? 0) > contextTokens)
        throw errors.contextLengthExceeded({ contextTokens, promptTokens, maxTokens: request.maxTokens });
    }
    const shape = request.input.kind === 'chat' ? 'chat' : 'completion';
    const echo = request.input.kind === 'completion' && request.carried?.echo === true;
    const perPrompt = Math.max(1, options.n);
    const stream = new EmulatedStream(prompts.reduce((sum, prompt) => sum + prompt.tokens, 0));
    prompts.forEach((prompt, promptIndex) => {
      // The same prompt without a seed gets the same answer, as greedy decoding would.
      const promptSeed = request.seed ?? stringSeed(prompt.text, 0, prompt.text.length);
      for (let sample = 0; sample < perPrompt; sample++) {
        const index = promptIndex * perPrompt + sample;
        const output = planChoiceOutput({
          request,
          options,
          index,
          shape,
          // Choice 0 keeps the seed itself, so `n` does not change the first answer.
          seed: index === 0 ? promptSeed : promptSeed ^ Math.imul(index, 0x9e3779b1),
          roomTokens: contextTokens - prompt.tokens,
          echoPrefix: echo ? prompt.text : '',
        });
        stream.choices.push(new EmulatedChoice(stream, output, prompt, sample === 0));
      }
    });
    stream.choicesLeft = stream.choices.length;
    return stream;
  }

  /**
   * An embeddings request: one modelled sequence per input, prefill only (the replica model's one
   * output token is the prefill's own end, no decode step runs), so its time and energy are the
   * prompts' prefill. Vectors are synthetic (synthetic-embeddings.ts), as wide as the model's hidden
   * size unless `dimensions` shortens them.
   */
  private planEmbeddings(request: GenerationRequest, input: EmbeddingInput): EmulatedStream {
    const fullDimensions = this.spec.model.hiddenSize;
    if (input.dimensions !== null && input.dimensions > fullDimensions)
      throw errors.invalidRequest(
        `Invalid value for 'dimensions': ${input.dimensions}. Model '${request.model}' gives at most ${fullDimensions}.`,
        'dimensions',
        'invalid_value',
      );
    const prompts = emulatedPrompts(request);
    for (const [index, prompt] of prompts.entries())
      if (prompt.tokens >= this.contextTokens)
        throw errors.embeddingInputTooLong({
          index,
          inputTokens: prompt.tokens,
          contextTokens: this.contextTokens - 1,
        });
    const stream = new EmulatedStream(prompts.reduce((sum, prompt) => sum + prompt.tokens, 0));
    stream.embeddings = () => ({
      type: 'embeddings',
      data: prompts.map((prompt, index) => ({
        index,
        embedding: syntheticEmbedding(prompt.text, fullDimensions, input.dimensions ?? fullDimensions),
      })),
      tokens: 0,
    });
    for (const prompt of prompts)
      stream.choices.push(new EmulatedChoice(stream, prefillOnlyOutput, prompt, true));
    stream.choicesLeft = stream.choices.length;
    return stream;
  }

  private cancelUnfinished(stream: EmulatedStream): void {
    const nowMs = this.clock.nowMs();
    for (const choice of stream.choices)
      if (!choice.done && choice.sequence) this.model.cancel(choice.sequence, nowMs);
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
   * Hot path, once per step: each admitted choice that gained tokens hands them to its output, which
   * pushes its parts (plain chat: one text-delta; decode gives one token per step, a prefill's end gives
   * the first). A request whose choices have all finished then gets its finish part.
   */
  private deliver(): void {
    for (const choice of this.admitted) {
      const generated = this.model.generatedTokens(choice.sequence as ModelledSequence<EmulatedChoice>);
      const fresh = generated - choice.emittedTokens;
      if (fresh <= 0) continue;
      choice.emittedTokens = generated;
      choice.output.emit(fresh, choice.stream);
    }
    for (const choice of this.finishedInStep) {
      this.admitted.delete(choice);
      const stream = choice.stream;
      if (--stream.choicesLeft === 0) stream.push(finishPart(stream));
    }
    this.finishedInStep.length = 0;
  }
}

/** The finish part: choice 0's reason, usage over all choices (each prompt's tokens counted once). */
function finishPart(stream: EmulatedStream): StreamPart {
  let completionTokens = 0;
  let cachedPromptTokens = 0;
  for (const choice of stream.choices) {
    // An embedding's one modelled token is its prefill's end, not a completion token.
    if (!stream.embeddings) completionTokens += choice.emittedTokens;
    if (choice.firstOfPrompt) cachedPromptTokens += choice.sequence?.cachedPromptTokens ?? 0;
  }
  const first = stream.choices[0] as EmulatedChoice;
  return {
    type: 'finish',
    finishReason: first.output.finishReason,
    usage: {
      promptTokens: stream.promptTokens,
      cachedPromptTokens,
      completionTokens,
      source: 'engine',
    },
    // Choices other than 0 always carry their finish_reason; choice 0's text-deltas leave it to the renderer.
    ...(first.output.carriesFinishReason ? { choicesFinished: true } : {}),
  };
}

/**
 * What an embedding input "generates": the replica model needs one output token per sequence, produced
 * at the end of its prefill; nothing is shown and nothing decodes after it.
 */
const prefillOnlyOutput: ChoiceOutput = {
  tokens: 1,
  finishReason: 'stop',
  carriesFinishReason: false,
  emit: () => {},
};
