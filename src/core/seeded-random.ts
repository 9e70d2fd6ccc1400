import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';

/**
 * Seeded random draws, the one generator for every stage that needs reproducible randomness: the
 * simulator's workloads and routing ties, the emulated engine's answers (seeded by the client's `seed`).
 * The same seed gives the same draws, bit for bit, on every platform. Each consumer gets its own stream
 * via `fork`, so adding draws in one place does not shift every other sequence of draws.
 */
export class SeededRandom {
  private readonly generator: RandomGenerator;

  constructor(seed: number) {
    // Any number folds into 32 bits (clients send seeds beyond 2^32, negative ones, fractions).
    seed = Number.isFinite(seed) ? (Math.trunc(seed) % 2 ** 32) | 0 : 0;
    // Small seeds start xoroshiro in a low-entropy state; scramble the seed and drop the first draws.
    let scrambled = Math.imul(seed ^ 0x5bd1e995, 0x27d4eb2d) ^ (seed >>> 15);
    scrambled = Math.imul(scrambled ^ (scrambled >>> 13), 0x165667b1);
    this.generator = xoroshiro128plus(scrambled | 0);
    for (let index = 0; index < 8; index++) this.generator.next();
  }

  /** A new independent stream named by `label` (stable across runs). */
  fork(label: string): SeededRandom {
    let hash = 0x811c9dc5;
    for (let index = 0; index < label.length; index++)
      hash = Math.imul(hash ^ label.charCodeAt(index), 0x01000193);
    return new SeededRandom((this.generator.next() ^ hash) | 0);
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return uniformFloat64(this.generator);
  }

  /** Exponential with the given mean (inter-arrival times of a Poisson process). */
  exponential(mean: number): number {
    return -mean * Math.log(1 - this.uniform());
  }

  normal(): number {
    // Box–Muller; one of the pair is dropped to keep the stream simple.
    const u = 1 - this.uniform();
    const v = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Gamma(shape, scale) by Marsaglia and Tsang's method (boosted for shape < 1). */
  gamma(shape: number, scale: number): number {
    if (shape < 1) return this.gamma(shape + 1, scale) * this.uniform() ** (1 / shape);
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = this.uniform();
      if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v)))
        return d * v * scale;
    }
  }

  /** Log-normal with the given mean and coefficient of variation. */
  lognormal(mean: number, cv: number): number {
    const sigma2 = Math.log(1 + cv * cv);
    const mu = Math.log(mean) - sigma2 / 2;
    return Math.exp(mu + Math.sqrt(sigma2) * this.normal());
  }

  /** An index drawn with probability proportional to `weights[i]`. */
  weighted(cumulativeWeights: readonly number[]): number {
    const total = cumulativeWeights[cumulativeWeights.length - 1] as number;
    const target = this.uniform() * total;
    let index = 0;
    while ((cumulativeWeights[index] as number) <= target) index++;
    return index;
  }

  /** Uniform integer in [min, max]. */
  integer(min: number, max: number): number {
    return min + Math.floor(this.uniform() * (max - min + 1));
  }

  /** A 31-bit integer, e.g. a content seed. */
  int(): number {
    return this.generator.next() >>> 1;
  }
}
