/**
 * The router's approximate index of which replica recently served which prompt-prefix blocks. It is the
 * router's own memory of what it routed, not the engines' caches: an engine may have evicted a block the
 * index still lists, which costs one cache miss, never a wrong answer. Keys are chained block hashes
 * (block-hashes.ts), so a block matches only when the whole prompt up to its end matched.
 *
 * Bounded two ways: entries older than `ttlMs` no longer match, and beyond `capacityBlocks` the entries
 * inserted first are dropped (refreshed entries are re-inserted now and then, which makes it an
 * approximate LRU at the cost of one Map delete+set per refresh, not per lookup).
 */
export interface PrefixIndexOptions {
  capacityBlocks: number;
  ttlMs: number;
}

interface BlockEntry {
  /** Replicas that served this block, and when each last did. Short: at most one per replica. */
  replicas: string[];
  seenAtMs: number[];
  insertedAtMs: number;
}

export class PrefixIndex {
  private readonly blocks = new Map<number, BlockEntry>();

  constructor(readonly options: PrefixIndexOptions) {}

  get size(): number {
    return this.blocks.size;
  }

  /** Remembers that `replica` was sent a prompt with these blocks. */
  record(hashes: readonly number[], replica: string, nowMs: number): void {
    const { ttlMs, capacityBlocks } = this.options;
    for (let block = 0; block < hashes.length; block++) {
      const hash = hashes[block] as number;
      let entry = this.blocks.get(hash);
      if (entry === undefined) {
        entry = { replicas: [replica], seenAtMs: [nowMs], insertedAtMs: nowMs };
        this.blocks.set(hash, entry);
        continue;
      }
      const at = entry.replicas.indexOf(replica);
      if (at >= 0) entry.seenAtMs[at] = nowMs;
      else {
        entry.replicas.push(replica);
        entry.seenAtMs.push(nowMs);
      }
      if (nowMs - entry.insertedAtMs > ttlMs / 2) {
        // Move a hot entry to the back of the eviction order.
        this.blocks.delete(hash);
        entry.insertedAtMs = nowMs;
        this.blocks.set(hash, entry);
      }
    }
    while (this.blocks.size > capacityBlocks) {
      const oldest = this.blocks.keys().next().value as number;
      this.blocks.delete(oldest);
    }
  }

  /**
   * For each candidate `ids[k]`, the number of leading blocks of `hashes` it served within the TTL,
   * written to `matched[k]`. Walks the prompt once and stops at the first block no candidate has.
   */
  matchLeadingBlocks(
    hashes: readonly number[],
    ids: readonly string[],
    count: number,
    matched: Float64Array,
    nowMs: number,
  ): void {
    for (let k = 0; k < count; k++) matched[k] = 0;
    const oldestMs = nowMs - this.options.ttlMs;
    let alive = count;
    for (let block = 0; block < hashes.length && alive > 0; block++) {
      const entry = this.blocks.get(hashes[block] as number);
      if (entry === undefined) return;
      alive = 0;
      for (let k = 0; k < count; k++) {
        // A candidate still matching has matched[k] === block.
        if (matched[k] !== block) continue;
        const at = entry.replicas.indexOf(ids[k] as string);
        if (at >= 0 && (entry.seenAtMs[at] as number) >= oldestMs) {
          matched[k] = block + 1;
          alive++;
        }
      }
    }
  }

  /** Forgets a replica (removed from the fleet). */
  forget(replica: string): void {
    for (const entry of this.blocks.values()) {
      const at = entry.replicas.indexOf(replica);
      if (at < 0) continue;
      entry.replicas.splice(at, 1);
      entry.seenAtMs.splice(at, 1);
    }
  }
}
