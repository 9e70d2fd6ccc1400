import type { RequestContext } from '../core/request-context.js';
import type { ContentPart, FinishPart } from '../core/stream-parts.js';
import { completedAtSeconds, incompleteReason, responseIdOf, responseObject } from './response-object.js';
import { ResponseOutputBuilder } from './response-output.js';
import { isRelayedResponses, ResponseRelay } from './response-relay.js';
import type { ParsedResponsesRequest } from './responses-request.js';

/** A finished Response: the object (stored, a batch line's body) and, for a relay, its JSON as sent. */
export interface FinishedResponse {
  response: Record<string, unknown>;
  /** The upstream's Response text with Gravity's fields rewritten; null when Gravity built the object. */
  relayedJson: string | null;
}

/**
 * Collects a whole (non-streamed) Response from a request's content parts, as the JSON answer and a
 * Batch API line both need it: built by Gravity from text, choice deltas and relayed chat chunks, or
 * taken from an upstream's own Responses events (response-relay.ts) when the first part is one.
 */
export class WholeResponse {
  private readonly builder: ResponseOutputBuilder;
  private relay: ResponseRelay | null = null;

  constructor(
    private readonly context: RequestContext,
    private readonly request: ParsedResponsesRequest,
  ) {
    this.builder = new ResponseOutputBuilder(responseIdOf(context.requestId), null);
  }

  add(part: ContentPart): void {
    if (isRelayedResponses(part)) {
      this.relay ??= new ResponseRelay(this.context, this.request.echo);
      this.relay.add(part);
    } else this.builder.add(part);
  }

  /** After the ledger commit: `context.metered` holds the figures `usage.gravity` carries. */
  finish(part: FinishPart): FinishedResponse {
    const context = this.context;
    const relayed = this.relay?.finish(part, context.metered) ?? null;
    if (relayed) return { response: relayed.response, relayedJson: relayed.responseJson };
    return { response: builtResponse(context, this.request, this.builder, part), relayedJson: null };
  }
}

/** The Response object Gravity builds from its output items once the engine finished. */
export function builtResponse(
  context: RequestContext,
  request: ParsedResponsesRequest,
  builder: ResponseOutputBuilder,
  part: FinishPart,
): Record<string, unknown> {
  const reason = incompleteReason(part.finishReason);
  return responseObject({
    context,
    echo: request.echo,
    status: reason === null ? 'completed' : 'incomplete',
    output: builder.finish(reason === null),
    incompleteReason: reason,
    usage: part.usage,
    metered: context.metered,
    completedAtSeconds: completedAtSeconds(context),
  });
}
