import type { ParsedRequest } from '../api/request-schemas.js';
import { errors } from '../core/errors.js';
import { newRequestId, type RequestContext } from '../core/request-context.js';
import type { ContentPart, FinishPart } from '../core/stream-parts.js';
import type { PipelineFailure, ResponseRenderer } from '../pipeline/request-pipeline.js';
import { type ParsedResponsesRequest, parseResponsesRequest } from '../responses/responses-request.js';
import { WholeResponse } from '../responses/whole-response.js';
import { failedLineAnswer, type LineAnswer } from './line-answer.js';

/**
 * A Batch API line with `url: /v1/responses`. Lines are answered in the batch's output file and are not
 * stored: a batch runs hours later, in any order, so one line cannot continue another
 * (`previous_response_id` is refused) and nothing retrieves a line's response by id (`store` is
 * answered false).
 */
export function parseResponsesBatchLine(body: Record<string, unknown>): ParsedResponsesRequest {
  if (body.previous_response_id != null)
    throw errors.unsupportedParameter(
      'previous_response_id',
      'is not supported in a batch: lines run in any order and are not stored. Send the earlier turns as input items.',
    );
  const parsed = parseResponsesRequest(body, {
    itemIdSuffix: newRequestId(),
    earlierItems: () => [],
  });
  return { ...parsed, echo: { ...parsed.echo, store: false } };
}

/** Assembles a line's Response object, or the error an HTTP client would have received. */
export class ResponsesLineRenderer implements ResponseRenderer<ParsedRequest, LineAnswer> {
  readonly committed = false;
  private whole: WholeResponse | null = null;
  private request: ParsedResponsesRequest | null = null;

  admitted(): void {}

  /** The batch executor picks this renderer for `/v1/responses` lines, whose parser gives this request. */
  started(context: RequestContext, request: ParsedRequest): void {
    this.request = request as ParsedResponsesRequest;
    this.whole = new WholeResponse(context, this.request);
  }

  text(part: ContentPart): undefined {
    (this.whole as WholeResponse).add(part);
    return undefined;
  }

  finished(part: FinishPart, context: RequestContext): LineAnswer {
    const whole = this.whole ?? new WholeResponse(context, this.request as ParsedResponsesRequest);
    return {
      statusCode: 200,
      requestId: context.requestId,
      body: whole.finish(part).response,
      usage: part.usage,
      errorCode: null,
      pushedBack: false,
    };
  }

  failed(failure: PipelineFailure, context: RequestContext): LineAnswer {
    return failedLineAnswer(failure, context);
  }
}
