import type { ParsedRequest } from '../api/request-schemas.js';
import { errors } from '../core/errors.js';
import { newRequestId, type RequestContext } from '../core/request-context.js';
import { type ParsedResponsesRequest, parseResponsesRequest } from '../responses/responses-request.js';
import { WholeResponse } from '../responses/whole-response.js';
import type { LineBodyCollector } from './line-answer.js';

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

/**
 * A `/v1/responses` line's body: the Response object, built by Gravity or relayed from an upstream's own
 * Responses events (whole-response.ts). The executor picks it for `/v1/responses` lines, whose parser
 * gives this request.
 */
export function responsesLineBody(context: RequestContext, request: ParsedRequest): LineBodyCollector {
  const whole = new WholeResponse(context, request as ParsedResponsesRequest);
  return { add: (part) => whole.add(part), body: (part) => whole.finish(part).response };
}
