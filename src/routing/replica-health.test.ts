import { describe, expect, it } from 'vitest';
import { ReplicaHealth, type ReplicaHealthChange } from './replica-health.js';

const options = { consecutiveFailures: 2, ejectionMs: 1000, maxEjectionMs: 8000 };

describe('replica health with peers', () => {
  it('tells its own ejections and readmissions, never a peer’s', () => {
    const health = new ReplicaHealth(options);
    const changes: ReplicaHealthChange[] = [];
    health.onChange = (change) => changes.push(change);
    health.onFailure('a', 0, 'boom');
    health.onFailure('a', 0, 'boom');
    expect(changes).toEqual([{ kind: 'ejected', replica: 'a', ejectedForMs: 1000, error: 'boom' }]);
    health.onPeerEjection('b', 0, 5000, 'peer saw it fail');
    health.onPeerReadmission('b');
    expect(changes).toHaveLength(1);
    expect(health.isAvailable('a', 1000)).toBe(true); // half-open: a local trial
    health.onAttempt('a');
    health.onSuccess('a');
    expect(changes.at(-1)).toEqual({ kind: 'readmitted', replica: 'a' });
  });

  it('avoids a replica a peer ejected until that ejection’s own end, then tries it locally', () => {
    const health = new ReplicaHealth(options);
    health.onPeerEjection('a', 100, 3000, 'engine down');
    expect(health.isAvailable('a', 3000)).toBe(false);
    expect(health.snapshot(100)).toMatchObject([{ replica: 'a', state: 'open', ejectedByPeer: true }]);
    expect(health.isAvailable('a', 3100)).toBe(true);
    health.onAttempt('a');
    expect(health.isAvailable('a', 3100)).toBe(false); // one trial at a time, decided here
    // The trial fails: an ejection of this gateway's own, the first of its back-off.
    health.onFailure('a', 3200, 'still down');
    expect(health.snapshot(3200)).toMatchObject([
      { state: 'open', ejectedForMs: 1000, ejectedByPeer: false },
    ]);
  });

  it('lets a peer’s readmission end only an ejection taken on a peer’s word', () => {
    const health = new ReplicaHealth(options);
    health.onPeerEjection('peer-ejected', 0, 60_000, null);
    health.onPeerReadmission('peer-ejected');
    expect(health.isAvailable('peer-ejected', 1)).toBe(true);
    health.onFailure('own', 0, 'boom');
    health.onFailure('own', 0, 'boom');
    health.onPeerReadmission('own');
    expect(health.isAvailable('own', 1)).toBe(false);
    // A shorter peer ejection does not cut a longer local one short.
    health.onPeerEjection('own', 0, 10, null);
    expect(health.isAvailable('own', 500)).toBe(false);
  });
});
