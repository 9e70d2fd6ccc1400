import { EventEmitter } from 'node:events';
import { errors, type GravityError } from '../../core/errors.js';

/** How long an upstream may keep one exchange open without progress. */
export interface UpstreamTimeouts {
  /**
   * From sending the request until the first token (for embeddings: the answer's first bytes). Covers
   * the response headers and the prefill of a long prompt on a busy server.
   */
  firstTokenTimeoutMs: number;
  /** After the first token, the longest gap between two reads of the body. */
  idleTimeoutMs: number;
}

/**
 * One exchange's abort signal, in the form undici also takes: an EventEmitter with `aborted` and
 * `reason`. Not an AbortController: on Node 20 creating one and undici's listener on it (an EventTarget)
 * cost ~2.8 µs per exchange, this ~0.1 µs (micro-benchmark in the issue 15 note), on every request's path.
 */
export class ExchangeSignal extends EventEmitter {
  aborted = false;
  reason: unknown = undefined;

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit('abort');
  }
}

/**
 * Bounds one upstream exchange in time: `firstTokenTimeoutMs` until its first token, then `idleTimeoutMs`
 * between reads of its body. Past either bound `signal` aborts with `504 upstream_timeout`: undici then
 * drops the connection, which frees it and tells the upstream to stop. Before the first token that
 * failure is the replica's and the fleet core retries it on another one; after it, the stream ends with
 * an error event (gateway.ts). `signal` also aborts when the client's does, so one signal governs the
 * exchange.
 *
 * Time the relay spends suspended on its own consumer (a slow client, backpressure) is not the
 * upstream's: the idle bound does not pass while the relay waits there (`holdForConsumer`).
 *
 * Per read: no allocation; the idle timer is re-armed in place (`refresh`).
 */
export class UpstreamStallGuard {
  readonly signal = new ExchangeSignal();
  private timer: NodeJS.Timeout;
  private phase: 'first-token' | 'streaming' | 'stopped' = 'first-token';
  private consumerHolds = false;
  private error: GravityError | null = null;
  private readonly forwardClientAbort: () => void;

  constructor(
    private readonly engineId: string,
    private readonly timeouts: UpstreamTimeouts,
    private readonly clientSignal: AbortSignal,
  ) {
    this.forwardClientAbort = () => this.signal.abort(clientSignal.reason);
    if (clientSignal.aborted) this.forwardClientAbort();
    else clientSignal.addEventListener('abort', this.forwardClientAbort, { once: true });
    this.timer = setTimeout(this.expire, timeouts.firstTokenTimeoutMs);
    this.timer.unref();
  }

  /** The `504 upstream_timeout` this exchange ended with, or null when no bound passed. */
  get timedOut(): GravityError | null {
    return this.error;
  }

  /**
   * One read of the body came in; `tokens`: it carried generated output. Hot path, once per read. Reads
   * before the first token (a role-only opener, keep-alives) do not extend the first-token bound.
   */
  onRead(tokens: boolean): void {
    if (this.phase === 'streaming') this.timer.refresh();
    else if (tokens && this.phase === 'first-token') {
      // Once per exchange: the idle bound's timer, re-armed in place on every later read.
      this.phase = 'streaming';
      clearTimeout(this.timer);
      this.timer = setTimeout(this.expire, this.timeouts.idleTimeoutMs);
      this.timer.unref();
    }
  }

  /** The relay waits for its consumer (a yield): the idle bound does not pass meanwhile. */
  holdForConsumer(): void {
    this.consumerHolds = true;
  }

  /** The consumer asked for more: the upstream's idle time counts again from now. */
  resumeFromConsumer(): void {
    this.consumerHolds = false;
    if (this.phase === 'streaming') this.timer.refresh();
  }

  /** The body has been read (or the exchange is over): no bound applies any more. Idempotent. */
  stop(): void {
    if (this.phase === 'stopped') return;
    this.phase = 'stopped';
    clearTimeout(this.timer);
    this.clientSignal.removeEventListener('abort', this.forwardClientAbort);
  }

  private readonly expire = (): void => {
    if (this.phase === 'stopped') return;
    if (this.phase === 'streaming' && this.consumerHolds) {
      this.timer.refresh();
      return;
    }
    const streaming = this.phase === 'streaming';
    this.error = errors.upstreamTimeout(
      this.engineId,
      streaming
        ? `sent nothing for ${this.timeouts.idleTimeoutMs} ms (idleTimeoutMs)`
        : `sent no first token within ${this.timeouts.firstTokenTimeoutMs} ms (firstTokenTimeoutMs)`,
    );
    this.stop();
    this.signal.abort(this.error);
  };
}
