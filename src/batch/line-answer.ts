import type { RequestContext } from '../core/request-context.js';
import type { ContentPart, FinishPart, TokenUsage } from '../core/stream-parts.js';
import type { PipelineFailure } from '../pipeline/request-pipeline.js';

/** What one line's request answered, as an HTTP client would have seen it. */
export interface LineAnswer {
  statusCode: number;
  requestId: string;
  body: unknown;
  usage: TokenUsage | null;
  /** The error code when the answer is an error (`shutting_down`, `rate_limit_exceeded` …). */
  errorCode: string | null;
  /**
   * True when the gateway's queues or replicas pushed the line back (429, 503 overloaded): not an answer
   * about this request, so the runner tries it again later. Refusals by admission are answers: the
   * pipeline already waited for rate limits, and what is left (budget, too large) will not pass later.
   */
  pushedBack: boolean;
}

/**
 * Builds one endpoint's answer body from a line's content parts: `add` for each part, then `body` once,
 * after the ledger commit (so `context.metered` holds the figures the body's usage carries).
 */
export interface LineBodyCollector {
  add(part: ContentPart): void;
  body(part: FinishPart, context: RequestContext): unknown;
}

/** A line that ended without an answer: the error an HTTP client would have received. */
export function failedLineAnswer({ error, stage }: PipelineFailure, context: RequestContext): LineAnswer {
  return {
    statusCode: error.status,
    requestId: context.requestId,
    body: error.toBody(),
    usage: null,
    errorCode: error.code,
    pushedBack:
      stage === 'execution' &&
      (error.status === 429 || (error.status === 503 && error.code !== 'shutting_down')),
  };
}
