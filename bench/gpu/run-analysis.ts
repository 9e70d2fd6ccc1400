// The arithmetic of a GPU run, apart from the processes that produce its inputs so it can be tested:
// steady-state figures of one concurrency level from client-side timestamps, an energy counter read at
// any instant from its samples, and the conservation check between the ledger and that counter.

import { quantileOf } from '../../src/core/quantile.js';

/** One streamed request as the client saw it (epoch milliseconds). */
export interface ClientRequest {
  requestId: string;
  startMs: number;
  /** Arrival of every chunk that carried text, in order. */
  tokenTimesMs: number[];
  endMs: number;
  /** From the final usage chunk; null when the stream ended without one. */
  promptTokens: number | null;
  completionTokens: number | null;
  status: number;
  /** The start of an error answer's body. */
  errorBody?: string;
}

export interface LevelFigures {
  concurrency: number;
  /** The steady window: every client busy (after the warm-up), before any stops. */
  windowStartMs: number;
  windowEndMs: number;
  /** Tokens that arrived in the window: text chunks × tokensPerChunk. */
  windowTokens: number;
  /** windowTokens per second of the window. */
  outputTokensPerSecond: number;
  /** Completion tokens ÷ text chunks over completed requests: 1 when every chunk is one token. */
  tokensPerChunk: number;
  requestsInWindow: number;
  ttftP50Ms: number | null;
  ttftP95Ms: number | null;
  itlP50Ms: number | null;
  itlP95Ms: number | null;
  itlMeanMs: number | null;
  meanPromptTokens: number | null;
  meanCompletionTokens: number | null;
  failedRequests: number;
}

/** The requests that started in [fromMs, toMs): those whose latencies and ledger records a window reports. */
export function startedIn<Request extends { startMs: number }>(
  requests: Request[],
  fromMs: number,
  toMs: number,
): Request[] {
  return requests.filter((request) => request.startMs >= fromMs && request.startMs < toMs);
}

/**
 * Figures over [windowStartMs, windowEndMs): throughput counts the chunks that arrived inside it; latency
 * figures come from the requests that started inside it (their whole lives, which may run past its end:
 * the clients keep the load on until every request that started inside has finished).
 */
export function levelFigures(
  concurrency: number,
  requests: ClientRequest[],
  windowStartMs: number,
  windowEndMs: number,
): LevelFigures {
  let chunksInWindow = 0;
  for (const request of requests)
    for (const time of request.tokenTimesMs)
      if (time >= windowStartMs && time < windowEndMs) chunksInWindow++;
  const completed = requests.filter((request) => request.status === 200 && request.completionTokens !== null);
  const chunks = completed.reduce((sum, request) => sum + request.tokenTimesMs.length, 0);
  const tokens = completed.reduce((sum, request) => sum + (request.completionTokens ?? 0), 0);
  const tokensPerChunk = chunks > 0 ? tokens / chunks : 1;

  const started = startedIn(completed, windowStartMs, windowEndMs);
  const ttfts = started
    .filter((request) => request.tokenTimesMs.length > 0)
    .map((request) => request.tokenTimesMs[0]! - request.startMs);
  const gaps: number[] = [];
  for (const request of started)
    for (let index = 1; index < request.tokenTimesMs.length; index++)
      gaps.push(request.tokenTimesMs[index]! - request.tokenTimesMs[index - 1]!);
  const mean = (values: number[]): number | null =>
    values.length > 0 ? values.reduce((sum, value) => sum + value, 0) / values.length : null;
  return {
    concurrency,
    windowStartMs,
    windowEndMs,
    windowTokens: chunksInWindow * tokensPerChunk,
    outputTokensPerSecond: (chunksInWindow * tokensPerChunk) / ((windowEndMs - windowStartMs) / 1000),
    tokensPerChunk,
    requestsInWindow: started.length,
    ttftP50Ms: quantileOf(ttfts, 0.5),
    ttftP95Ms: quantileOf(ttfts, 0.95),
    itlP50Ms: quantileOf(gaps, 0.5),
    itlP95Ms: quantileOf(gaps, 0.95),
    itlMeanMs: mean(gaps),
    meanPromptTokens: mean(started.map((request) => request.promptTokens ?? 0)),
    meanCompletionTokens: mean(started.map((request) => request.completionTokens ?? 0)),
    failedRequests: requests.filter((request) => request.status !== 200).length,
  };
}

/** An energy counter's samples: epoch milliseconds and joules since an arbitrary origin, in time order. */
export interface CounterSample {
  timeMs: number;
  joules: number;
}

/**
 * The counter at `timeMs`, interpolated linearly between the samples around it; null outside the
 * sampled span (extrapolating a counter would invent energy).
 */
export function counterAt(samples: CounterSample[], timeMs: number): number | null {
  if (samples.length === 0 || timeMs < samples[0]!.timeMs || timeMs > samples.at(-1)!.timeMs) return null;
  let low = 0;
  let high = samples.length - 1;
  while (high - low > 1) {
    const middle = (low + high) >> 1;
    if (samples[middle]!.timeMs <= timeMs) low = middle;
    else high = middle;
  }
  const before = samples[low]!;
  const after = samples[high]!;
  if (after.timeMs === before.timeMs) return before.joules;
  return (
    before.joules +
    ((after.joules - before.joules) * (timeMs - before.timeMs)) / (after.timeMs - before.timeMs)
  );
}

/** Joules the counter advanced over [fromMs, toMs], or null where it was not sampled. */
export function counterDelta(samples: CounterSample[], fromMs: number, toMs: number): number | null {
  const from = counterAt(samples, fromMs);
  const to = counterAt(samples, toMs);
  return from === null || to === null ? null : to - from;
}

export interface Conservation {
  requestJoules: number;
  idleJoules: number;
  /** What the replica's own power source drew by the ledger (its periods' totals). */
  ledgerDrawnJoules: number;
  /** The independent reading of the counter over the ledger's periods; null without one. */
  independentJoules: number | null;
  /** (requests + idle) ÷ independent − 1. */
  relativeError: number | null;
}

/**
 * Ledger joules (every request's share plus the replica's idle energy) against an independent reading of
 * the same counter over exactly the span the ledger's replica periods cover.
 */
export function conservation(options: {
  requestJoules: number;
  periods: Array<{
    periodStartMs: number;
    periodEndMs: number;
    energyJoules: number;
    idleEnergyJoules: number;
  }>;
  counter: CounterSample[];
}): Conservation {
  const { periods } = options;
  const idleJoules = periods.reduce((sum, period) => sum + period.idleEnergyJoules, 0);
  const ledgerDrawnJoules = periods.reduce((sum, period) => sum + period.energyJoules, 0);
  const fromMs = Math.min(...periods.map((period) => period.periodStartMs));
  const toMs = Math.max(...periods.map((period) => period.periodEndMs));
  const independentJoules = periods.length > 0 ? counterDelta(options.counter, fromMs, toMs) : null;
  const ledgerJoules = options.requestJoules + idleJoules;
  return {
    requestJoules: options.requestJoules,
    idleJoules,
    ledgerDrawnJoules,
    independentJoules,
    relativeError: independentJoules ? ledgerJoules / independentJoules - 1 : null,
  };
}
