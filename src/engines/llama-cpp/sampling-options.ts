import { createHash, randomInt } from 'node:crypto';
import { type LlamaModel, type SequenceEvaluateOptions, type Token, TokenBias } from 'node-llama-cpp';
import { errors } from '../../core/errors.js';
import { defaultGenerationOptions, type GenerationRequest } from '../engine-adapter.js';

/**
 * llama.cpp takes a uint32 seed, and reads 0xFFFFFFFF (LLAMA_DEFAULT_SEED) as "pick one at random", so a
 * client's seed is hashed into [0, 0xFFFFFFFE]: any integer (negative, above 2^32, above 2^53) gets its
 * own reproducible seed, where truncation would make -1 equal 0 and 1 equal 2^32 + 1. Choice `index` of
 * a request with n > 1 gets its own seed, or all its choices would be the same text.
 */
export function llamaSeed(seed: number | null, choiceIndex = 0): number {
  // No seed: a random one per request. node-llama-cpp's default is the wall-clock second, which gives
  // parallel requests the same text.
  if (seed === null) return randomInt(0, 0xffff_ffff);
  const digest = createHash('sha256')
    .update(`${String(seed)}:${choiceIndex}`)
    .digest();
  return digest.readUInt32LE(0) % 0xffff_ffff;
}

/**
 * Throws a 400 unless every id is a token of a vocabulary of `vocabulary` tokens. `parameter` names the
 * value in the message (`prompt`, `input[2]`); the error's `param` is its top-level name (`input`).
 */
export function checkTokenIds(tokens: readonly number[], vocabulary: number, parameter: string): void {
  for (const token of tokens)
    if (!Number.isInteger(token) || token < 0 || token >= vocabulary)
      throw errors.invalidRequest(
        `Invalid value for '${parameter}': token ${token} is not in the model's vocabulary (0 to ${vocabulary - 1}).`,
        parameter.split('[')[0],
        'invalid_value',
      );
}

/** Tokens the vocabulary has, for checking `logit_bias` keys and token-id prompts. */
export function vocabularySize(model: LlamaModel): number {
  return model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0;
}

/**
 * `logit_bias` as node-llama-cpp's TokenBias: the value is added to the token's logit, as OpenAI does
 * (-100 in practice bans a token, 100 forces it). A key beyond the vocabulary is a 400.
 */
export function logitBias(
  model: LlamaModel,
  vocabulary: number,
  bias: Readonly<Record<string, number>>,
): TokenBias | undefined {
  const entries = Object.entries(bias);
  if (entries.length === 0) return undefined;
  const tokenBias = new TokenBias(model.tokenizer);
  for (const [key, value] of entries) {
    const token = Number(key);
    if (!Number.isSafeInteger(token) || token < 0 || token >= vocabulary)
      throw errors.invalidRequest(
        `Invalid key in 'logit_bias': token ${key} is not in the model's vocabulary (0 to ${vocabulary - 1}).`,
        'logit_bias',
        'invalid_value',
      );
    tokenBias.set(token as Token, { logit: value });
  }
  return tokenBias;
}

/** How many of the latest completion tokens penalties look at (llama.cpp's `penalty_last_n`). */
const penaltyWindowTokens = 256;

/**
 * The sampling options of one choice. Penalties count the choice's own completion tokens so far
 * (`generated`, read by llama.cpp at each step), as OpenAI's "the text so far" does.
 */
export function evaluateOptions(
  request: GenerationRequest,
  choiceIndex: number,
  tokenBias: TokenBias | undefined,
  generated: readonly Token[] | undefined,
): SequenceEvaluateOptions {
  const options = request.options ?? defaultGenerationOptions;
  const evaluate: SequenceEvaluateOptions = {
    temperature: request.temperature,
    topP: request.topP,
    seed: llamaSeed(request.seed, choiceIndex),
  };
  if (options.topK !== null) evaluate.topK = options.topK;
  if (options.minP !== null) evaluate.minP = options.minP;
  if (tokenBias) evaluate.tokenBias = tokenBias;
  const penalised =
    options.presencePenalty !== 0 || options.frequencyPenalty !== 0 || options.repetitionPenalty !== null;
  if (penalised && generated) {
    evaluate.repeatPenalty = {
      punishTokens: () => generated.slice(-penaltyWindowTokens),
      maxPunishTokens: penaltyWindowTokens,
      // node-llama-cpp's default is 1.1: only a client's repetition_penalty may set one.
      penalty: options.repetitionPenalty ?? 1,
      presencePenalty: options.presencePenalty,
      frequencyPenalty: options.frequencyPenalty,
    };
  }
  return evaluate;
}
