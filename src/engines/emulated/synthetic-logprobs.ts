import type { SeededRandom } from '../../core/seeded-random.js';
import { vocabularyWord } from './synthetic-text.js';

/**
 * Log probabilities for the emulated engine's tokens: modelled, not computed (there are no weights).
 * The model, stated so a reader of the numbers knows what they mean:
 * - the chosen token's probability p is drawn per token: p = e^(−x), x exponential with mean 0.35, so
 *   most tokens are confident (p ≈ 0.7) and a few are not, as with a real model at temperature 1;
 * - the alternatives share the rest geometrically: the i-th has (1 − p) · 2^(−i), so the probabilities of
 *   the chosen token and its alternatives never add up to more than 1;
 * - alternatives are words of the synthetic vocabulary other than the chosen one, each with a leading
 *   space; `top_logprobs` lists the chosen token and its alternatives, most likely first.
 * Deterministic: the draws come from the choice's seeded generator.
 */
export class SyntheticLogprobs {
  constructor(
    private readonly random: SeededRandom,
    /** Alternatives per token (`top_logprobs`, or the completions API's `logprobs` integer). */
    private readonly top: number,
  ) {}

  /** One token's chat entry: `{token, logprob, bytes, top_logprobs}`. */
  chatEntry(token: string): ChatLogprobEntry {
    const candidates = this.candidates(token);
    return {
      token,
      logprob: candidates[0]?.logprob as number,
      bytes: [...Buffer.from(token, 'utf8')],
      top_logprobs: candidates
        .slice(0, this.top)
        .sort((a, b) => b.logprob - a.logprob)
        .map((candidate) => ({ ...candidate, bytes: [...Buffer.from(candidate.token, 'utf8')] })),
    };
  }

  /** One token's completions figures: its logprob and the map of the most likely tokens. */
  completionEntry(token: string): { logprob: number; top: Record<string, number> } {
    const candidates = this.candidates(token);
    const top: Record<string, number> = {};
    for (const candidate of candidates.slice(0, this.top).sort((a, b) => b.logprob - a.logprob))
      top[candidate.token] = candidate.logprob;
    return { logprob: candidates[0]?.logprob as number, top };
  }

  /** The chosen token first, then its alternatives. */
  private candidates(token: string): Array<{ token: string; logprob: number }> {
    const chosen = Math.min(0.999, Math.exp(-this.random.exponential(0.35)));
    const candidates = [{ token, logprob: round(Math.log(chosen)) }];
    const start = this.random.integer(0, 10_000);
    for (let rank = 1, offset = 0; candidates.length < Math.max(1, this.top); offset++) {
      const alternative = ` ${vocabularyWord(start + offset * 7)}`;
      if (alternative === token || candidates.some((candidate) => candidate.token === alternative)) continue;
      candidates.push({ token: alternative, logprob: round(Math.log((1 - chosen) * 2 ** -rank)) });
      rank++;
    }
    return candidates;
  }
}

export interface ChatLogprobEntry {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }>;
}

function round(logprob: number): number {
  return Math.round(logprob * 1e6) / 1e6;
}
