import { describe, expect, it } from 'vitest';
import { msUntilAvailable, msUntilFull, newBucket, refill } from './token-bucket.js';

describe('token bucket', () => {
  it('refills continuously at its capacity per minute and never above capacity', () => {
    const bucket = newBucket(600, 0);
    bucket.level = 0;
    refill(bucket, 600, 1000);
    expect(bucket.level).toBe(10);
    refill(bucket, 600, 1_000_000);
    expect(bucket.level).toBe(600);
  });

  it('ignores time going backwards', () => {
    const bucket = newBucket(60, 5000);
    bucket.level = 1;
    refill(bucket, 60, 4000);
    expect(bucket).toEqual({ level: 1, updatedAtMs: 5000 });
  });

  it('says how long until an amount is available and until the bucket is full', () => {
    const bucket = newBucket(60, 0);
    bucket.level = -2;
    expect(msUntilAvailable(bucket, 60, 1)).toBe(3000);
    expect(msUntilFull(bucket, 60)).toBe(62_000);
    expect(msUntilAvailable(newBucket(60, 0), 60, 1)).toBe(0);
  });
});
