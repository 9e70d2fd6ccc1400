import type { Clock } from '../core/clock.js';
import { errors } from '../core/errors.js';
import type { ServiceBand } from '../core/service-tiers.js';
import {
  ReplicaScheduler,
  type ReplicaSchedulerSettings,
  type ScheduledRequest,
} from './replica-scheduler.js';

/** A request's place at the replica, from dispatch to release. */
export interface SchedulerTicket {
  /** Milliseconds the request waited in the gateway's queue. */
  readonly queueWaitMs: number;
  /** Tokens streamed: they count against the tenant's fair share. */
  onTokens(tokens: number): void;
  /** The first token reached the gateway at `atMs` (Clock milliseconds). */
  onFirstToken(atMs: number): void;
  /** Must be called once when the request ends, however it ends. */
  release(): void;
}

interface Waiter {
  resolve: (ticket: SchedulerTicket) => void;
  reject: (reason: unknown) => void;
}

/**
 * The live face of a ReplicaScheduler: `acquire` waits (as a promise) until the request may run, is
 * refused at once when shed, is refused as overloaded when its wait bound passes (one timer for the
 * whole queue), and leaves the queue at once when the client's signal aborts.
 */
export class LiveReplicaScheduler {
  private readonly scheduler: ReplicaScheduler<Waiter>;
  private timer: NodeJS.Timeout | undefined;
  private timerAtMs = Number.POSITIVE_INFINITY;

  constructor(
    settings: ReplicaSchedulerSettings,
    private readonly clock: Clock,
  ) {
    this.scheduler = new ReplicaScheduler<Waiter>(settings, {
      onDispatch: (request, nowMs) => request.tag.resolve(this.ticket(request, nowMs)),
      onExpire: (request, nowMs) =>
        request.tag.reject(errors.overloaded(Math.ceil((nowMs - request.arrivalMs) / 1000))),
    });
  }

  get queuedRequests(): number {
    return this.scheduler.queuedRequests;
  }
  get runningRequests(): number {
    return this.scheduler.runningRequests;
  }
  get shedTotal(): number {
    return this.scheduler.shedTotal;
  }
  get expiredTotal(): number {
    return this.scheduler.expiredTotal;
  }

  acquire(
    options: { tenant: string; tier: ServiceBand; promptTokens: number },
    signal: AbortSignal,
  ): Promise<SchedulerTicket> {
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<SchedulerTicket>((resolve, reject) => {
      let request: ScheduledRequest<Waiter> | null = null;
      const onAbort = () => {
        if (request?.state === 'queued') {
          this.scheduler.cancel(request, this.clock.nowMs());
          reject(signal.reason);
        }
      };
      const waiter: Waiter = {
        resolve: (ticket) => {
          signal.removeEventListener('abort', onAbort);
          resolve(ticket);
        },
        reject: (reason) => {
          signal.removeEventListener('abort', onAbort);
          reject(reason);
        },
      };
      const nowMs = this.clock.nowMs();
      const outcome = this.scheduler.submit({ tag: waiter, ...options }, nowMs);
      if (outcome.decision.kind === 'shed') {
        reject(
          errors.tierOverloaded(
            options.tier,
            Math.ceil(outcome.decision.retryAfterMs / 1000),
            outcome.decision.predictedTtftMs,
          ),
        );
        return;
      }
      request = outcome.request;
      if (request?.state === 'queued') {
        signal.addEventListener('abort', onAbort, { once: true });
        this.armTimer();
      }
    });
  }

  private ticket(request: ScheduledRequest<Waiter>, dispatchedMs: number): SchedulerTicket {
    let released = false;
    return {
      queueWaitMs: dispatchedMs - request.arrivalMs,
      onTokens: (tokens) => this.scheduler.onTokens(request, tokens),
      onFirstToken: (atMs) => this.scheduler.onFirstToken(request, atMs),
      release: () => {
        if (released) return;
        released = true;
        this.scheduler.release(request, this.clock.nowMs());
        this.armTimer();
      },
    };
  }

  /** One timer for the earliest wait bound in the queue. */
  private armTimer(): void {
    const nextMs = this.scheduler.nextExpiryMs();
    if (nextMs === this.timerAtMs) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAtMs = nextMs;
    if (!Number.isFinite(nextMs)) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAtMs = Number.POSITIVE_INFINITY;
        this.scheduler.expire(this.clock.nowMs());
        this.armTimer();
      },
      Math.max(0, Math.ceil(nextMs - this.clock.nowMs())),
    );
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
