/**
 * A replica's KV cache as a pool of fixed-size blocks, with a prefix cache over the blocks whose content
 * has an identity (see block-hashes.ts).
 *
 * Blocks are either private to one sequence (counted, not named: content nobody else will ask for) or
 * shared (named by hash, reference-counted). A shared block nobody uses stays cached until its space is
 * needed, least recently released first — so cached blocks count as free capacity, as in vLLM, where an
 * unreferenced cached block sits in the free queue until it is reused.
 */
export class KvBlockManager {
  /** Blocks held by running sequences: private ones plus distinct referenced shared ones. */
  private usedBlocks = 0;
  private readonly referenced = new Map<number, number>();
  /** Unreferenced cached blocks in release order (a Map iterates in insertion order: oldest first). */
  private readonly idleCached = new Map<number, true>();
  private hitTokensTotal = 0;
  private queriedTokensTotal = 0;

  constructor(
    readonly totalBlocks: number,
    private readonly prefixCaching: boolean,
  ) {}

  /** Blocks that can be handed out now, evicting idle cached blocks if needed. */
  get availableBlocks(): number {
    return this.totalBlocks - this.usedBlocks;
  }

  get usedFraction(): number {
    return this.usedBlocks / this.totalBlocks;
  }

  get cachedBlocks(): number {
    return this.idleCached.size + this.referenced.size;
  }

  /**
   * Prompt tokens looked up in the prefix cache and found there since start, as vLLM's
   * `prefix_cache_queries` and `prefix_cache_hits` count them: every admitted prompt is a query.
   */
  get prefixStats() {
    return { queriedTokens: this.queriedTokensTotal, hitTokens: this.hitTokensTotal };
  }

  /** Counts one admission's lookup: `promptTokens` queried, `hitTokens` of them served from the cache. */
  recordLookup(promptTokens: number, hitTokens: number): void {
    this.queriedTokensTotal += promptTokens;
    this.hitTokensTotal += hitTokens;
  }

  /**
   * Leading cached blocks of `hashes` (at most `maxBlocks`), and how many of them are idle: taking an
   * idle block turns free-able space into used space, so admission must count those as allocations.
   */
  lookupPrefix(hashes: ArrayLike<number>, maxBlocks: number): { hits: number; idleHits: number } {
    if (!this.prefixCaching) return { hits: 0, idleHits: 0 };
    const limit = Math.min(hashes.length, maxBlocks);
    let hits = 0;
    let idleHits = 0;
    while (hits < limit) {
      const hash = hashes[hits] as number;
      if (this.idleCached.has(hash)) idleHits++;
      else if (!this.referenced.has(hash)) break;
      hits++;
    }
    return { hits, idleHits };
  }

  /** Takes a reference on a cached block found by `lookupPrefix`. */
  acquireCached(hash: number): void {
    const references = this.referenced.get(hash);
    if (references !== undefined) {
      this.referenced.set(hash, references + 1);
      return;
    }
    if (!this.idleCached.delete(hash)) throw new Error('acquireCached on a block that is not cached');
    this.referenced.set(hash, 1);
    this.usedBlocks++;
  }

  /** Hands out `count` private blocks; the caller checked `availableBlocks`. */
  allocatePrivate(count: number): void {
    if (count > this.availableBlocks) throw new Error('KV cache over-allocated');
    this.usedBlocks += count;
    this.evictDownTo(this.totalBlocks - this.usedBlocks);
  }

  releasePrivate(count: number): void {
    this.usedBlocks -= count;
  }

  /**
   * Names a private block whose content is now computed, so later prompts can hit it. Returns false (the
   * block stays private) when the same content is cached already, e.g. computed by a concurrent request.
   */
  publish(hash: number): boolean {
    if (!this.prefixCaching || this.referenced.has(hash) || this.idleCached.has(hash)) return false;
    this.referenced.set(hash, 1);
    return true;
  }

  releaseShared(hash: number): void {
    const references = this.referenced.get(hash) as number;
    if (references > 1) {
      this.referenced.set(hash, references - 1);
      return;
    }
    this.referenced.delete(hash);
    this.usedBlocks--;
    this.idleCached.set(hash, true);
  }

  /** Keeps idle cached blocks within the space nobody holds. */
  private evictDownTo(limit: number): void {
    if (this.idleCached.size <= limit) return;
    let excess = this.idleCached.size - limit;
    for (const hash of this.idleCached.keys()) {
      this.idleCached.delete(hash);
      if (--excess === 0) break;
    }
  }
}
