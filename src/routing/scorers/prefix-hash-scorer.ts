import { z } from 'zod';
import { replicaLoad, type ScorerDefinition } from '../routing-plugin.js';
import { Scratch } from './scratch.js';

const paramsSchema = z
  .strictObject({
    /**
     * The prefix that names a request's home: its first `prefixBlocks` prompt blocks (16 tokens each),
     * or all of them when the prompt is shorter. Short enough that a shared system prompt (and so every
     * turn of a conversation that starts with it) maps to one home; long enough that prompts without one
     * spread by their own first words.
     */
    prefixBlocks: z.number().int().min(1).default(8),
    /**
     * Bounded load (consistent hashing with bounded loads): a replica whose load would exceed
     * ceil(`factor` × (the candidates' total load + 1) / candidates) + `slackRequests` gets no credit, so
     * a hot prefix spills to the next replica in its hash order (always the same one, which then caches it
     * too) instead of piling onto its home. Null turns the bound off: pure hashing.
     */
    loadBound: z
      .strictObject({
        factor: z.number().min(1).default(1.25),
        slackRequests: z.number().min(0).default(4),
      })
      .nullable()
      .default({ factor: 1.25, slackRequests: 4 }),
  })
  .prefault({});

/**
 * Consistent hashing of prompt prefixes to replicas (rendezvous hashing, with bounded loads): each prefix
 * ranks the replicas by a hash of (prefix, replica id), and the first replica in that order within the
 * load bound is its home. Every gateway computes the same ranking from the request alone, so gateway
 * replicas behind a load balancer send a prefix to the same engine without sharing a prefix index, and
 * removing a replica moves only the prefixes whose home it was.
 *
 * Scores: the home gets 1, the next replicas within the bound 1/2, 1/4, … in hash order (so a profile
 * weighing load against it still prefers the usual spill-over replica), replicas over the bound 0. A
 * request without a full prompt block scores 0 everywhere and leaves the choice to the other scorers.
 */
export const prefixHashScorer = {
  type: 'prefix-hash',
  params: paramsSchema,
  create: (params) => {
    const weights = new Scratch();
    const replicaSeeds = new Map<string, number>();
    const seedOf = (id: string): number => {
      let seed = replicaSeeds.get(id);
      if (seed === undefined) {
        seed = stringHash32(id);
        replicaSeeds.set(id, seed);
      }
      return seed;
    };
    return {
      type: 'prefix-hash',
      usesPromptBlocks: true,
      score(request, replicas, candidates, count, scores) {
        const hashes = request.promptBlockHashes;
        if (!hashes || hashes.length === 0) {
          for (let k = 0; k < count; k++) scores[k] = 0;
          return;
        }
        // Chained block hashes: the hash of block n names the whole prompt up to its end.
        const key = hashes[Math.min(params.prefixBlocks, hashes.length) - 1] as number;
        const keyLow = key >>> 0;
        const keyHigh = Math.floor(key / 2 ** 32) >>> 0;
        const weight = weights.get(count);
        let totalLoad = 0;
        for (let k = 0; k < count; k++) {
          const replica = replicas[candidates[k] as number]!;
          weight[k] = rendezvousWeight(keyLow, keyHigh, seedOf(replica.id));
          totalLoad += replicaLoad(replica);
        }
        // ceil keeps the least loaded candidate always within the bound, so some replica always qualifies.
        const capRequests = params.loadBound
          ? Math.ceil((params.loadBound.factor * (totalLoad + 1)) / count) + params.loadBound.slackRequests
          : Number.POSITIVE_INFINITY;
        // Quadratic in the candidates, without allocating: fleets behind one model are tens of replicas.
        for (let k = 0; k < count; k++) {
          if (replicaLoad(replicas[candidates[k] as number]!) + 1 > capRequests) {
            scores[k] = 0;
            continue;
          }
          let aheadWithinBound = 0;
          for (let other = 0; other < count; other++) {
            if (!ranksBefore(weight, other, k)) continue;
            if (replicaLoad(replicas[candidates[other] as number]!) + 1 <= capRequests) aheadWithinBound++;
          }
          scores[k] = 0.5 ** aheadWithinBound;
        }
      },
    };
  },
} satisfies ScorerDefinition<z.infer<typeof paramsSchema>>;

/** Higher weight first; equal weights (a 2^-32 chance) by candidate order, so the ranking stays total. */
function ranksBefore(weight: Float64Array, a: number, b: number): boolean {
  const difference = (weight[a] as number) - (weight[b] as number);
  return difference > 0 || (difference === 0 && a < b);
}

/** The rendezvous weight of one (prefix, replica) pair: a 32-bit mix of both, uniform over replicas. */
function rendezvousWeight(keyLow: number, keyHigh: number, replicaSeed: number): number {
  return finalMix32(finalMix32(keyLow ^ replicaSeed) ^ Math.imul(keyHigh ^ 0x27d4eb2f, 0x9e3779b1));
}

/** MurmurHash3's finaliser: every input bit flips about half the output bits. */
function finalMix32(value: number): number {
  let h = value;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** 32-bit FNV-1a of a replica id, then mixed: ids like `h100-0` and `h100-1` differ in one character. */
function stringHash32(text: string): number {
  let h = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) {
    h ^= text.charCodeAt(index);
    h = Math.imul(h, 0x01000193);
  }
  return finalMix32(h >>> 0);
}
