import { describe, expect, it } from 'vitest';
import type { ReplicaLoadView, RoutedRequestView } from '../routing-policy.js';
import { createRoutingPolicy } from '../routing-profile.js';

function replica(id: string, load = 0): ReplicaLoadView {
  return { id, waitingRequests: 0, runningRequests: load, kvUsedFraction: null };
}
/** A prompt of `blocks` chained block hashes, the first `sharedBlocks` of them those of prefix `name`. */
function prompt(name: number, blocks: number, sharedBlocks = blocks, tail = 0): RoutedRequestView {
  const hashes = Array.from({ length: blocks }, (_, block) =>
    block < sharedBlocks ? name * 1_000_003 + block : name * 1_000_003 + block + 500_000 + tail * 7919,
  );
  return { promptTokens: blocks * 16, priority: 1, promptBlockHashes: hashes };
}
/** A deterministic uniform stream, for the picker's ties. */
function seeded(seed = 1) {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return state / 2_147_483_648;
  };
}
/** A profile of the scorer alone, as a router with its own (empty) state: one gateway process. */
function hashingGateway(params: Record<string, unknown> = {}, seed = 1) {
  return createRoutingPolicy('hashed', {
    random: seeded(seed),
    profiles: { hashed: { scorers: [{ type: 'prefix-hash', params }] } },
  });
}
const fleet = ['h100-0', 'h100-1', 'h100-2', 'h100-3', 'h100-4'].map((id) => replica(id));

describe('prefix-hash scorer', () => {
  it('sends each prefix to the same replica from gateways that share nothing, and spreads prefixes over the fleet', () => {
    const gateways = [hashingGateway({}, 1), hashingGateway({}, 2), hashingGateway({}, 3)];
    const homes = new Set<string>();
    for (let name = 1; name <= 60; name++) {
      const chosen = gateways.map((gateway, turn) => {
        // Each gateway sees a different question after the shared prefix, at a different time.
        const index = gateway.pick(fleet, prompt(name, 20, 8, turn), turn * 1000);
        return (fleet[index] as ReplicaLoadView).id;
      });
      expect(new Set(chosen).size).toBe(1);
      homes.add(chosen[0] as string);
    }
    // 60 prefixes over 5 replicas: every replica is home to some.
    expect(homes.size).toBe(fleet.length);
  });

  it('keys on the first prefixBlocks blocks: prompts that differ only after them share a home', () => {
    const gateway = hashingGateway({ prefixBlocks: 4 });
    let differentHomes = 0;
    for (let name = 1; name <= 30; name++) {
      const first = gateway.pick(fleet, prompt(name, 12, 4, 1), 0);
      expect(gateway.pick(fleet, prompt(name, 12, 4, 2), 0)).toBe(first);
      // Sharing 3 of the 4 key blocks is not sharing the key: the homes differ about 4 times in 5.
      if (gateway.pick(fleet, prompt(name, 12, 3, 3), 0) !== first) differentHomes++;
    }
    expect(differentHomes).toBeGreaterThan(15);
  });

  it('spills a prefix whose home is past the load bound to the next replica in its hash order, the same from every gateway', () => {
    const request = prompt(7, 20);
    const home = hashingGateway().pick(fleet, request, 0);
    // The home holds 20 requests, the others 2: the bound is ceil(1.25 × 29 / 5) + 4 = 12.
    const loaded = fleet.map((view, index) => replica(view.id, index === home ? 20 : 2));
    const spills = [1, 2, 3].map((seed) => hashingGateway({}, seed).pick(loaded, request, 0));
    expect(spills[0]).not.toBe(home);
    expect(new Set(spills).size).toBe(1);
    // Without the bound, the home keeps it however loaded it is.
    expect(hashingGateway({ loadBound: null }).pick(loaded, request, 0)).toBe(home);
  });

  it('moves only the prefixes of a replica that leaves the fleet', () => {
    const gateway = hashingGateway();
    const smaller = fleet.filter((view) => view.id !== 'h100-2');
    let moved = 0;
    for (let name = 1; name <= 100; name++) {
      const before = (fleet[gateway.pick(fleet, prompt(name, 10), 0)] as ReplicaLoadView).id;
      const after = (smaller[gateway.pick(smaller, prompt(name, 10), 0)] as ReplicaLoadView).id;
      if (before !== 'h100-2') expect(after).toBe(before);
      else moved++;
    }
    expect(moved).toBeGreaterThan(0);
  });

  it('scores 0 everywhere for a prompt without a full block, leaving the choice to other scorers', () => {
    const policy = createRoutingPolicy('prefix-hash', { random: seeded() });
    const busy = [replica('a', 9), replica('b', 1), replica('c', 5)];
    const decision = policy.decide(busy, { promptTokens: 8, priority: 1, promptBlockHashes: [] }, 0);
    expect(decision.index).toBe(1);
    expect(decision.top.every((candidate) => candidate.scorers['prefix-hash'] === 0)).toBe(true);
  });
});
