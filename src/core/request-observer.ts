import type { RequestContext } from './request-context.js';

/**
 * Metering's seam into the request path: observers see each request begin and end. `onRequestEnd` is
 * called exactly once per request that reached a handler — completed, failed, cancelled or rejected — with
 * the finished context. Observers must not throw and must not block: heavy work (ledger writes) is queued.
 */
export interface RequestObserver {
  onRequestStart(context: RequestContext): void;
  onRequestEnd(context: RequestContext): void;
}
