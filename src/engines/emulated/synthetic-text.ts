import type { SeededRandom } from '../../core/seeded-random.js';

/**
 * What the emulated engine says: readable, deterministic filler. Each completion token is one word with
 * a leading space, drawn from a fixed vocabulary by a seeded generator, grouped into sentences (capital
 * first word, full stop at the end). Plain ASCII, so every chunk is valid UTF-8 on its own.
 */

const vocabulary = (
  'the a system model request token answer server engine queue batch cache memory step time data ' +
  'user prompt reply result value number order line word text page file network signal power energy ' +
  'cost price rate load share flow path stage part block layer device replica cluster gateway router ' +
  'policy tier budget limit window context sequence stream chunk record ledger metric report test ' +
  'is was will can may should would could must has had does runs keeps reads writes sends takes makes ' +
  'gives finds shows holds moves waits starts ends grows falls stays turns ' +
  'of in on at by for with from into over under after before between through about across ' +
  'and or but so then when while because if ' +
  'new old small large fast slow long short early late busy idle full empty simple clear steady ' +
  'first last next each every some many few more less most least other same ' +
  'now soon often always never again still only also just well even'
).split(' ');
const capitalised = vocabulary.map((word) => word.charAt(0).toUpperCase() + word.slice(1));
// Pieces with their leading space built once: the per-token path only picks from these arrays.
const plainPieces = vocabulary.map((word) => ` ${word}`);
const openingPieces = capitalised.map((word) => ` ${word}`);
const closingPieces = vocabulary.map((word) => ` ${word}.`);

/** One stream's words. `take(n)` continues where the last call stopped. */
export class SyntheticText {
  private wordsLeftInSentence = 0;

  constructor(private readonly random: SeededRandom) {}

  /** Hot path, once per decode step per stream: `tokens` pieces, usually one. */
  take(tokens: number): string {
    let text = '';
    for (let index = 0; index < tokens; index++) {
      const word = Math.floor(this.random.uniform() * vocabulary.length);
      if (this.wordsLeftInSentence === 0) {
        this.wordsLeftInSentence = this.random.integer(4, 14);
        text += openingPieces[word];
      } else if (this.wordsLeftInSentence === 1) {
        text += closingPieces[word];
      } else {
        text += plainPieces[word];
      }
      this.wordsLeftInSentence--;
    }
    return text;
  }
}

/** `count` lowercase words of the same vocabulary joined by `separator`: names and values in synthetic JSON. */
export function syntheticWords(random: SeededRandom, count: number, separator = ' '): string {
  let text = '';
  for (let index = 0; index < count; index++) {
    const word = vocabulary[Math.floor(random.uniform() * vocabulary.length)] as string;
    text += index === 0 ? word : `${separator}${word}`;
  }
  return text;
}

/** A word of the vocabulary for a number (a token id, an alternative's rank): the same number, the same word. */
export function vocabularyWord(index: number): string {
  return vocabulary[Math.abs(Math.trunc(index)) % vocabulary.length] as string;
}

/**
 * ShareGPT-like answer lengths: log-normal with median 120 and σ 0.9, so the mean is
 * 120 · e^(0.9²/2) ≈ 180 tokens, with the long right tail real chat answers have. A declared shape,
 * close to the ShareGPT output lengths serving benchmarks report (mean ~180–200), not a fit.
 */
export function drawAnswerTokens(random: SeededRandom): number {
  const medianTokens = 120;
  const sigma = 0.9;
  return Math.max(1, Math.round(medianTokens * Math.exp(sigma * random.normal())));
}
