import { charactersPerToken, prefixBlockTokens } from '../core/prompt-size.js';

/**
 * Identities of KV cache blocks for prefix caching. A block's identity depends on its own content and on
 * every block before it (as vLLM's chained block hashes do), so two prompts share a cached block only if
 * they agree on everything up to and including it.
 *
 * Content is described by `seed`s rather than tokens: the simulator gives each distinct piece of text
 * (a shared system prompt, one turn of a session, a unique question) its own seed; the emulated engine
 * hashes the prompt's characters. Hashes are 52-bit integers held exactly in a double, so a fleet's
 * worth of cached blocks does not collide the way 32-bit hashes would.
 */
const twoTo32 = 2 ** 32;

function mix32(value: number, salt: number): number {
  let h = Math.imul(value ^ salt, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The identity of the block after `previous` whose content is `contentSeed`. */
export function chainBlockHash(previous: number, contentSeed: number): number {
  const low = previous % twoTo32;
  const high = Math.floor(previous / twoTo32);
  const contentLow = (contentSeed % twoTo32) >>> 0;
  const contentHigh = Math.floor(contentSeed / twoTo32) >>> 0;
  const a = mix32(low ^ contentLow, 0x1b873593 ^ high);
  const b = mix32(high ^ contentHigh ^ a, 0xcc9e2d51 ^ low);
  return (b & 0xfffff) * twoTo32 + a;
}

/** A stretch of text with one content seed, `tokens` long. */
export interface PromptSegment {
  tokens: number;
  seed: number;
}

/**
 * Hashes of the full blocks covered by `segments`. A block takes the seed of the segment holding its last
 * token, mixed with the block's index, so a later request that repeats the same segments (a longer turn
 * of the same conversation) reproduces the same hashes for the blocks they share.
 */
export function segmentBlockHashes(segments: readonly PromptSegment[], blockTokens: number): number[] {
  const hashes: number[] = [];
  let previous = 0;
  let segmentIndex = 0;
  let segmentEnd = segments[0]?.tokens ?? 0;
  let total = 0;
  for (const segment of segments) total += segment.tokens;
  const fullBlocks = Math.floor(total / blockTokens);
  for (let block = 0; block < fullBlocks; block++) {
    const lastToken = (block + 1) * blockTokens - 1;
    while (lastToken >= segmentEnd) {
      segmentIndex++;
      segmentEnd += segments[segmentIndex]?.tokens ?? 0;
    }
    previous = chainBlockHash(previous, (segments[segmentIndex] as PromptSegment).seed * 4099 + block);
    hashes.push(previous);
  }
  return hashes;
}

/** 32-bit FNV-1a of a string: content seeds for live prompts. */
export function stringSeed(text: string, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let index = start; index < end; index++) {
    h ^= text.charCodeAt(index);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Prefix-cache identities of a prompt's full blocks of `blockTokens` tokens, counted with Gravity's
 * character estimate (`blockTokens × 4` characters: 64 for 16-token blocks), chained, so two prompts share
 * a block only when all text up to its end is the same. How the emulated engine names a prompt's KV blocks
 * and how the router indexes the prompts it routed.
 */
export function promptBlockHashes(text: string, blockTokens: number = prefixBlockTokens): number[] {
  const blockCharacters = blockTokens * charactersPerToken;
  const blocks = Math.floor(text.length / blockCharacters);
  const hashes = new Array<number>(blocks);
  let previous = 0;
  for (let block = 0; block < blocks; block++) {
    const start = block * blockCharacters;
    previous = chainBlockHash(previous, stringSeed(text, start, start + blockCharacters));
    hashes[block] = previous;
  }
  return hashes;
}
