import { textBlockHashes } from '../../performance-model/block-hashes.js';
import type { GenerationRequest } from '../engine-adapter.js';

/**
 * How the emulated engine reads a prompt without a tokenizer. It has no vocabulary, so token counts are
 * estimated from characters: ~4 characters per token, the usual figure for English text with a BPE
 * tokenizer. No chat template is applied (a real engine would add a few tokens per message).
 */
export const charactersPerToken = 4;

/** The prompt as one string: a completion's prompt, or the chat messages' contents joined by newlines. */
export function promptText(input: GenerationRequest['input']): string {
  if (input.kind === 'completion') return input.prompt;
  let text = '';
  for (const [index, message] of input.messages.entries())
    text += index === 0 ? message.content : `\n${message.content}`;
  return text;
}

/** Estimated prompt tokens: characters ÷ 4, rounded up, at least 1 (an empty prompt still has a BOS). */
export function estimatePromptTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / charactersPerToken));
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
