import type { FastifyReply, FastifyRequest } from 'fastify';
import { requestCaller, requestTenant } from '../admission/request-caller.js';
import {
  clientGoneSignal,
  HttpRenderer,
  meteredHeaders,
  writeEventStreamHead,
  writeStreamed,
} from '../api/completion-handler.js';
import type { Clock } from '../core/clock.js';
import { errors } from '../core/errors.js';
import { newRequestId, type RequestContext } from '../core/request-context.js';
import { requestCorrelation } from '../core/request-correlation.js';
import type { ContentPart, FinishPart } from '../core/stream-parts.js';
import type { PipelineFailure, RequestPipeline } from '../pipeline/request-pipeline.js';
import { responseIdOf, responseObject } from './response-object.js';
import { type OutputEvents, ResponseOutputBuilder } from './response-output.js';
import { isRelayedResponses, ResponseRelay } from './response-relay.js';
import type { ResponseStore } from './response-store.js';
import { type ParsedResponsesRequest, parseResponsesRequest } from './responses-request.js';
import { builtResponse, WholeResponse } from './whole-response.js';

/** What a Responses renderer needs beyond the reply: where finished responses are stored, for whom. */
interface StoreTarget {
  store: ResponseStore;
  tenant: string;
  log: (error: unknown) => void;
}

/**
 * `POST /v1/responses`: the request runs through the pipeline like a chat request (one ledger record,
 * admission, routing); this renders the Response object or the Responses event stream and stores the
 * finished response (after the ledger record, before the last byte, so a client that has the response
 * can continue it at once).
 */
export function responsesCreateHandler(options: {
  pipeline: RequestPipeline;
  clock: Clock;
  store: ResponseStore;
  /** How long a streamed response waits for a client that reads nothing (waitForDrain). */
  writeStallTimeoutMs: number;
}) {
  const { pipeline, clock, store, writeStallTimeoutMs } = options;
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const body = request.body as { model?: unknown; stream?: unknown } | undefined;
    const stream = body?.stream === true;
    const caller = requestCaller(request);
    const target: StoreTarget = {
      store,
      tenant: requestTenant(request),
      log: (error) => request.log.error({ err: error }, 'storing a response failed'),
    };
    const clientGone = clientGoneSignal(reply);
    // The conversation is read before the pipeline (the store may be PostgreSQL; the request parser is
    // synchronous); a failure to read it surfaces from the parser, so it is answered and recorded as any
    // bad request is.
    const earlier = await readConversation(store, target.tenant, body);
    await pipeline.run({
      endpoint: 'responses',
      received: { model: typeof body?.model === 'string' ? body.model : '', stream },
      caller,
      correlation: requestCorrelation(request.headers),
      parse: () =>
        parseResponsesRequest(request.body, {
          itemIdSuffix: newRequestId(),
          earlierItems: (previousId) => {
            if (earlier === null || earlier.id !== previousId)
              throw errors.responseNotFound(previousId, 'previous_response_id');
            if ('error' in earlier) throw earlier.error;
            if (earlier.items === null) throw errors.responseNotFound(previousId, 'previous_response_id');
            return earlier.items;
          },
        }),
      renderer: stream
        ? new ResponsesSseRenderer(reply, clock, clientGone, target, writeStallTimeoutMs)
        : new ResponsesJsonRenderer(reply, clientGone, target),
      signal: clientGone,
    });
  };
}

/** The conversation a request continues (`previous_response_id`), read ahead; null when it names none. */
async function readConversation(
  store: ResponseStore,
  tenant: string,
  body: unknown,
): Promise<{ id: string; items: Record<string, unknown>[] | null } | { id: string; error: unknown } | null> {
  const id = (body as { previous_response_id?: unknown } | undefined)?.previous_response_id;
  if (typeof id !== 'string') return null;
  try {
    return { id, items: await store.conversation(tenant, id) };
  } catch (error) {
    return { id, error };
  }
}

/**
 * Stores a finished response unless the client asked not to (`store: false`). Never fails the answer.
 * `response` is a relayed upstream's JSON text as sent (stored as is) or the object Gravity built.
 */
async function storeResponse(
  target: StoreTarget,
  context: RequestContext,
  request: ParsedResponsesRequest,
  response: Record<string, unknown> | string,
): Promise<void> {
  if (!request.echo.store) return;
  try {
    await target.store.save({
      id: responseIdOf(context.requestId),
      tenant: target.tenant,
      createdAtSeconds: Math.floor(context.receivedAtEpochMs / 1000),
      response,
      inputItems: request.inputItems,
      previousResponseId: request.echo.previousResponseId,
    });
  } catch (error) {
    target.log(error);
  }
}

/** The whole Response object as one JSON body, metered figures in headers as well. */
class ResponsesJsonRenderer extends HttpRenderer {
  private request: ParsedResponsesRequest | null = null;
  private whole: WholeResponse | null = null;

  constructor(
    reply: FastifyReply,
    clientGone: AbortSignal,
    private readonly target: StoreTarget,
  ) {
    super(reply, clientGone);
  }

  protected begin(context: RequestContext, request: ParsedResponsesRequest): void {
    this.request = request;
    this.whole = new WholeResponse(context, request);
  }

  text(part: ContentPart): undefined {
    (this.whole as WholeResponse).add(part);
    return undefined;
  }

  async finished(part: FinishPart, context: RequestContext): Promise<void> {
    if (context.metered) this.reply.headers(meteredHeaders(context.metered));
    // The pipeline calls `started` (begin) before `finished`: the WholeResponse exists.
    const { response, relayedJson } = (this.whole as WholeResponse).finish(part);
    await storeResponse(
      this.target,
      context,
      this.request as ParsedResponsesRequest,
      relayedJson ?? response,
    );
    // A relayed upstream's Response goes out as it sent it, Gravity's fields rewritten: no re-encoding.
    if (relayedJson !== null) await this.reply.type('application/json; charset=utf-8').send(relayedJson);
    else await this.reply.send(response);
  }
}

/**
 * The Responses event stream. Same rules as the chat SSE renderer (completion-handler.ts): the head goes
 * out with the first token, so a failure before it is a plain HTTP error; backpressure pauses the
 * engine; the client's disconnect cancels. Sequence numbers 0 and 1 are `response.created` and
 * `response.in_progress`, written with the head; events built before it (parts that stand for no token)
 * wait for it.
 */
class ResponsesSseRenderer extends HttpRenderer implements OutputEvents {
  private builder: ResponseOutputBuilder | null = null;
  private request: ParsedResponsesRequest | null = null;
  private context: RequestContext | null = null;
  private sequence = 2;
  /** Encoded events not yet written. */
  private out = '';
  /** The text-delta event's prefix for the open message item (rebuilt when another item opens). */
  private deltaItemId = '';
  private deltaPrefix = '';
  /**
   * Set by the first part of an upstream's relayed Responses events: the stream is then the
   * upstream's (response-relay.ts), and Gravity writes no lifecycle events of its own.
   */
  private relay: ResponseRelay | null = null;

  constructor(
    reply: FastifyReply,
    private readonly clock: Clock,
    clientGone: AbortSignal,
    private readonly target: StoreTarget,
    private readonly writeStallTimeoutMs: number,
  ) {
    super(reply, clientGone);
  }

  protected begin(context: RequestContext, request: ParsedResponsesRequest): void {
    this.context = context;
    this.request = request;
    this.builder = new ResponseOutputBuilder(responseIdOf(context.requestId), this);
  }

  // Hot path, once per token: a precomputed prefix, the JSON-encoded delta, the sequence number. Item ids
  // are unique within a response, so the id alone says whether the prefix still fits.
  textDelta(itemId: string, outputIndex: number, delta: string, logprobs?: readonly unknown[]): void {
    if (this.deltaItemId !== itemId) {
      this.deltaItemId = itemId;
      this.deltaPrefix =
        'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",' +
        `"item_id":${JSON.stringify(itemId)},"output_index":${outputIndex},"content_index":0,"delta":`;
    }
    const encodedLogprobs = logprobs === undefined ? '[]' : JSON.stringify(logprobs);
    this.out += `${this.deltaPrefix}${JSON.stringify(delta)},"logprobs":${encodedLogprobs},"sequence_number":${this.sequence++}}\n\n`;
  }

  event(event: Record<string, unknown>): void {
    this.out += encodeEvent(event, this.sequence++);
  }

  text(part: ContentPart): Promise<void> | undefined {
    const context = this.context as RequestContext;
    const partAtMs = this.clock.nowMs();
    if (isRelayedResponses(part)) {
      this.relay ??= new ResponseRelay(context, (this.request as ParsedResponsesRequest).echo);
      this.out += this.relay.encode(part);
    } else (this.builder as ResponseOutputBuilder).add(part);
    if (!this.committed) {
      // A part that stands for no token (a relay's role-only opener) waits with the head.
      if (part.tokens === 0) {
        context.gatewayOverheadMs += this.clock.nowMs() - partAtMs;
        return undefined;
      }
      this.commit();
    }
    const encoded = this.out;
    this.out = '';
    const drained = writeStreamed(this.reply.raw, encoded, this.clientGone, this.writeStallTimeoutMs);
    context.gatewayOverheadMs += this.clock.nowMs() - partAtMs;
    return drained;
  }

  async finished(part: FinishPart, context: RequestContext): Promise<void> {
    if (!this.committed) this.commit();
    const request = this.request as ParsedResponsesRequest;
    const relayed = this.relay?.finish(part, context.metered) ?? null;
    if (relayed) {
      await storeResponse(this.target, context, request, relayed.responseJson);
      this.reply.raw.end(`${this.out}event: ${relayed.type}\ndata: ${relayed.eventJson}\n\n`);
      this.out = '';
      return;
    }
    const response = builtResponse(context, request, this.builder as ResponseOutputBuilder, part);
    await storeResponse(this.target, context, request, response);
    const type = response.status === 'completed' ? 'response.completed' : 'response.incomplete';
    this.event({ type, response });
    const encoded = this.out;
    this.out = '';
    this.reply.raw.end(encoded);
  }

  override async failed(failure: PipelineFailure, context: RequestContext): Promise<void> {
    if (failure.cancelled || !this.committed) return super.failed(failure, context);
    // The stream has begun: the failure travels as `response.failed`, as OpenAI sends it.
    const raw = this.reply.raw;
    if (raw.writableEnded || raw.destroyed) return;
    const error = failure.error;
    const relay = this.relay;
    // After relayed events, Gravity's event follows the upstream's numbering, with the items it finished.
    if (relay) this.sequence = relay.nextSequenceNumber();
    this.event({
      type: 'response.failed',
      response: responseObject({
        context,
        echo: (this.request as ParsedResponsesRequest).echo,
        status: 'failed',
        output: relay ? relay.items() : (this.builder as ResponseOutputBuilder).items(),
        error: { code: error.code ?? 'server_error', message: error.message },
      }),
    });
    const encoded = this.out;
    this.out = '';
    raw.end(encoded);
  }

  /** Sends the head, `response.created` and `response.in_progress`, and the events that waited. */
  private commit(): void {
    const raw = writeEventStreamHead(this.reply);
    this.committed = true;
    if (this.relay) {
      // The upstream's own response.created and in_progress are among the events that waited.
      if (this.out !== '') raw.write(this.out);
      this.out = '';
      return;
    }
    const created = responseObject({
      context: this.context as RequestContext,
      echo: (this.request as ParsedResponsesRequest).echo,
      status: 'in_progress',
      output: [],
    });
    const head =
      encodeEvent({ type: 'response.created', response: created }, 0) +
      encodeEvent({ type: 'response.in_progress', response: created }, 1) +
      this.out;
    this.out = '';
    raw.write(head);
  }
}

function encodeEvent(event: Record<string, unknown>, sequenceNumber: number): string {
  return `event: ${event.type as string}\ndata: ${JSON.stringify({ ...event, sequence_number: sequenceNumber })}\n\n`;
}
