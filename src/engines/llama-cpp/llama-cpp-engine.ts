import path from 'node:path';
import {
  type ChatHistoryItem,
  type ChatWrapper,
  getLlama,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  LlamaLogLevel,
  type LlamaModel,
  resolveChatWrapper,
  type Token,
} from 'node-llama-cpp';
import { errors, GravityError } from '../../core/errors.js';
import { firstUnservedFeature, unservedFeatureError } from '../../core/request-features.js';
import type { FinishReason, StreamPart } from '../../core/stream-parts.js';
import {
  type EngineAdapter,
  type EngineLoad,
  type EngineModelInfo,
  engineSpecificationVersion,
  type GenerationRequest,
} from '../engine-adapter.js';
import { SlotPool } from '../slot-pool.js';
import { StopSequenceMatcher } from '../stop-sequence-matcher.js';

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
}

// One llama.cpp binding per process: it owns the native backend and its thread pool.
let sharedLlama: Promise<Llama> | undefined;
function loadLlama(): Promise<Llama> {
  sharedLlama ??= getLlama({
    gpu: false,
    build: 'never',
    logLevel: LlamaLogLevel.error,
    progressLogs: false,
  });
  return sharedLlama;
}

// A UTF-8 character is at most 4 bytes, so at most 4 byte-fallback tokens can form one incomplete character.
const maxIncompleteCharacterTokens = 4;

/**
 * The embedded engine: a GGUF model run in-process by llama.cpp (node-llama-cpp) on the CPU. Concurrent
 * requests run as parallel sequences of one context, which llama.cpp batches into shared steps
 * (continuous batching). Each slot keeps its KV cache after a request, and a new request goes to the free
 * slot sharing the longest prompt prefix, so repeated system prompts are not recomputed.
 */
export class LlamaCppEngine implements EngineAdapter {
  readonly specificationVersion = engineSpecificationVersion;
  readonly type = 'llama-cpp';
  /** The request features (core/request-features.ts) this engine serves; others get a 400 naming them. */
  readonly servedFeatures: ReadonlySet<string> = new Set<string>();
  readonly id: string;
  private readonly options: LlamaCppEngineOptions;
  private model: LlamaModel | undefined;
  private context: LlamaContext | undefined;
  private chatWrapper: ChatWrapper | undefined;
  private slots: SlotPool<LlamaContextSequence> | undefined;
  private readonly running = new Set<AbortController>();

  constructor(options: LlamaCppEngineOptions) {
    this.id = options.id;
    this.options = options;
  }

  async start(): Promise<void> {
    const llama = await loadLlama();
    try {
      this.model = await llama.loadModel({ modelPath: this.options.modelPath });
    } catch (error) {
      throw new Error(
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
    const sequences: LlamaContextSequence[] = [];
    for (let index = 0; index < this.options.slots; index++) sequences.push(this.context.getSequence());
    this.slots = new SlotPool(sequences);
  }

  async close(): Promise<void> {
    for (const controller of this.running) controller.abort(errors.engineFailed(this.id, 'engine closed'));
    await this.context?.dispose();
    await this.model?.dispose();
    this.context = undefined;
    this.model = undefined;
  }

  models(): EngineModelInfo[] {
    return [{ id: this.options.modelId, contextTokens: this.options.contextTokens, ownedBy: 'gravity' }];
  }

  load(): EngineLoad {
    return {
      slotsTotal: this.options.slots,
      slotsBusy: this.slots?.busy ?? 0,
      waiting: this.slots?.waiting ?? 0,
    };
  }

  async *generate(request: GenerationRequest, signal: AbortSignal): AsyncGenerator<StreamPart> {
    const unserved = firstUnservedFeature(request.features, this.servedFeatures);
    if (unserved !== null) throw unservedFeatureError(unserved, `engine '${this.id}' (${this.type})`);
    const model = this.model;
    const slots = this.slots;
    if (!model || !slots) throw errors.engineFailed(this.id, 'engine is not started');

    const { tokens: promptTokens, stopTriggers } = this.renderPrompt(model, request);
    const contextTokens = this.options.contextTokens;
    if (
      promptTokens.length >= contextTokens ||
      promptTokens.length + (request.maxTokens ?? 0) > contextTokens
    ) {
      throw errors.contextLengthExceeded({
        contextTokens,
        promptTokens: promptTokens.length,
        maxTokens: request.maxTokens,
      });
    }
    // Never let llama.cpp shift the context silently: the completion ends where the window ends.
    const maxCompletionTokens = Math.min(
      request.maxTokens ?? Number.POSITIVE_INFINITY,
      contextTokens - promptTokens.length,
    );

    // Local controller: aborts on the client's signal and on engine close.
    const controller = new AbortController();
    const forwardAbort = () => controller.abort(signal.reason);
    if (signal.aborted) forwardAbort();
    else signal.addEventListener('abort', forwardAbort, { once: true });
    this.running.add(controller);

    let sequence: LlamaContextSequence | undefined;
    try {
      const queuedAtMs = performance.now();
      sequence = await slots.acquire(controller.signal, (free) => longestPrefixSlot(free, promptTokens));
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

      const evaluation = sequence.evaluate(promptTokens.slice(cachedPromptTokens), {
        temperature: request.temperature,
        topP: request.topP,
        ...(request.seed === null ? {} : { seed: request.seed }),
      });
      const tokens = evaluation[Symbol.asyncIterator]();
      let nextToken = tokens.next();
      try {
        for (;;) {
          const result = await nextToken;
          if (result.done || controller.signal.aborted) break;
          const token = result.value;
          completionTokens++;
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
      if (controller.signal.aborted) throw controller.signal.reason;
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
      if (error instanceof GravityError || controller.signal.aborted)
        throw controller.signal.aborted ? controller.signal.reason : error;
      throw errors.engineFailed(this.id, (error as Error).message);
    } finally {
      signal.removeEventListener('abort', forwardAbort);
      this.running.delete(controller);
      if (sequence) slots.release(sequence);
    }
  }

  /** Applies the model's chat template (or none, for completions) and tokenizes. */
  private renderPrompt(
    model: LlamaModel,
    request: GenerationRequest,
  ): { tokens: Token[]; stopTriggers: string[] } {
    if (request.input.kind === 'completion') {
      const tokens = model.tokenize(request.input.prompt, false);
      const bos = model.tokens.bos;
      if (bos !== null && model.tokens.shouldPrependBosToken) tokens.unshift(bos);
      return { tokens, stopTriggers: [] };
    }
    const chatWrapper = this.chatWrapper;
    if (!chatWrapper) throw errors.engineFailed(this.id, 'engine is not started');
    const history: ChatHistoryItem[] = request.input.messages.map((message): ChatHistoryItem => {
      if (message.role === 'assistant') return { type: 'model', response: [message.content] };
      if (message.role === 'user') return { type: 'user', text: message.content };
      return { type: 'system', text: message.content };
    });
    history.push({ type: 'model', response: [] });
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
