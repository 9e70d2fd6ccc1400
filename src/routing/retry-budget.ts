/**
 * A retry budget (as Envoy and Finagle keep one): retries may add at most `ratio` of the requests seen in
 * the last ten seconds, but `minPerSecond` retries per second are always allowed. It stops a failing
 * fleet from being hit with `maxAttempts` times its traffic. Counts sit in one-second buckets.
 */
const windowSeconds = 10;

export class RetryBudget {
  private readonly requests = new Float64Array(windowSeconds);
  private readonly retries = new Float64Array(windowSeconds);
  private currentSecond = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly ratio: number,
    private readonly minPerSecond: number,
  ) {}

  onRequest(nowMs: number): void {
    this.advance(nowMs);
    const bucket = this.currentSecond % windowSeconds;
    this.requests[bucket] = (this.requests[bucket] as number) + 1;
  }

  /** Takes one retry from the budget if there is one. */
  tryRetry(nowMs: number): boolean {
    this.advance(nowMs);
    let requests = 0;
    let retries = 0;
    for (let bucket = 0; bucket < windowSeconds; bucket++) {
      requests += this.requests[bucket] as number;
      retries += this.retries[bucket] as number;
    }
    if (retries >= Math.max(this.ratio * requests, this.minPerSecond * windowSeconds)) return false;
    const bucket = this.currentSecond % windowSeconds;
    this.retries[bucket] = (this.retries[bucket] as number) + 1;
    return true;
  }

  private advance(nowMs: number): void {
    const second = Math.floor(nowMs / 1000);
    if (second === this.currentSecond) return;
    const elapsed = Math.min(windowSeconds, second - this.currentSecond);
    for (let step = 1; step <= elapsed; step++) {
      const bucket = (((second - elapsed + step) % windowSeconds) + windowSeconds) % windowSeconds;
      this.requests[bucket] = 0;
      this.retries[bucket] = 0;
    }
    this.currentSecond = second;
  }
}
