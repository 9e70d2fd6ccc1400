import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WorkProportionalAttributor } from './work-proportional-attributor.js';

type Operation =
  | { kind: 'begin' }
  | { kind: 'work'; target: number; tokens: number; prefill: boolean }
  | { kind: 'close'; energyJoules: number; costUsd: number }
  | { kind: 'end'; target: number };

const operation: fc.Arbitrary<Operation> = fc.oneof(
  fc.constant<Operation>({ kind: 'begin' }),
  fc.record({
    kind: fc.constant('work' as const),
    target: fc.nat(50),
    tokens: fc.integer({ min: 1, max: 4096 }),
    prefill: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('close' as const),
    energyJoules: fc.double({ min: 0, max: 5000, noNaN: true }),
    costUsd: fc.double({ min: 0, max: 0.01, noNaN: true }),
  }),
  fc.record({ kind: fc.constant('end' as const), target: fc.nat(50) }),
);

describe('WorkProportionalAttributor', () => {
  it('conserves energy and cost: per-request shares plus idle equal the replica total within 1%', () => {
    fc.assert(
      fc.property(fc.array(operation, { minLength: 1, maxLength: 300 }), (operations) => {
        const attributor = new WorkProportionalAttributor();
        const work = new Map<string, number>();
        const running: string[] = [];
        let nextId = 0;
        let attributedEnergy = 0;
        let attributedCost = 0;
        for (const step of operations) {
          if (step.kind === 'begin') {
            const id = `r${nextId++}`;
            work.set(id, 0);
            running.push(id);
            attributor.begin(id, () => work.get(id) ?? 0);
          } else if (step.kind === 'work' && running.length > 0) {
            const id = running[step.target % running.length] as string;
            // Prefill tokens weigh less than decode tokens, as the power model says.
            work.set(id, (work.get(id) ?? 0) + step.tokens * (step.prefill ? 0.2 : 1));
          } else if (step.kind === 'close') {
            attributor.closeInterval({ energyJoules: step.energyJoules, costUsd: step.costUsd });
          } else if (step.kind === 'end' && running.length > 0) {
            const [id] = running.splice(step.target % running.length, 1);
            const share = attributor.end(id as string);
            expect(share.energyJoules).toBeGreaterThanOrEqual(0);
            attributedEnergy += share.energyJoules;
            attributedCost += share.costUsd;
          }
        }
        for (const id of running) {
          const share = attributor.end(id);
          attributedEnergy += share.energyJoules;
          attributedCost += share.costUsd;
        }
        const totals = attributor.totals();
        const tolerance = (total: number) => Math.max(total * 0.01, 1e-9);
        expect(
          Math.abs(attributedEnergy + totals.idleEnergyJoules - totals.energyJoules),
        ).toBeLessThanOrEqual(tolerance(totals.energyJoules));
        expect(Math.abs(attributedCost + totals.idleCostUsd - totals.costUsd)).toBeLessThanOrEqual(
          tolerance(totals.costUsd),
        );
      }),
      { numRuns: 500 },
    );
  });

  it('splits an interval by work done in it, not by work done before', () => {
    const attributor = new WorkProportionalAttributor();
    const work = { a: 0, b: 0 };
    attributor.begin('a', () => work.a);
    attributor.begin('b', () => work.b);
    work.a = 100;
    attributor.closeInterval({ energyJoules: 10, costUsd: 0 });
    work.a = 110;
    work.b = 30;
    attributor.closeInterval({ energyJoules: 40, costUsd: 4 });
    expect(attributor.end('a')).toEqual({ energyJoules: 10 + 10, costUsd: 1 });
    expect(attributor.end('b')).toEqual({ energyJoules: 30, costUsd: 3 });
  });

  it('counts intervals with no request running as idle, and shares intervals without work equally', () => {
    const attributor = new WorkProportionalAttributor();
    attributor.closeInterval({ energyJoules: 5, costUsd: 0 });
    attributor.begin('a', () => 0);
    attributor.begin('b', () => 0);
    attributor.closeInterval({ energyJoules: 8, costUsd: 0 });
    expect(attributor.end('a').energyJoules).toBe(4);
    expect(attributor.totals().idleEnergyJoules).toBe(5);
  });
});
