import { charactersPerToken, estimateTextTokens } from '../../core/prompt-size.js';
import { textBlockHashes } from '../../performance-model/block-hashes.js';

/**
 * How the emulated engine reads a prompt without a tokenizer: it has no vocabulary, so it counts tokens
 * with Gravity's character estimate (src/core/prompt-size.ts) over the prompt text (`promptText`, chat
 * contents joined by newlines). No chat template is applied (a real engine would add a few tokens per
 * message).
 */
export { promptText } from '../../core/prompt-size.js';

/** Estimated prompt tokens: characters ÷ 4, rounded up, at least 1 (an empty prompt still has a BOS). */
export function estimatePromptTokens(text: string): number {
  return Math.max(1, estimateTextTokens(text));
}

/**
 * Prefix-cache identities of the prompt's full KV blocks. A block of `blockTokens` tokens covers
 * `blockTokens × 4` characters (64 for vLLM's 16-token blocks); each hash chains the previous one (see
 * block-hashes.ts), so two prompts share a block only when all text up to its end is the same. Only
 * whole character blocks are hashed, never more blocks than the estimated tokens fill.
 */
export function promptBlockHashes(text: string, blockTokens: number): number[] {
  return textBlockHashes(text, blockTokens * charactersPerToken);
}
