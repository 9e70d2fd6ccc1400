import { stringSeed } from '../../performance-model/block-hashes.js';

/**
 * The emulated engine's embedding of one input: a deterministic vector seeded by the input alone (its
 * prompt text from emulated-prompt.ts: the text, or the token ids written out), so the same input always
 * gets the same vector, whatever else the request holds. Components are independent and uniform in (-1, 1) before scaling to unit length, so
 * different inputs give nearly orthogonal vectors (a dot product of about ±1/√dimensions), as unrelated
 * texts do with a real model; nothing else about meaning is modelled.
 *
 * `dimensions` shortens the vector the way OpenAI's `text-embedding-3` models do: the first `dimensions`
 * components of the full vector, scaled back to unit length, so a shortened vector points the same way
 * as the start of the full one.
 *
 * Hot for large requests (2,048 inputs × 4,096 components): an inline xorshift32 rather than the shared
 * SeededRandom (whose Gaussian draws cost ~80 ns each, ~0.3 ms a vector).
 */
export function syntheticEmbedding(
  text: string,
  fullDimensions: number,
  dimensions: number = fullDimensions,
): Float32Array {
  // Kept an int32 (every XOR gives one), so the loop stays on small integers.
  let state = stringSeed(text, 0, text.length) | 0 || 0x1e3779b9;
  const vector = new Float32Array(Math.min(dimensions, fullDimensions));
  let squares = 0;
  for (let index = 0; index < vector.length; index++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    // The 32-bit state read as a signed integer, scaled into (-1, 1).
    const value = (state + 0.5) / 0x8000_0000;
    vector[index] = value;
    squares += value * value;
  }
  const scale = 1 / Math.sqrt(squares);
  for (let index = 0; index < vector.length; index++) vector[index] = (vector[index] as number) * scale;
  return vector;
}
