import { type LlamaModel, LlamaVocabularyType } from 'node-llama-cpp';
import type { GenerationRequest } from '../engine-adapter.js';

/**
 * A refusal of oversized prompts that reads no character of them. Tokenizing runs on the event loop
 * (node-llama-cpp's `tokenize` is synchronous native code): a 4 MB prompt held every other request for
 * about 2 s before the context check refused it. Here a prompt is refused from its length alone when it
 * cannot fit whatever its tokens.
 *
 * The bound: no token covers more bytes of text than the longest vocabulary entry, written in UTF-8
 * (GGUF stores SPM's `▁` for a 1-byte space, byte tokens as `<0xNN>`, byte-level BPE's 2-byte stand-ins,
 * so an entry is never shorter than the text it stands for); and a string has at least as many UTF-8
 * bytes as UTF-16 code units. So a text of `length` code units has at least
 * `ceil(length / longestTokenBytes)` tokens, computed in O(1).
 */

/**
 * The longest vocabulary entry in UTF-8 bytes, read once at load from the GGUF metadata node-llama-cpp
 * already holds; null where no bound holds: WPM (BERT) and UGM (T5) tokenizers normalise text and drop
 * whitespace, so a long text can be few tokens, and other vocabularies are not known well enough here.
 */
export function longestTokenBytes(model: LlamaModel): number | null {
  const type = model.vocabularyType;
  if (type !== LlamaVocabularyType.spm && type !== LlamaVocabularyType.bpe) return null;
  const tokens = model.fileInfo.metadata.tokenizer?.ggml?.tokens;
  if (!tokens || tokens.length === 0) return null;
  let longest = 1;
  for (const token of tokens) {
    const bytes = Buffer.byteLength(token, 'utf8');
    if (bytes > longest) longest = bytes;
  }
  return longest;
}

/** Fewest tokens a text of `length` UTF-16 code units can tokenize to (see above). */
export function fewestTokens(length: number, longestBytes: number): number {
  return Math.ceil(length / longestBytes);
}

/**
 * The longest text of a request that surely reaches the tokenizer whole, in UTF-16 code units: a
 * completion's prompt (or its longest text prompt, each being its own sequence), or the sum of a chat's
 * message texts that every chat template keeps. Assistant turns are left out: templates may drop parts
 * of earlier ones (reasoning), and a lower bound must never count text that may not be there.
 */
export function promptLengthLowerBound(input: GenerationRequest['input']): number {
  if (input.kind === 'completion') {
    if (!input.prompts) return input.prompt.length;
    let longest = 0;
    for (const prompt of input.prompts)
      if (typeof prompt === 'string' && prompt.length > longest) longest = prompt.length;
    return longest;
  }
  if (input.kind === 'chat') {
    let length = 0;
    for (const message of input.messages) if (message.role !== 'assistant') length += message.content.length;
    return length;
  }
  return 0;
}
