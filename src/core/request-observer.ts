import type { RequestContext } from './request-context.js';

/**
 * Metering's seam into the request path: observers see each request begin and end. `onRequestEnd` is
 * called exactly once per request that reached Gravity's completion endpoints — completed, failed,
 * cancelled or rejected — with the finished context. An observer may return a promise (a ledger commit):
 * a successful response's final bytes wait for it, so a response the client saw complete is on record.
 * Observers must not throw.
 */
export interface RequestObserver {
  onRequestStart(context: RequestContext): void;
  /** The request has an engine (`context.engineId`) and is about to run on it. */
  onRouted?(context: RequestContext): void;
  /**
   * The attempt on `context.engineId` may run now (out of Gravity's queue): the engine is called next,
   * with `context.traceparent` and `context.tracestate`, which an observer may set here (tracing: the
   * engine call's span). Once per attempt.
   */
  onDispatched?(context: RequestContext): void;
  /**
   * The attempt on `context.engineId` failed before its first token and the request is being retried on
   * another replica: `onRouted` follows for that one. Lets metering close what it began for the first.
   */
  onRouteAbandoned?(context: RequestContext): void;
  onRequestEnd(context: RequestContext): void | Promise<void>;
}
