import { estimateTextTokens } from '../../core/prompt-size.js';

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

export { promptBlockHashes } from '../../performance-model/block-hashes.js';
