import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SeededRandom } from '../../src/core/seeded-random.js';
import type { LedgerQuery, LedgerStore, ReplicaPeriod } from '../../src/metering/ledger/ledger-store.js';
import type { UsageRecord } from '../../src/metering/usage-record.js';
import {
  aggregateUsage,
  replicaTotals,
  type UsageGroup,
  type UsageGroupKey,
  usageGroupKeys,
} from '../../src/metering/usage-report.js';

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
    clientRequestId: 'client-request-7',
    ...overrides,
  };
}

/** Every subset of the group keys, in the order `/v1/usage` takes them, and one reversed order. */
function groupByCombinations(): UsageGroupKey[][] {
  const combinations: UsageGroupKey[][] = [];
  for (let mask = 0; mask < 1 << usageGroupKeys.length; mask++)
    combinations.push(usageGroupKeys.filter((_, index) => mask & (1 << index)));
  combinations.push([...usageGroupKeys].reverse());
  return combinations;
}

/** Sums may differ in the last bits (SQLite adds in another order, compensated); nothing else may. */
function expectSameGroups(actual: UsageGroup[], expected: UsageGroup[], context: string): void {
  expect(
    actual.map((group) => group.group),
    context,
  ).toEqual(expected.map((group) => group.group));
  actual.forEach((group, index) => {
    const reference = expected[index] as UsageGroup;
    const { energyJoules, costUsd, priceUsd, marginUsd, carbonGrams, joulesPerCompletionToken, ...exact } =
      group;
    const {
      energyJoules: referenceEnergy,
      costUsd: referenceCost,
      priceUsd: referencePrice,
      marginUsd: referenceMargin,
      carbonGrams: referenceCarbon,
      joulesPerCompletionToken: referencePerToken,
      ...referenceExact
    } = reference;
    expect(exact, context).toEqual(referenceExact);
    const close = (value: number | null, wanted: number | null) => {
      if (wanted === null) expect(value, context).toBeNull();
      else expect(Math.abs((value as number) - wanted), context).toBeLessThanOrEqual(Math.abs(wanted) * 1e-9);
    };
    close(energyJoules, referenceEnergy);
    close(costUsd, referenceCost);
    close(priceUsd, referencePrice);
    close(marginUsd, referenceMargin);
    close(carbonGrams, referenceCarbon);
    close(joulesPerCompletionToken, referencePerToken);
  });
}

/** A varied ledger: ties in time, engine-less and failed records, missing TTFTs, several days and sources. */
function variedRecords(count: number): UsageRecord[] {
  const random = new SeededRandom(14);
  const pick = <T>(values: readonly T[]): T => values[Math.floor(random.uniform() * values.length)] as T;
  const dayStartMs = 1_795_000_000_000 - (1_795_000_000_000 % 86_400_000);
  return Array.from({ length: count }, (_, index) => {
    const failed = random.uniform() < 0.15;
    return usageRecord({
      requestId: `r${Math.floor(random.uniform() * 1e9).toString(36)}-${index}`,
      // Several records share a millisecond, across groups too, so the groups' order rests on request ids.
      receivedAtMs: dayStartMs + Math.floor(random.uniform() * 40) * 1_800_000 + pick([0, 0, 7, 999]),
      tenant: pick(['acme', 'globex', 'anonymous']),
      model: pick(['gravity-tiny', 'llama-3.1-8b']),
      tier: pick(['default', 'priority', 'flex', 'batch']),
      engine: pick(['tiny', 'h100-0', null]),
      status: failed ? pick([429, 500, 200]) : 200,
      errorCode: failed ? pick(['cancelled', 'rate_limit_exceeded', null]) : null,
      promptTokens: Math.floor(random.uniform() * 4000),
      cachedPromptTokens: Math.floor(random.uniform() * 100),
      completionTokens: pick([0, Math.floor(random.uniform() * 500)]),
      ttftMs: random.uniform() < 0.2 ? null : Math.round(random.uniform() * 5000) / 8,
      energyJoules: random.uniform() * 30,
      energySource: pick(['estimated:power-model', 'measured:nvml', 'measured:rapl']),
      costUsd: random.uniform() / 1000,
      priceUsd: random.uniform() / 100,
      marginUsd: random.uniform() / 100 - 0.002,
      carbonGrams: random.uniform() / 10,
    });
  });
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

    it('replays the completed requests in arrival order, page by page, within a range and tenant', async () => {
      // Ties in time (ordered by request id, bytewise), a failed request, days apart (PostgreSQL's
      // partitions), and more records than a page, so that pages meet inside a run of equal times.
      const records = [
        usageRecord({ requestId: 'b', receivedAtMs: 2000, tenant: 'acme' }),
        usageRecord({ requestId: 'a', receivedAtMs: 2000, tenant: 'globex' }),
        usageRecord({ requestId: 'B', receivedAtMs: 2000, tenant: 'acme' }),
        usageRecord({ requestId: 'failed', receivedAtMs: 1500, status: 500, errorCode: 'engine_error' }),
        usageRecord({ requestId: 'c', receivedAtMs: 1000, tenant: 'acme' }),
        usageRecord({ requestId: 'd', receivedAtMs: 2000 + 86_400_000, tenant: 'acme' }),
        usageRecord({ requestId: 'e', receivedAtMs: 999 }),
      ];
      await store.append(records);
      const replay = async (query: LedgerQuery, pageSize?: number) => {
        const ids: string[] = [];
        for await (const record of store.replayRequests(query, pageSize === undefined ? {} : { pageSize }))
          ids.push(record.requestId);
        return ids;
      };
      const completedInOrder = (await store.records({}))
        .filter((record) => record.status === 200)
        .map((record) => record.requestId);
      expect(completedInOrder).toEqual(['e', 'c', 'B', 'a', 'b', 'd']);
      for (const pageSize of [1, 2, 3, 6, 100]) expect(await replay({}, pageSize)).toEqual(completedInOrder);
      expect(await replay({ fromMs: 1000, toMs: 2000 + 86_400_000 }, 2)).toEqual(['c', 'B', 'a', 'b']);
      expect(await replay({ tenant: 'acme' }, 1)).toEqual(['c', 'B', 'b', 'd']);
      expect(await replay({ fromMs: 5_000_000_000 })).toEqual([]);
      // Field for field what was appended.
      const replayed: UsageRecord[] = [];
      for await (const record of store.replayRequests({ tenant: 'globex' })) replayed.push(record);
      expect(replayed).toEqual([records[1]]);
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

    it('totals usage in the store exactly as aggregateUsage totals the records, for every grouping', async () => {
      const records = variedRecords(400);
      await store.append(records);
      const firstMs = Math.min(...records.map((record) => record.receivedAtMs));
      const queries: LedgerQuery[] = [
        {},
        { tenant: 'acme' },
        { fromMs: firstMs + 6 * 3_600_000, toMs: firstMs + 30 * 3_600_000 },
        { fromMs: firstMs + 3_600_000, tenant: 'globex' },
        { fromMs: firstMs + 1_000 * 86_400_000 },
        { tenant: 'nobody' },
      ];
      for (const query of queries) {
        const inRange = await store.records(query);
        for (const groupBy of groupByCombinations()) {
          expectSameGroups(
            await store.usageSummary(query, groupBy),
            aggregateUsage(inRange, groupBy),
            `${JSON.stringify(query)} by [${groupBy.join(',')}]`,
          );
        }
      }
    });

    it('totals replica periods in the store as replicaTotals does, replicas in order of first period', async () => {
      const period: ReplicaPeriod = {
        replica: 'b',
        periodStartMs: 1000,
        periodEndMs: 2000,
        energyJoules: 150,
        idleEnergyJoules: 20,
        energySource: 'estimated:power-model',
        costUsd: 0.001,
        idleCostUsd: 0.0002,
      };
      await store.appendReplicaPeriods([
        period,
        { ...period, replica: 'a', periodStartMs: 1000, energySource: 'measured:nvml' },
        { ...period, periodStartMs: 2000, energyJoules: 7.5, energySource: 'measured:nvml' },
        { ...period, replica: 'c', periodStartMs: 3000, idleCostUsd: 0.5 },
      ]);
      for (const query of [{}, { fromMs: 2000 }, { toMs: 2000 }, { fromMs: 9000 }]) {
        expect(await store.replicaSummary(query)).toEqual(replicaTotals(await store.replicaPeriods(query)));
      }
      expect((await store.replicaSummary({})).map((total) => total.replica)).toEqual(['a', 'b', 'c']);
    });
  });
}
