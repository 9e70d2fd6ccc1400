import { estimateTemplatedExtraTokens, estimateTextTokens, promptText } from '../../core/prompt-size.js';
import type { GenerationRequest } from '../engine-adapter.js';

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

/**
 * Fixed prompt-token estimates for content the emulated engine cannot measure as text, documented in
 * the engine's README. Images: OpenAI's figure for a 1024×1024 image at high detail (85 base + 4 tiles
 * × 170), and its flat 85 at low detail. Audio: 250 tokens per clip, about 25 seconds at the ~10 tokens
 * a second audio encoders give. File parts are not counted.
 */
export const mediaPromptTokens = { image: 765, lowDetailImage: 85, audio: 250 } as const;

/** One prompt as the emulated engine runs it: its text (seeds, prefix-cache blocks) and its tokens. */
export interface EmulatedPrompt {
  text: string;
  tokens: number;
}

/**
 * The prompts of a request, one per sequence family: a chat's messages, a completion's prompt, or each
 * of several prompts sent at once (token-id prompts count their ids; their text, for seeds and cache
 * blocks, is the ids written out). A chat's prompt also counts what a chat template would put in it
 * besides message text: the tool definitions, the tool calls of earlier assistant turns, and media parts
 * at the fixed estimates above. Those tokens sit after the text's cache blocks, so the router's prefix
 * index (built from the same text) still matches the engine's.
 */
export function emulatedPrompts(request: GenerationRequest): EmulatedPrompt[] {
  const input = request.input;
  // Each embedding input is its own prompt, as each of several completion prompts is.
  if (input.kind === 'embedding') return input.inputs.map(emulatedPrompt);
  if (input.kind === 'completion') {
    if (!input.prompts) return [{ text: input.prompt, tokens: estimatePromptTokens(input.prompt) }];
    return input.prompts.map(emulatedPrompt);
  }
  const text = promptText(input);
  return [{ text, tokens: estimatePromptTokens(text) + templatedExtraTokens(request) }];
}

function emulatedPrompt(prompt: string | readonly number[]): EmulatedPrompt {
  return typeof prompt === 'string'
    ? { text: prompt, tokens: estimatePromptTokens(prompt) }
    : { text: prompt.join(' '), tokens: Math.max(1, prompt.length) };
}

function templatedExtraTokens(request: GenerationRequest): number {
  return estimateTemplatedExtraTokens(request) + mediaTokens(request.carried?.messages);
}

/** Media content parts of the client's messages (the carried body), at the fixed estimates. */
function mediaTokens(messages: unknown): number {
  if (!Array.isArray(messages)) return 0;
  let tokens = 0;
  for (const message of messages) {
    const content = (message as { content?: unknown } | null)?.content;
    if (!Array.isArray(content)) continue;
    for (const part of content as Array<{ type?: unknown; image_url?: { detail?: unknown } }>) {
      if (part?.type === 'image_url')
        tokens +=
          part.image_url?.detail === 'low' ? mediaPromptTokens.lowDetailImage : mediaPromptTokens.image;
      else if (part?.type === 'input_audio') tokens += mediaPromptTokens.audio;
    }
  }
  return tokens;
}
