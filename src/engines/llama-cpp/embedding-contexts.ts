import type { LlamaEmbeddingContext, LlamaModel, Token } from 'node-llama-cpp';
import { errors } from '../../core/errors.js';
import { SlotPool } from '../slot-pool.js';
import { checkTokenIds } from './sampling-options.js';

export interface EmbeddingContextsOptions {
  /** The engine's id, for errors. */
  engineId: string;
  /** Embedding contexts, each computing one input at a time: requests beyond this wait for one. */
  contexts: number;
  /** Each context's window: the longest input (BOS and EOS included) is one token shorter. */
  contextTokens: number;
  threads: number;
  /** Tokens in the model's vocabulary, for checking token-id inputs. */
  vocabulary: number;
}

/**
 * The llama.cpp embedding contexts of one model (node-llama-cpp's `createEmbeddingContext`), created on
 * the first embeddings request so an engine that only generates never allocates them. They are separate
 * from the generation context: llama.cpp computes embeddings only in a context made for them, and each
 * embedding context holds one sequence (node-llama-cpp serialises its calls), so concurrency is the
 * number of contexts, bounded like generation slots are.
 */
export class EmbeddingContexts {
  private pool: Promise<SlotPool<LlamaEmbeddingContext>> | undefined;
  private created: SlotPool<LlamaEmbeddingContext> | undefined;
  /** All of the contexts once created, none before (a creation that fails keeps none). */
  private contexts: readonly LlamaEmbeddingContext[] = [];
  private disposed = false;

  constructor(
    private readonly model: LlamaModel,
    private readonly options: EmbeddingContextsOptions,
  ) {}

  get busy(): number {
    return this.created?.busy ?? 0;
  }

  get waiting(): number {
    return this.created?.waiting ?? 0;
  }

  /** Resolves with a free context (waiting in FIFO order); `release` must follow exactly once. */
  async acquire(signal: AbortSignal): Promise<LlamaEmbeddingContext> {
    const pool = await this.slots();
    return pool.acquire(signal);
  }

  release(context: LlamaEmbeddingContext): void {
    this.created?.release(context);
  }

  /**
   * Tokens of one input as the embedding context evaluates them: text tokenized without special tokens,
   * token ids as given, then BOS (and EOS where the model's vocabulary asks for it) added as
   * node-llama-cpp adds them. Throws a 400 for ids outside the vocabulary and inputs beyond the window.
   */
  async inputTokens(
    input: string | readonly number[],
    index: number,
  ): Promise<{ tokens: Token[]; evaluatedTokens: number }> {
    await this.slots();
    const tokens: Token[] =
      typeof input === 'string' ? this.model.tokenize(input, false) : ([...input] as Token[]);
    if (typeof input !== 'string') checkTokenIds(input, this.options.vocabulary, `input[${index}]`);
    // The context adds the model's BOS/EOS itself; counting them here makes usage and the length check
    // exact. Counting only tokenizes, so any context does it, busy or not.
    const counter = this.contexts[0];
    // Disposed while this request waited for the contexts' creation: the engine is closing.
    if (!counter) throw errors.engineFailed(this.options.engineId, 'engine closed');
    const evaluated = counter.calculateInputLength(tokens);
    // node-llama-cpp refuses an input that fills the whole window.
    if (evaluated >= this.options.contextTokens)
      throw errors.embeddingInputTooLong({
        index,
        inputTokens: evaluated,
        contextTokens: this.options.contextTokens - 1,
      });
    return { tokens, evaluatedTokens: evaluated };
  }

  /** Frees the contexts; a creation in progress finishes first, so what it made is freed too. */
  async dispose(): Promise<void> {
    this.disposed = true;
    const creation = this.pool;
    this.pool = undefined;
    await creation?.catch(() => {});
    const contexts = this.contexts;
    this.contexts = [];
    this.created = undefined;
    for (const context of contexts) await context.dispose();
  }

  private slots(): Promise<SlotPool<LlamaEmbeddingContext>> {
    if (this.disposed) return Promise.reject(errors.engineFailed(this.options.engineId, 'engine closed'));
    this.pool ??= this.create().catch((error: unknown) => {
      // A failed creation (out of memory, an encoder-decoder model) is retried by the next request.
      this.pool = undefined;
      throw errors.engineFailed(
        this.options.engineId,
        `could not create an embedding context: ${(error as Error).message}`,
      );
    });
    return this.pool;
  }

  private async create(): Promise<SlotPool<LlamaEmbeddingContext>> {
    const contexts: LlamaEmbeddingContext[] = [];
    try {
      for (let index = 0; index < this.options.contexts; index++) {
        contexts.push(
          await this.model.createEmbeddingContext({
            contextSize: this.options.contextTokens,
            // The whole input in one batch: llama.cpp pools non-causal models' embeddings over one batch.
            batchSize: this.options.contextTokens,
            threads: this.options.threads,
          }),
        );
      }
    } catch (error) {
      // Those made before the failure would otherwise hold their memory until the model is freed.
      for (const context of contexts) await context.dispose();
      throw error;
    }
    this.contexts = contexts;
    this.created = new SlotPool([...contexts]);
    return this.created;
  }
}

/**
 * A vector scaled to unit length (Euclidean), as OpenAI's embeddings and llama.cpp's server return them,
 * so a dot product is the cosine similarity. llama.cpp returns the raw pooled hidden state. A zero vector
 * stays zero.
 */
export function unitVector(values: ArrayLike<number>): Float32Array {
  let squares = 0;
  for (let index = 0; index < values.length; index++) squares += (values[index] as number) ** 2;
  const scale = squares > 0 ? 1 / Math.sqrt(squares) : 0;
  const vector = new Float32Array(values.length);
  for (let index = 0; index < values.length; index++) vector[index] = (values[index] as number) * scale;
  return vector;
}
