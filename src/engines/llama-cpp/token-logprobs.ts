import type { LlamaModel, Token } from 'node-llama-cpp';

/** OpenAI writes this for a probability too small to have a finite logarithm. */
const floorLogprob = -9999;

export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }>;
}

/**
 * Turns llama.cpp's per-step probabilities into OpenAI's logprobs. The probabilities are those
 * node-llama-cpp reports for the step: after temperature, top-k/top-p/min-p, penalties, bias and grammar,
 * i.e. the distribution the token was actually drawn from.
 *
 * A byte-fallback token (`<0xC3>`) stands for one byte of a character that spans several tokens; its
 * text alone is not valid UTF-8, so its `bytes` come from the vocabulary entry, as OpenAI gives a partial
 * character's bytes.
 */
export class TokenLogprobs {
  private readonly pieces: readonly string[];

  constructor(private readonly model: LlamaModel) {
    this.pieces = model.fileInfo.metadata.tokenizer?.ggml?.tokens ?? [];
  }

  /** One step's entry: the chosen token and the `top` most likely, most likely first. */
  entry(
    token: Token,
    probabilities: ReadonlyMap<Token, number>,
    top: number,
    previous: readonly Token[],
  ): TokenLogprob {
    const chosen = this.describe(token, probabilities.get(token) ?? 0, previous);
    const alternatives: TokenLogprob['top_logprobs'] = [];
    if (top > 0) {
      for (const [candidate, probability] of probabilities) {
        if (alternatives.length >= top) break;
        alternatives.push(this.describe(candidate, probability, previous));
      }
    }
    return { ...chosen, top_logprobs: alternatives };
  }

  private describe(token: Token, probability: number, previous: readonly Token[]) {
    const text = this.model.detokenize([token], false, previous);
    return { token: text, logprob: logprobOf(probability), bytes: this.bytes(token, text) };
  }

  private bytes(token: Token, text: string): number[] {
    if (text.includes('\uFFFD')) {
      const piece = this.pieces[token];
      const byte = typeof piece === 'string' ? /^<0x([0-9A-Fa-f]{2})>$/.exec(piece) : null;
      if (byte) return [Number.parseInt(byte[1] as string, 16)];
    }
    return [...Buffer.from(text, 'utf8')];
  }
}

export function logprobOf(probability: number): number {
  return probability > 0 ? Math.max(Math.log(probability), floorLogprob) : floorLogprob;
}

/** The chat shape of one chunk's logprobs. */
export function chatLogprobs(entries: TokenLogprob[]) {
  return { content: entries, refusal: null };
}

/**
 * The legacy completions shape: parallel arrays, `top_logprobs` as token → logprob maps, and each
 * token's character offset in the choice's text (`offsetStart` is where this chunk begins).
 */
export function legacyLogprobs(entries: TokenLogprob[], offsetStart: number) {
  const textOffset: number[] = [];
  let offset = offsetStart;
  for (const entry of entries) {
    textOffset.push(offset);
    offset += entry.token.length;
  }
  return {
    tokens: entries.map((entry) => entry.token),
    token_logprobs: entries.map((entry) => entry.logprob),
    top_logprobs: entries.map((entry) =>
      Object.fromEntries(entry.top_logprobs.map((alternative) => [alternative.token, alternative.logprob])),
    ),
    text_offset: textOffset,
  };
}
