import { stat } from 'node:fs/promises';
import path from 'node:path';
import {
  type ChatWrapper,
  getLlama,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaEmbeddingContext,
  type LlamaGrammar,
  LlamaLogLevel,
  type LlamaModel,
  resolveChatWrapper,
  type Token,
} from 'node-llama-cpp';
import { errors, GravityError } from '../../core/errors.js';
import { firstUnservedFeature, requestFeatures, unservedFeatureError } from '../../core/request-features.js';
import { StartupError } from '../../core/startup-error.js';
import type { FinishReason, StreamPart } from '../../core/stream-parts.js';
import {
  defaultGenerationOptions,
  type EmbeddingInput,
  type EngineAdapter,
  type EngineLoad,
  type EngineModelInfo,
  engineSpecificationVersion,
  type GenerationOptions,
  type GenerationRequest,
} from '../engine-adapter.js';
import { SlotPool } from '../slot-pool.js';
import { StopSequenceMatcher } from '../stop-sequence-matcher.js';
import { chatHistory } from './chat-history.js';
import { generateChoice, type OutputMode } from './choice-generation.js';
import { EmbeddingContexts, unitVector } from './embedding-contexts.js';
import { responseFormatGrammar, toolCallGrammar } from './output-grammars.js';
import { acquireAll, interleave } from './parallel-choices.js';
import { fewestTokens, longestTokenBytes, promptLengthLowerBound } from './prompt-length-bound.js';
import { checkTokenIds, evaluateOptions, logitBias, vocabularySize } from './sampling-options.js';
import { TokenLogprobs } from './token-logprobs.js';

export interface LlamaCppEngineOptions {
  id: string;
  /** The id clients use in `model`. */
  modelId: string;
  modelPath: string;
  /** Context window of each slot, in tokens. */
  contextTokens: number;
  /** Concurrent sequences in one context: requests beyond this wait for a free slot. */
  slots: number;
  /**
   * Threads per context. One is the right default on small machines: on 2 cores the library's default
   * oversubscribed the CPU and ran ~40x slower (see docs/architecture.md).
   */
  threads: number;
  batchSize: number;
  /**
   * Embedding contexts (`/v1/embeddings`), each embedding one input at a time; 0: the engine serves no
   * embeddings (routing keeps embeddings requests off it, and it refuses them with a 400).
   */
  embeddingContexts: number;
  /** `cuda`: every layer offloaded to the GPU. */
  device: 'cpu' | 'cuda';
}

// One llama.cpp binding per device kind and process: it owns the native backend and its thread pool.
const sharedLlamas = new Map<LlamaCppEngineOptions['device'], Promise<Llama>>();
function loadLlama(device: LlamaCppEngineOptions['device']): Promise<Llama> {
  let llama = sharedLlamas.get(device);
  if (!llama) {
    // `build: 'never'`: a missing binary must fail the start, not compile llama.cpp for minutes.
    llama = getLlama({
      gpu: device === 'cuda' ? 'cuda' : false,
      build: 'never',
      logLevel: LlamaLogLevel.error,
      progressLogs: false,
    });
    sharedLlamas.set(device, llama);
  }
  return llama;
}

// A UTF-8 character is at most 4 bytes, so at most 4 byte-fallback tokens can form one incomplete character.
const maxIncompleteCharacterTokens = 4;

/** Embedding inputs tokenized between turns of the event loop. */
const inputsPerTokenizeTurn = 64;

/**
 * The request features this engine serves (see README.md): structured output and tools through grammars,
 * logprobs from llama.cpp's token probabilities, several choices and prompts as parallel sequences,
 * sampling extras through node-llama-cpp's sampler options.
 */
const llamaCppServedFeatures: ReadonlySet<string> = new Set<string>([
  requestFeatures.tools,
  requestFeatures.responseFormat,
  requestFeatures.logprobs,
  requestFeatures.n,
  requestFeatures.presencePenalty,
  requestFeatures.frequencyPenalty,
  requestFeatures.logitBias,
  requestFeatures.tokenPrompt,
  requestFeatures.promptArray,
  requestFeatures.topK,
  requestFeatures.minP,
  requestFeatures.repetitionPenalty,
]);

/** The same, plus embeddings, for an engine with embedding contexts. */
const llamaCppEmbeddingFeatures: ReadonlySet<string> = new Set<string>([
  ...llamaCppServedFeatures,
  requestFeatures.embeddings,
]);

/** Grammars kept for reuse (see cachedGrammar). */
const cachedGrammars = 32;

/** One prompt, tokenized, with the text triggers that end its generation. */
interface RenderedPrompt {
  tokens: Token[];
  stopTriggers: string[];
}

/**
 * The embedded engine: a GGUF model run in-process by llama.cpp (node-llama-cpp) on the CPU or a GPU. Concurrent
 * requests run as parallel sequences of one context, which llama.cpp batches into shared steps
 * (continuous batching). Each slot keeps its KV cache after a request, and a new request goes to the free
 * slot sharing the longest prompt prefix, so repeated system prompts are not recomputed.
 *
 * Plain text requests take a pipelined per-token loop (`generateText`); requests whose output has another
 * shape (tools, structured output, logprobs, several choices or prompts) take `generateChoices`, which
 * runs each choice through choice-generation.ts.
 */
export class LlamaCppEngine implements EngineAdapter {
  readonly specificationVersion = engineSpecificationVersion;
  readonly type = 'llama-cpp';
  /** The request features (core/request-features.ts) this engine serves; others get a 400 naming them. */
  readonly servedFeatures: ReadonlySet<string>;
  readonly id: string;
  private readonly options: LlamaCppEngineOptions;
  private llama: Llama | undefined;
  private model: LlamaModel | undefined;
  private createdSeconds: number | undefined;
  private vocabulary = 0;
  /** Bytes of text one token covers at most, for refusing oversized prompts untokenized; null: no bound. */
  private longestTokenBytes: number | null = null;
  private logprobShapes: TokenLogprobs | undefined;
  private context: LlamaContext | undefined;
  private chatWrapper: ChatWrapper | undefined;
  private slots: SlotPool<LlamaContextSequence> | undefined;
  /** Aborted by `close()`: every request in progress stops with the engine's 'engine closed' error. */
  private closing = new AbortController();
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private embeddingContexts: EmbeddingContexts | undefined;

  constructor(options: LlamaCppEngineOptions) {
    this.id = options.id;
    this.options = options;
    this.servedFeatures = options.embeddingContexts > 0 ? llamaCppEmbeddingFeatures : llamaCppServedFeatures;
  }

  async start(): Promise<void> {
    this.closing = new AbortController();
    const llama = await loadLlama(this.options.device).catch((error: Error) => {
      const remedy =
        this.options.device === 'cuda'
          ? ' (build one with `npx node-llama-cpp source build --gpu cuda`; bench/gpu/README.md shows it end to end)'
          : '';
      throw new StartupError(
        `engine '${this.id}': no llama.cpp build for device ${this.options.device}: ${error.message}${remedy}`,
      );
    });
    this.llama = llama;
    try {
      this.model = await llama.loadModel({
        modelPath: this.options.modelPath,
        // All layers or a failed start: a model half on the GPU would run at CPU speed without a word.
        gpuLayers: this.options.device === 'cuda' ? 'max' : 0,
      });
      // The model's `created` in /v1/models: when its GGUF file was written.
      this.createdSeconds = Math.floor((await stat(this.options.modelPath)).mtimeMs / 1000);
    } catch (error) {
      throw new StartupError(
        `engine '${this.id}': could not load GGUF model ${path.resolve(this.options.modelPath)}: ${(error as Error).message}`,
      );
    }
    this.context = await this.model.createContext({
      contextSize: this.options.contextTokens,
      sequences: this.options.slots,
      threads: this.options.threads,
      batchSize: this.options.batchSize,
    });
    this.chatWrapper = resolveChatWrapper(this.model);
    this.vocabulary = vocabularySize(this.model);
    this.longestTokenBytes = longestTokenBytes(this.model);
    this.logprobShapes = new TokenLogprobs(this.model);
    const sequences: LlamaContextSequence[] = [];
    for (let index = 0; index < this.options.slots; index++) sequences.push(this.context.getSequence());
    this.slots = new SlotPool(sequences);
    if (this.options.embeddingContexts > 0)
      this.embeddingContexts = new EmbeddingContexts(this.model, {
        engineId: this.id,
        contexts: this.options.embeddingContexts,
        contextTokens: this.options.contextTokens,
        threads: this.options.threads,
        vocabulary: this.vocabulary,
      });
  }

  async close(): Promise<void> {
    this.closing.abort(errors.engineFailed(this.id, 'engine closed'));
    await this.embeddingContexts?.dispose();
    this.embeddingContexts = undefined;
    await this.context?.dispose();
    await this.model?.dispose();
    this.context = undefined;
    this.model = undefined;
  }

  models(): EngineModelInfo[] {
    return [
      {
        id: this.options.modelId,
        contextTokens: this.options.contextTokens,
        ownedBy: 'gravity',
        created: this.createdSeconds,
      },
    ];
  }

  load(): EngineLoad {
    // Embedding work shows as busy or waiting (power models read it), and its contexts count in the
    // total, so busy never exceeds it; the gateway's scheduler leaves them out of its seats.
    const embedding = this.embeddingContexts;
    const embeddingSlots = embedding ? this.options.embeddingContexts : 0;
    return {
      slotsTotal: this.options.slots + embeddingSlots,
      embeddingSlots,
      slotsBusy: (this.slots?.busy ?? 0) + (embedding?.busy ?? 0),
      waiting: (this.slots?.waiting ?? 0) + (embedding?.waiting ?? 0),
    };
  }

  async *generate(request: GenerationRequest, signal: AbortSignal): AsyncGenerator<StreamPart> {
    const unserved = firstUnservedFeature(request.features, this);
    if (unserved !== null) throw unservedFeatureError(unserved, `engine '${this.id}' (${this.type})`);
    const model = this.model;
    const slots = this.slots;
    if (!model || !slots) throw errors.engineFailed(this.id, 'engine is not started');
    if (request.input.kind === 'embedding') {
      yield* this.embed(request.input, signal);
      return;
    }
    this.refuseSurelyOversizedPrompt(request);
    const options = request.options ?? defaultGenerationOptions;
    if (usesChoicePath(request, options)) yield* this.generateChoices(request, options, model, slots, signal);
    else yield* this.generateText(request, options, model, slots, signal);
  }

  /**
   * Embeddings: each input through one embedding context in turn (prefill only), vectors scaled to
   * unit length. Token-id inputs go in as given, with BOS (and EOS where the model asks for it) added as
   * for text. All inputs are tokenized (and checked) before a context is taken; an abort or the engine's
   * close stops the request between inputs, while tokenizing too.
   */
  private async *embed(input: EmbeddingInput, signal: AbortSignal): AsyncGenerator<StreamPart> {
    const contexts = this.embeddingContexts;
    // The feature check refuses embeddings when the engine has no embedding contexts.
    if (!contexts) throw errors.engineFailed(this.id, 'engine is not started');
    const stop = AbortSignal.any([signal, this.closing.signal]);
    let context: LlamaEmbeddingContext | undefined;
    try {
      const prepared: Token[][] = [];
      let promptTokens = 0;
      for (const [index, item] of input.inputs.entries()) {
        // Tokenizing runs on the event loop: 2048 long inputs would hold it for a while.
        if (index > 0 && index % inputsPerTokenizeTurn === 0)
          await new Promise<void>((resolve) => setImmediate(resolve));
        if (stop.aborted) throw stop.reason;
        // An input too long whatever its tokens is refused without tokenizing it (prompt-length-bound.ts).
        const atLeast =
          typeof item === 'string' && this.longestTokenBytes !== null
            ? fewestTokens(item.length, this.longestTokenBytes)
            : 0;
        if (atLeast >= this.options.contextTokens)
          throw errors.embeddingInputTooLong({
            index,
            inputTokens: atLeast,
            contextTokens: this.options.contextTokens - 1,
          });
        const tokens = await contexts.inputTokens(item, index);
        prepared.push(tokens.tokens);
        promptTokens += tokens.evaluatedTokens;
      }
      const queuedAtMs = performance.now();
      context = await contexts.acquire(stop);
      yield {
        type: 'response-start',
        promptTokens,
        cachedPromptTokens: 0,
        queueWaitMs: performance.now() - queuedAtMs,
      };
      const data = [];
      for (const [index, tokens] of prepared.entries()) {
        if (stop.aborted) throw stop.reason;
        const embedding = await context.getEmbeddingFor(tokens);
        data.push({ index, embedding: unitVector(embedding.vector) });
      }
      if (stop.aborted) throw stop.reason;
      yield { type: 'embeddings', data, tokens: 0 };
      yield {
        type: 'finish',
        finishReason: 'stop',
        usage: { promptTokens, cachedPromptTokens: 0, completionTokens: 0, source: 'engine' },
      };
    } catch (error) {
      throw this.failure(error, stop);
    } finally {
      if (context) contexts.release(context);
    }
  }

  /** Plain text, one choice: the per-token hot path. */
  private async *generateText(
    request: GenerationRequest,
    options: GenerationOptions,
    model: LlamaModel,
    slots: SlotPool<LlamaContextSequence>,
    signal: AbortSignal,
  ): AsyncGenerator<StreamPart> {
    const { tokens: promptTokens, stopTriggers } = this.renderPrompt(model, request);
    const maxCompletionTokens = this.completionBudget(promptTokens, request.maxTokens);
    const tokenBias = logitBias(model, this.vocabulary, options.logitBias);
    // Penalties read the tokens generated so far; without penalties nothing is collected.
    const generated: Token[] | undefined = penalised(options) ? [] : undefined;

    // Aborted by the client's signal or the engine's close.
    const stop = AbortSignal.any([signal, this.closing.signal]);

    let sequence: LlamaContextSequence | undefined;
    try {
      const queuedAtMs = performance.now();
      sequence = await slots.acquire(stop, (free) => longestPrefixSlot(free, promptTokens));
      const queueWaitMs = performance.now() - queuedAtMs;
      const cachedPromptTokens = await reuseCachedPrefix(sequence, promptTokens);
      yield { type: 'response-start', promptTokens: promptTokens.length, cachedPromptTokens, queueWaitMs };

      const stopMatcher = new StopSequenceMatcher([...request.stop, ...stopTriggers]);
      const pendingTokens: Token[] = [];
      let recentTokens: Token[] = promptTokens.slice(-maxIncompleteCharacterTokens);
      let completionTokens = 0;
      // Tokens generated but not yet on a text-delta (text the stop matcher holds back): they ride on the
      // next delta, so the deltas' tokens add up to the usage's completionTokens.
      let unreportedTokens = 0;
      let finishReason: FinishReason = 'stop';
      let stopped = false;

      const evaluation = sequence.evaluate(
        promptTokens.slice(cachedPromptTokens),
        evaluateOptions(request, 0, tokenBias, generated),
      );
      const tokens = evaluation[Symbol.asyncIterator]();
      let nextToken = tokens.next();
      try {
        for (;;) {
          const result = await nextToken;
          if (result.done || stop.aborted) break;
          const token = result.value;
          completionTokens++;
          generated?.push(token);
          const isLastAllowed = completionTokens >= maxCompletionTokens;
          // Pipelining: ask llama.cpp for the next token before handing this one downstream, so the native
          // decode of token N+1 overlaps the JavaScript that detokenizes and streams token N. At most one
          // decode step is wasted when a stop sequence or a disconnect ends the stream.
          if (!isLastAllowed) {
            nextToken = tokens.next();
            // node-llama-cpp dispatches decode batches from setImmediate; waiting one turn lets that
            // dispatch (for every sequence that asked) go first, so the native decode runs while the
            // code below and the HTTP layer do their per-token work.
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
          pendingTokens.push(token);
          // Hot path, once per token: detokenize only what is pending, with the previous tokens as context
          // so SPM leading spaces come out right.
          const text = model.detokenize(pendingTokens, false, recentTokens);
          const incomplete = text.endsWith('\uFFFD') && pendingTokens.length < maxIncompleteCharacterTokens;
          if (!incomplete) {
            const { emit, stopped: hitStop } = stopMatcher.push(text);
            unreportedTokens += pendingTokens.length;
            if (emit.length > 0) {
              yield { type: 'text-delta', text: emit, tokens: unreportedTokens };
              unreportedTokens = 0;
            }
            recentTokens = pendingTokens.splice(0);
            if (hitStop) {
              stopped = true;
              break;
            }
          }
          if (isLastAllowed) {
            finishReason = 'length';
            break;
          }
        }
      } finally {
        // Waits for a prefetched step to finish, so the sequence is idle before its slot is released.
        await tokens.return(undefined);
      }
      if (stop.aborted) throw stop.reason;
      if (!stopped) {
        const rest =
          (pendingTokens.length > 0 ? model.detokenize(pendingTokens, false, recentTokens) : '') +
          stopMatcher.flush();
        unreportedTokens += pendingTokens.length;
        if (rest.length > 0) {
          yield { type: 'text-delta', text: rest, tokens: unreportedTokens };
          unreportedTokens = 0;
        }
      }
      // Tokens whose text never reaches the client (a stop sequence and what it held back) were still
      // generated: an empty delta reports them before finish.
      if (unreportedTokens > 0) yield { type: 'text-delta', text: '', tokens: unreportedTokens };
      yield {
        type: 'finish',
        finishReason,
        usage: { promptTokens: promptTokens.length, cachedPromptTokens, completionTokens, source: 'engine' },
      };
    } catch (error) {
      throw this.failure(error, stop);
    } finally {
      if (sequence) slots.release(sequence);
    }
  }

  /**
   * Generations whose output is more than one choice's plain text: each choice on its own sequence, all
   * at once (llama.cpp batches them), parts interleaved as they come.
   */
  private async *generateChoices(
    request: GenerationRequest,
    options: GenerationOptions,
    model: LlamaModel,
    slots: SlotPool<LlamaContextSequence>,
    signal: AbortSignal,
  ): AsyncGenerator<StreamPart> {
    const prompts = this.renderPrompts(model, request);
    const choiceCount = prompts.length * options.n;
    if (choiceCount > this.options.slots) {
      const parameter = options.n > 1 ? 'n' : 'prompt';
      throw errors.invalidRequest(
        `Invalid value for '${parameter}': ${choiceCount} choices, more than engine '${this.id}' generates at once ` +
          `(${this.options.slots} slots).`,
        parameter,
        'invalid_value',
      );
    }
    const budgets = prompts.map((prompt) => this.completionBudget(prompt.tokens, request.maxTokens));
    const tokenBias = logitBias(model, this.vocabulary, options.logitBias);
    const { mode, grammar } = await this.outputMode(request, options);
    const endpoint = request.input.kind === 'chat' ? 'chat' : 'completion';
    // Choice 0 alone with content only keeps the renderer's plain text path.
    const textDeltas = choiceCount === 1 && !options.logprobs && (mode === 'text' || mode === 'json');
    // Choice i answers prompt floor(i / n), as OpenAI numbers choices of a prompt array.
    const choicePrompts = Array.from(
      { length: choiceCount },
      (_, index) => prompts[Math.floor(index / options.n)] as RenderedPrompt,
    );

    const stop = AbortSignal.any([signal, this.closing.signal]);

    let sequences: LlamaContextSequence[] = [];
    try {
      const queuedAtMs = performance.now();
      sequences = await acquireAll(
        slots,
        stop,
        choicePrompts.map(
          (prompt) => (free: readonly LlamaContextSequence[]) => longestPrefixSlot(free, prompt.tokens),
        ),
      );
      const queueWaitMs = performance.now() - queuedAtMs;
      const cached: number[] = [];
      for (const [index, sequence] of sequences.entries())
        cached.push(await reuseCachedPrefix(sequence, (choicePrompts[index] as RenderedPrompt).tokens));
      // A prompt counts once however many choices answer it (OpenAI's usage for n > 1).
      let promptTokens = 0;
      let cachedPromptTokens = 0;
      for (let prompt = 0; prompt < prompts.length; prompt++) {
        promptTokens += (prompts[prompt] as RenderedPrompt).tokens.length;
        cachedPromptTokens += cached[prompt * options.n] ?? 0;
      }
      yield { type: 'response-start', promptTokens, cachedPromptTokens, queueWaitMs };

      const choices = sequences.map((sequence, index) => {
        const prompt = choicePrompts[index] as RenderedPrompt;
        const cachedTokens = cached[index] ?? 0;
        return generateChoice({
          index,
          model,
          sequence,
          inputTokens: prompt.tokens.slice(cachedTokens),
          promptTail: prompt.tokens.slice(-4),
          maxCompletionTokens: budgets[Math.floor(index / options.n)] as number,
          endpoint,
          mode,
          grammar,
          stop: [...request.stop, ...prompt.stopTriggers],
          evaluateOptions: (generated) =>
            evaluateOptions(request, index, tokenBias, penalised(options) ? generated : undefined),
          logprobs: options.logprobs
            ? { top: options.topLogprobs, shapes: this.logprobShapes as TokenLogprobs }
            : null,
          textDeltas,
          signal: stop,
        });
      });
      const outcomes = yield* interleave(choices);
      if (stop.aborted) throw stop.reason;
      yield {
        type: 'finish',
        finishReason: outcomes[0]?.finishReason ?? 'stop',
        usage: {
          promptTokens,
          cachedPromptTokens,
          completionTokens: outcomes.reduce((sum, outcome) => sum + outcome.completionTokens, 0),
          source: 'engine',
        },
        ...(textDeltas ? {} : { choicesFinished: true }),
      };
    } catch (error) {
      throw this.failure(error, stop);
    } finally {
      for (const sequence of sequences) slots.release(sequence);
    }
  }

  /** How a request's output is shaped, and the grammar that enforces it. */
  private async outputMode(
    request: GenerationRequest,
    options: GenerationOptions,
  ): Promise<{ mode: OutputMode; grammar: LlamaGrammar | null }> {
    const llama = this.llama;
    if (!llama || request.input.kind !== 'chat') return { mode: 'text', grammar: null };
    const { tools, toolChoice, parallelToolCalls } = options;
    // Tools take precedence over a response format: a call's arguments follow the tool's schema.
    if (tools.length > 0 && toolChoice !== 'none') {
      return {
        mode: toolChoice === 'auto' ? 'text-or-tool-calls' : 'tool-calls',
        grammar: await this.cachedGrammar(JSON.stringify({ tools, toolChoice, parallelToolCalls }), () =>
          toolCallGrammar(llama, tools, toolChoice, parallelToolCalls),
        ),
      };
    }
    const format = options.responseFormat;
    if (format.type === 'text') return { mode: 'text', grammar: null };
    return {
      mode: 'json',
      grammar: await this.cachedGrammar(JSON.stringify(format), () => responseFormatGrammar(llama, format)),
    };
  }

  /**
   * Grammars by what they were built from, most recently used last: agents send the same tools and
   * schemas request after request, and a grammar (immutable; each choice gets its own evaluation state)
   * is reused instead of generated and parsed again. A refused schema is not kept.
   */
  private cachedGrammar(key: string, build: () => Promise<LlamaGrammar>): Promise<LlamaGrammar> {
    let grammar = this.grammars.get(key);
    if (grammar) this.grammars.delete(key);
    else {
      grammar = build();
      grammar.catch(() => this.grammars.delete(key));
    }
    this.grammars.set(key, grammar);
    if (this.grammars.size > cachedGrammars)
      this.grammars.delete(this.grammars.keys().next().value as string);
    return grammar;
  }

  /**
   * Refuses a prompt that cannot fit the context whatever its tokens, from its length alone, before
   * anything tokenizes it on the event loop (prompt-length-bound.ts); the same 400 as `completionBudget`.
   */
  private refuseSurelyOversizedPrompt(request: GenerationRequest): void {
    const longestBytes = this.longestTokenBytes;
    if (longestBytes === null) return;
    const promptTokens = fewestTokens(promptLengthLowerBound(request.input), longestBytes);
    const { contextTokens } = this.options;
    const maxTokens = request.maxTokens;
    if (promptTokens >= contextTokens || promptTokens + (maxTokens ?? 0) > contextTokens)
      throw errors.contextLengthExceeded({
        contextTokens,
        promptTokens,
        maxTokens,
        promptTokensAtLeast: true,
      });
  }

  /** Completion tokens allowed after a prompt; a prompt that does not fit is a 400. */
  private completionBudget(promptTokens: readonly Token[], maxTokens: number | null): number {
    const contextTokens = this.options.contextTokens;
    if (promptTokens.length >= contextTokens || promptTokens.length + (maxTokens ?? 0) > contextTokens) {
      throw errors.contextLengthExceeded({ contextTokens, promptTokens: promptTokens.length, maxTokens });
    }
    // Never let llama.cpp shift the context silently: the completion ends where the window ends.
    return Math.min(maxTokens ?? Number.POSITIVE_INFINITY, contextTokens - promptTokens.length);
  }

  /** Each prompt of the request: the chat, or the completions prompt(s) as text or token ids. */
  private renderPrompts(model: LlamaModel, request: GenerationRequest): RenderedPrompt[] {
    if (request.input.kind !== 'completion' || !request.input.prompts)
      return [this.renderPrompt(model, request)];
    return request.input.prompts.map((prompt) => {
      if (typeof prompt === 'string') return { tokens: completionTokens(model, prompt), stopTriggers: [] };
      if (prompt.length === 0)
        throw errors.invalidRequest(
          "Invalid value for 'prompt': a token prompt must not be empty.",
          'prompt',
          'invalid_value',
        );
      checkTokenIds(prompt, this.vocabulary, 'prompt');
      // Token ids go to llama.cpp as given, with no BOS added: the client chose every token.
      return { tokens: [...prompt] as Token[], stopTriggers: [] };
    });
  }

  /** What a generation throws: the abort's reason, a GravityError as is, anything else as engine_failed. */
  private failure(error: unknown, signal: AbortSignal): unknown {
    if (signal.aborted) return signal.reason;
    if (error instanceof GravityError) return error;
    return errors.engineFailed(this.id, (error as Error).message);
  }

  /** Applies the model's chat template (or none, for completions) and tokenizes. */
  private renderPrompt(model: LlamaModel, request: GenerationRequest): RenderedPrompt {
    if (request.input.kind === 'completion')
      return { tokens: completionTokens(model, request.input.prompt), stopTriggers: [] };
    if (request.input.kind === 'embedding')
      throw errors.internal('an embeddings request has no prompt to render');
    const chatWrapper = this.chatWrapper;
    if (!chatWrapper) throw errors.engineFailed(this.id, 'engine is not started');
    const options = request.options ?? defaultGenerationOptions;
    const history = chatHistory(request.input.messages, options.tools, options.toolChoice);
    const state = chatWrapper.generateContextState({ chatHistory: history });
    // Triggers made only of text become stop sequences; special-token triggers (EOT) end generation in
    // llama.cpp already.
    const stopTriggers = state.stopGenerationTriggers
      .filter((trigger) => trigger.values.every((value) => typeof value === 'string'))
      .map((trigger) => trigger.toString())
      .filter((trigger) => trigger.length > 0);
    return { tokens: state.contextText.tokenize(model.tokenizer), stopTriggers };
  }
}

function completionTokens(model: LlamaModel, prompt: string): Token[] {
  const tokens = model.tokenize(prompt, false);
  const bos = model.tokens.bos;
  if (bos !== null && model.tokens.shouldPrependBosToken) tokens.unshift(bos);
  return tokens;
}

/** Whether a request leaves the plain text path: its output is more than one choice's text. */
function usesChoicePath(request: GenerationRequest, options: GenerationOptions): boolean {
  return (
    options.n > 1 ||
    options.logprobs ||
    options.responseFormat.type !== 'text' ||
    (options.tools.length > 0 && options.toolChoice !== 'none') ||
    (request.input.kind === 'completion' && request.input.prompts !== undefined)
  );
}

function penalised(options: GenerationOptions): boolean {
  return (
    options.presencePenalty !== 0 || options.frequencyPenalty !== 0 || options.repetitionPenalty !== null
  );
}

function commonPrefixLength(a: readonly Token[], b: readonly Token[]): number {
  const limit = Math.min(a.length, b.length);
  let length = 0;
  while (length < limit && a[length] === b[length]) length++;
  return length;
}

function longestPrefixSlot(free: readonly LlamaContextSequence[], promptTokens: readonly Token[]): number {
  let best = 0;
  let bestLength = -1;
  free.forEach((sequence, index) => {
    const length = commonPrefixLength(sequence.contextTokens, promptTokens);
    if (length > bestLength) {
      best = index;
      bestLength = length;
    }
  });
  return best;
}

/**
 * Keeps the part of the slot's KV cache that matches the prompt and erases the rest. At least the last
 * prompt token is always evaluated again, since its logits are what the first completion token samples from.
 */
async function reuseCachedPrefix(
  sequence: LlamaContextSequence,
  promptTokens: readonly Token[],
): Promise<number> {
  const reusable = Math.min(
    commonPrefixLength(sequence.contextTokens, promptTokens),
    promptTokens.length - 1,
  );
  if (reusable <= 0) {
    await sequence.clearHistory();
    return 0;
  }
  if (sequence.nextTokenIndex > reusable) {
    await sequence.eraseContextTokenRanges([{ start: reusable, end: sequence.nextTokenIndex }]);
  }
  return reusable;
}
