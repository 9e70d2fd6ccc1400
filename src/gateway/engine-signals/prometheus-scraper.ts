import { request } from 'undici';
import { type EngineSignals, parseEngineSignals } from './prometheus-signals.js';

export interface PrometheusScraperOptions {
  url: string;
  intervalMs: number;
  staleAfterMs: number;
  /** Monotonic milliseconds (the gateway's Clock). */
  nowMs: () => number;
}

/**
 * Scrapes one replica's Prometheus metrics on an interval and keeps the latest figures. `current()`
 * returns null when the last good scrape is older than `staleAfterMs` (failing scrapes make the data
 * stale, never wrong); routing then falls back to Gravity's own counts.
 */
export class PrometheusScraper {
  private latest: { signals: EngineSignals; atMs: number } | null = null;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = false;
  lastError: string | null = null;

  constructor(private readonly options: PrometheusScraperOptions) {}

  start(): void {
    void this.scrape();
    this.timer = setInterval(() => void this.scrape(), this.options.intervalMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  current(): EngineSignals | null {
    if (!this.latest || this.options.nowMs() - this.latest.atMs > this.options.staleAfterMs) return null;
    return this.latest.signals;
  }

  /** One scrape; resolves whatever happens. */
  async scrape(): Promise<void> {
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      const response = await request(this.options.url, {
        headersTimeout: this.options.intervalMs,
        bodyTimeout: this.options.intervalMs,
      });
      const text = await response.body.text();
      if (response.statusCode !== 200) throw new Error(`status ${response.statusCode}`);
      this.latest = { signals: parseEngineSignals(text), atMs: this.options.nowMs() };
      this.lastError = null;
    } catch (error) {
      this.lastError = (error as Error).message;
    } finally {
      this.inFlight = false;
    }
  }
}
