import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LedgerStore, ReplicaPeriod } from '../../src/metering/ledger/ledger-store.js';
import type { UsageRecord } from '../../src/metering/usage-record.js';

export function usageRecord(overrides: Partial<UsageRecord> = {}): UsageRecord {
  return {
    requestId: `req-${Math.random().toString(36).slice(2)}`,
    receivedAtMs: 1_795_000_000_000,
    finishedAtMs: 1_795_000_000_250,
    endpoint: 'chat.completions',
    tenant: 'anonymous',
    apiKeyId: null,
    model: 'gravity-tiny',
    engine: 'tiny',
    replica: 'tiny',
    tier: 'default',
    stream: true,
    status: 200,
    errorCode: null,
    finishReason: 'stop',
    promptTokens: 12,
    cachedPromptTokens: 4,
    completionTokens: 20,
    usageSource: 'engine',
    queueWaitMs: 0.5,
    ttftMs: 12.5,
    itlMeanMs: 1.25,
    itlP50Ms: 1.1,
    itlP95Ms: 2.2,
    itlMaxMs: 3.3,
    e2eMs: 250,
    energyJoules: 0.75,
    energySource: 'estimated:power-model',
    costUsd: 0.000001,
    costSource: 'amortized-hourly',
    priceUsd: 0.00001,
    marginUsd: 0.000009,
    carbonGrams: 0.0000833,
    route: '{"replica":"h100-0","profile":"prefix-load","attempt":1,"top":[]}',
    partial: false,
    ...overrides,
  };
}

/**
 * The contract every ledger store must meet (SQLite now, PostgreSQL later): one shared suite, run against
 * each implementation by a small test file that supplies a fresh store.
 */
export function describeLedgerStoreConformance(name: string, createStore: () => Promise<LedgerStore>): void {
  describe(`${name} meets the ledger store contract`, () => {
    let store: LedgerStore;
    beforeEach(async () => {
      store = await createStore();
    });
    afterEach(async () => {
      await store.close();
    });

    it('returns exactly what was appended, field for field', async () => {
      const record = usageRecord({
        apiKeyId: 'key_1',
        errorCode: 'cancelled',
        itlP50Ms: null,
        stream: false,
      });
      await store.append([record]);
      expect(await store.records({})).toEqual([record]);
    });

    it('refuses a second record for the same request and keeps the batch atomic', async () => {
      const first = usageRecord();
      await store.append([first]);
      const other = usageRecord();
      await expect(store.append([other, { ...first, completionTokens: 99 }])).rejects.toThrow();
      const stored = await store.records({});
      expect(stored).toEqual([first]);
    });

    it('filters by time range (start inclusive, end exclusive) and tenant, oldest first', async () => {
      const records = [
        usageRecord({ requestId: 'c', receivedAtMs: 3000, tenant: 'acme' }),
        usageRecord({ requestId: 'a', receivedAtMs: 1000, tenant: 'acme' }),
        usageRecord({ requestId: 'b', receivedAtMs: 2000, tenant: 'globex' }),
      ];
      await store.append(records);
      expect((await store.records({ fromMs: 1000, toMs: 3000 })).map((record) => record.requestId)).toEqual([
        'a',
        'b',
      ]);
      expect((await store.records({ tenant: 'acme' })).map((record) => record.requestId)).toEqual(['a', 'c']);
      expect(await store.records({ fromMs: 5000 })).toEqual([]);
    });

    it('sums the price of a tenant, or of one of its keys, over a range', async () => {
      await store.append([
        usageRecord({ requestId: 'a', receivedAtMs: 1000, tenant: 'acme', apiKeyId: 'k1', priceUsd: 0.5 }),
        usageRecord({ requestId: 'b', receivedAtMs: 2000, tenant: 'acme', apiKeyId: 'k2', priceUsd: 0.25 }),
        usageRecord({ requestId: 'c', receivedAtMs: 3000, tenant: 'acme', apiKeyId: 'k1', priceUsd: 1 }),
        usageRecord({ requestId: 'd', receivedAtMs: 2000, tenant: 'globex', apiKeyId: 'k3', priceUsd: 8 }),
      ]);
      expect(await store.spentUsd({ tenant: 'acme' })).toBeCloseTo(1.75);
      expect(await store.spentUsd({ tenant: 'acme', apiKeyId: 'k1', fromMs: 0, toMs: 3000 })).toBeCloseTo(
        0.5,
      );
      expect(await store.spentUsd({ tenant: 'nobody' })).toBe(0);
    });

    it('keeps many records from one batch', async () => {
      const records = Array.from({ length: 500 }, (_, index) =>
        usageRecord({ requestId: `r${index}`, receivedAtMs: index }),
      );
      await store.append(records);
      expect((await store.records({})).length).toBe(500);
    });

    it('stores replica periods and returns them by period start', async () => {
      const period: ReplicaPeriod = {
        replica: 'tiny',
        periodStartMs: 1000,
        periodEndMs: 11_000,
        energyJoules: 150,
        idleEnergyJoules: 20,
        energySource: 'estimated:power-model',
        costUsd: 0.001,
        idleCostUsd: 0.0002,
      };
      await store.appendReplicaPeriods([period, { ...period, periodStartMs: 11_000, periodEndMs: 21_000 }]);
      expect(await store.replicaPeriods({ toMs: 11_000 })).toEqual([period]);
      expect((await store.replicaPeriods({})).length).toBe(2);
    });
  });
}
