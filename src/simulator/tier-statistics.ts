import { build, type Histogram } from 'hdr-histogram-js';
import type { ServiceBand } from '../core/service-tiers.js';
import type { LatencySummary, TierResult } from './simulation-result.js';

/** Latencies are recorded in microseconds: HDR histograms hold integers, at 3 significant digits. */
function latencyHistogram(): Histogram {
  return build({ numberOfSignificantValueDigits: 3 });
}

function summarise(histogram: Histogram): LatencySummary {
  const count = histogram.totalCount;
  if (count === 0)
    return { count: 0, meanMs: null, p50Ms: null, p90Ms: null, p95Ms: null, p99Ms: null, maxMs: null };
  const ms = (microseconds: number) => Math.round(microseconds) / 1000;
  return {
    count,
    meanMs: ms(histogram.mean),
    p50Ms: ms(histogram.getValueAtPercentile(50)),
    p90Ms: ms(histogram.getValueAtPercentile(90)),
    p95Ms: ms(histogram.getValueAtPercentile(95)),
    p99Ms: ms(histogram.getValueAtPercentile(99)),
    maxMs: ms(histogram.maxValue),
  };
}

const toMicroseconds = (ms: number) => Math.max(0, Math.round(ms * 1000));

/**
 * Everything a run reports about one tier, in bounded memory: counters and histograms, never a list of
 * requests, so a million-request run costs what a thousand-request run does.
 */
export class TierStatistics {
  submitted = 0;
  completed = 0;
  /**
   * Refused: shed by the scheduler at arrival or over its queue-wait bound, or no replica could take
   * the request (among them, `unserved`).
   */
  rejected = 0;
  /** Of the rejected: no replica serves a feature the request uses (routing's `serves-features`). */
  unserved = 0;
  inputTokens = 0;
  cachedInputTokens = 0;
  outputTokens = 0;
  metSlo = 0;
  private readonly ttft = latencyHistogram();
  private readonly tpot = latencyHistogram();
  private readonly itl = latencyHistogram();
  private readonly e2e = latencyHistogram();
  private readonly queue = latencyHistogram();

  constructor(
    readonly tier: ServiceBand | 'all',
    private readonly slo: { ttftMs: number; tpotMs: number } | null,
  ) {}

  recordCompletion(options: {
    ttftMs: number;
    e2eMs: number;
    queueMs: number;
    promptTokens: number;
    cachedPromptTokens: number;
    outputTokens: number;
    /** Whether the request met its own tier's SLO, for the all-tiers row (which has no SLO of its own). */
    metSlo?: boolean;
  }): boolean {
    this.completed++;
    this.inputTokens += options.promptTokens;
    this.cachedInputTokens += options.cachedPromptTokens;
    this.outputTokens += options.outputTokens;
    this.ttft.recordValue(toMicroseconds(options.ttftMs));
    this.e2e.recordValue(toMicroseconds(options.e2eMs));
    this.queue.recordValue(toMicroseconds(options.queueMs));
    // vllm bench serve's definition: TPOT = (E2E − TTFT) / (output tokens − 1), for answers of 2+ tokens.
    const tpotMs =
      options.outputTokens > 1 ? (options.e2eMs - options.ttftMs) / (options.outputTokens - 1) : 0;
    if (options.outputTokens > 1) this.tpot.recordValue(toMicroseconds(tpotMs));
    const met =
      options.metSlo ??
      (this.slo === null || (options.ttftMs <= this.slo.ttftMs && tpotMs <= this.slo.tpotMs));
    if (met) this.metSlo++;
    return met;
  }

  /** `count` inter-token gaps of `gapMs` each (one decode step seen by `count` sequences). */
  recordInterTokenGaps(gapMs: number, count: number): void {
    if (count > 0) this.itl.recordValueWithCount(toMicroseconds(gapMs), count);
  }

  result(durationSeconds: number): TierResult {
    const perSecond = (value: number) => (durationSeconds > 0 ? value / durationSeconds : 0);
    return {
      tier: this.tier,
      submitted: this.submitted,
      completed: this.completed,
      rejected: this.rejected,
      unserved: this.unserved,
      inputTokens: this.inputTokens,
      cachedInputTokens: this.cachedInputTokens,
      outputTokens: this.outputTokens,
      requestsPerSecond: perSecond(this.completed),
      outputTokensPerSecond: perSecond(this.outputTokens),
      goodputRequestsPerSecond: perSecond(this.metSlo),
      sloAttainment: this.completed > 0 ? this.metSlo / this.completed : 0,
      slo: this.slo,
      ttft: summarise(this.ttft),
      tpot: summarise(this.tpot),
      itl: summarise(this.itl),
      e2e: summarise(this.e2e),
      queue: summarise(this.queue),
    };
  }
}
