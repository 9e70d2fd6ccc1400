import { SeededRandom } from '../../core/seeded-random.js';
import { stringSeed } from '../../performance-model/block-hashes.js';

/**
 * The emulated engine's embedding of one input: a deterministic vector seeded by the input alone (its
 * text, or its token ids written out), so the same input always gets the same vector, whatever else the
 * request holds. Components are Gaussian draws, so different inputs give nearly orthogonal vectors, as
 * unrelated texts do with a real model; nothing else about meaning is modelled.
 *
 * `dimensions` shortens the vector the way OpenAI's `text-embedding-3` models do: the first `dimensions`
 * components of the full vector, scaled back to unit length, so a shortened vector points the same way
 * as the start of the full one.
 */
export function syntheticEmbedding(
  input: string | readonly number[],
  fullDimensions: number,
  dimensions: number = fullDimensions,
): Float32Array {
  const text = typeof input === 'string' ? input : input.join(' ');
  const random = new SeededRandom(stringSeed(text, 0, text.length));
  const vector = new Float32Array(Math.min(dimensions, fullDimensions));
  let squares = 0;
  for (let index = 0; index < vector.length; index++) {
    const value = random.normal();
    vector[index] = value;
    squares += value * value;
  }
  const scale = 1 / Math.sqrt(squares);
  for (let index = 0; index < vector.length; index++) vector[index] = (vector[index] as number) * scale;
  return vector;
}
