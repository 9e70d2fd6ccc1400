import type { ParsedRequest } from '../api/request-schemas.js';
import { errors } from '../core/errors.js';
import { newRequestId, type RequestContext } from '../core/request-context.js';
import type { ContentPart, FinishPart } from '../core/stream-parts.js';
import type { PipelineFailure, ResponseRenderer } from '../pipeline/request-pipeline.js';
import {
  completedAtSeconds,
  incompleteReason,
  responseIdOf,
  responseObject,
} from '../responses/response-object.js';
import { ResponseOutputBuilder } from '../responses/response-output.js';
import { isRelayedResponses, ResponseRelay } from '../responses/response-relay.js';
import { type ParsedResponsesRequest, parseResponsesRequest } from '../responses/responses-request.js';
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
  private builder: ResponseOutputBuilder | null = null;
  private request: ParsedResponsesRequest | null = null;
  private context: RequestContext | null = null;
  /** Set by the first part of an upstream's relayed Responses events (src/responses/response-relay.ts). */
  private relay: ResponseRelay | null = null;

  admitted(): void {}

  /** The batch executor picks this renderer for `/v1/responses` lines, whose parser gives this request. */
  started(context: RequestContext, request: ParsedRequest): void {
    this.request = request as ParsedResponsesRequest;
    this.context = context;
    this.builder = new ResponseOutputBuilder(responseIdOf(context.requestId), null);
  }

  text(part: ContentPart): undefined {
    if (isRelayedResponses(part)) {
      this.relay ??= new ResponseRelay(
        this.context as RequestContext,
        (this.request as ParsedResponsesRequest).echo,
      );
      this.relay.add(part);
    } else (this.builder as ResponseOutputBuilder).add(part);
    return undefined;
  }

  finished(part: FinishPart, context: RequestContext): LineAnswer {
    const relayed = this.relay?.finish(part, context.metered) ?? null;
    if (relayed)
      return {
        statusCode: 200,
        requestId: context.requestId,
        body: relayed.response,
        usage: part.usage,
        errorCode: null,
        pushedBack: false,
      };
    const builder = this.builder ?? new ResponseOutputBuilder(responseIdOf(context.requestId), null);
    const reason = incompleteReason(part.finishReason);
    return {
      statusCode: 200,
      requestId: context.requestId,
      body: responseObject({
        context,
        echo: (this.request as ParsedResponsesRequest).echo,
        status: reason === null ? 'completed' : 'incomplete',
        output: builder.finish(reason === null),
        incompleteReason: reason,
        usage: part.usage,
        metered: context.metered,
        completedAtSeconds: completedAtSeconds(context),
      }),
      usage: part.usage,
      errorCode: null,
      pushedBack: false,
    };
  }

  failed(failure: PipelineFailure, context: RequestContext): LineAnswer {
    return failedLineAnswer(failure, context);
  }
}
