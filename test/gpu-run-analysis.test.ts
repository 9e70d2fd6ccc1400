import { describe, expect, it } from 'vitest';
import {
  type ClientRequest,
  conservation,
  counterAt,
  counterDelta,
  levelFigures,
} from '../bench/gpu/run-analysis.js';

const request = (
  overrides: Partial<ClientRequest> & Pick<ClientRequest, 'startMs' | 'tokenTimesMs'>,
): ClientRequest => ({
  requestId: `r${overrides.startMs}`,
  endMs: overrides.tokenTimesMs.at(-1) ?? overrides.startMs,
  promptTokens: 100,
  completionTokens: overrides.tokenTimesMs.length,
  status: 200,
  ...overrides,
});

describe('a GPU run level: steady-window figures from client timestamps', () => {
  it('counts only tokens that arrived inside the window, and latencies of requests that started in it', () => {
    const figures = levelFigures(
      2,
      [
        // Started before the window (warm-up): its tokens inside the window count, its latencies do not.
        request({ startMs: 0, tokenTimesMs: [500, 900, 1100, 1300] }),
        // Started inside: TTFT 100 ms, gaps 20 and 40 ms.
        request({ startMs: 1000, tokenTimesMs: [1100, 1120, 1160] }),
        // Started inside, arrived after the window closed: latencies count, tokens do not.
        request({ startMs: 1900, tokenTimesMs: [2100, 2110] }),
      ],
      1000,
      2000,
    );
    // Inside [1000, 2000): 1100, 1300, 1100, 1120, 1160 = 5 tokens in one second.
    expect(figures.outputTokensPerSecond).toBe(5);
    expect(figures.requestsInWindow).toBe(2);
    expect(figures.ttftP50Ms).toBe(150);
    expect(figures.itlMeanMs).toBeCloseTo((20 + 40 + 10) / 3);
    expect(figures.tokensPerChunk).toBe(1);
    expect(figures.failedRequests).toBe(0);
  });

  it('scales chunks by the tokens each carried, and counts failures', () => {
    const figures = levelFigures(
      1,
      [
        request({ startMs: 0, tokenTimesMs: [10, 20], completionTokens: 4 }),
        request({ startMs: 30, tokenTimesMs: [], completionTokens: null, status: 503 }),
      ],
      0,
      1000,
    );
    expect(figures.tokensPerChunk).toBe(2);
    expect(figures.outputTokensPerSecond).toBe(4);
    expect(figures.failedRequests).toBe(1);
  });
});

describe('an energy counter read between samples', () => {
  const samples = [
    { timeMs: 1000, joules: 10 },
    { timeMs: 1100, joules: 20 },
    { timeMs: 1300, joules: 60 },
  ];

  it('interpolates linearly and refuses to extrapolate', () => {
    expect(counterAt(samples, 1050)).toBe(15);
    expect(counterAt(samples, 1200)).toBe(40);
    expect(counterAt(samples, 1300)).toBe(60);
    expect(counterAt(samples, 999)).toBeNull();
    expect(counterAt(samples, 1301)).toBeNull();
    expect(counterDelta(samples, 1050, 1200)).toBe(25);
    expect(counterDelta([], 0, 1)).toBeNull();
  });

  it('compares ledger joules (requests and idle) with the counter over the periods the ledger covers', () => {
    const result = conservation({
      requestJoules: 30,
      periods: [
        { periodStartMs: 1000, periodEndMs: 1100, energyJoules: 10, idleEnergyJoules: 2 },
        { periodStartMs: 1100, periodEndMs: 1300, energyJoules: 40, idleEnergyJoules: 18 },
      ],
      counter: samples,
    });
    expect(result.independentJoules).toBe(50);
    expect(result.idleJoules).toBe(20);
    expect(result.ledgerDrawnJoules).toBe(50);
    expect(result.relativeError).toBeCloseTo(0);
    expect(conservation({ requestJoules: 1, periods: [], counter: samples }).relativeError).toBeNull();
  });
});
