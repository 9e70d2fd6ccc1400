import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { requestCaller } from '../admission/request-caller.js';
import type { Clock } from '../core/clock.js';
import { errors, type GravityError } from '../core/errors.js';
import type { Endpoint, MeteredFigures, RequestContext } from '../core/request-context.js';
import { requestCorrelation } from '../core/request-correlation.js';
import type { ContentPart, FinishPart } from '../core/stream-parts.js';
import type { PipelineFailure, RequestPipeline, ResponseRenderer } from '../pipeline/request-pipeline.js';
import { completionResponseBody, SseChunkEncoder } from './openai-wire-format.js';
import type { ParsedRequest } from './request-schemas.js';
import { ResponseAssembler } from './response-assembler.js';

/**
 * Serves `/v1/chat/completions` and `/v1/completions`: the request goes through the pipeline (which
 * records it once, in every case) and this renders the outcome as a JSON body or OpenAI's SSE stream.
 */
export function completionHandler(options: {
  pipeline: RequestPipeline;
  clock: Clock;
  endpoint: Endpoint;
  parse: (body: unknown) => ParsedRequest;
  /** How long a streamed response waits for a client that reads nothing (waitForDrain). */
  writeStallTimeoutMs: number;
}) {
  const { pipeline, clock, endpoint, parse, writeStallTimeoutMs } = options;
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const body = request.body as { model?: unknown; stream?: unknown } | undefined;
    // The parser accepts `stream` only as a boolean, so a request that parses streams exactly when this
    // holds; one that does not parse is answered the same way by either renderer.
    const stream = body?.stream === true;
    const clientGone = clientGoneSignal(reply);
    await pipeline.run({
      endpoint,
      received: { model: typeof body?.model === 'string' ? body.model : '', stream },
      caller: requestCaller(request),
      correlation: requestCorrelation(request.headers),
      parse: () => parse(request.body),
      renderer: stream
        ? new SseRenderer(reply, clock, clientGone, writeStallTimeoutMs)
        : new JsonRenderer(reply, clientGone),
      signal: clientGone,
    });
  };
}

/**
 * Aborted when the client disconnects before the response ended: the generation stops. `close` on the
 * response fires both on normal end and on disconnect; only an unfinished response means the client left.
 */
export function clientGoneSignal(reply: FastifyReply): AbortSignal {
  const clientGone = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) clientGone.abort(errors.cancelled('The client closed the connection.'));
  });
  return clientGone.signal;
}

/**
 * Takes the response from the framework and sends an event stream's head with the headers set so far
 * (x-request-id, rate limits, route). Streams send it with their first token, not before.
 */
export function writeEventStreamHead(reply: FastifyReply): ServerResponse {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    ...(reply.getHeaders() as Record<string, string>),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    // No `connection` header here: Node sends keep-alive, or close when the client asked for it.
    // Tells nginx-style proxies in front of Gravity not to buffer the stream.
    'x-accel-buffering': 'no',
  });
  return raw;
}

/**
 * Renders a completion request that the framework refused before its handler ran (bad JSON, a body too
 * large, a missing key): it still passes through the pipeline, which records it, as a plain HTTP error.
 */
export function refusedRequestRenderer(reply: FastifyReply): ResponseRenderer<ParsedRequest, void> {
  return new JsonRenderer(reply, new AbortController().signal);
}

/**
 * What both HTTP renderers share: `x-request-id` from the start, `x-ratelimit-*` once admitted, and a
 * failure before any byte as a plain HTTP error with its status.
 */
export abstract class HttpRenderer implements ResponseRenderer<ParsedRequest, void> {
  committed = false;

  constructor(
    protected readonly reply: FastifyReply,
    protected readonly clientGone: AbortSignal,
  ) {}

  admitted(rateLimitHeaders: Record<string, string>): void {
    this.reply.headers(rateLimitHeaders);
  }

  started(context: RequestContext, request: ParsedRequest): void | Promise<void> {
    this.reply.header('x-request-id', requestIdHeader(context));
    // Why this replica: its scores and the runners-up (docs/routing.md).
    if (context.route !== null) this.reply.header('x-gravity-route', context.route);
    return this.begin(context, request);
  }

  protected abstract begin(context: RequestContext, request: ParsedRequest): void | Promise<void>;
  abstract text(part: ContentPart): Promise<void> | undefined;
  abstract finished(part: FinishPart, context: RequestContext): Promise<void>;

  async failed(failure: PipelineFailure, context: RequestContext): Promise<void> {
    // The client left: there is no one to answer.
    if (failure.cancelled) return;
    const error = failure.error;
    if (this.committed) {
      // The stream has begun (status stays 200): the error travels as an SSE event, as OpenAI sends it.
      endStreamWithError(this.reply.raw, error);
      return;
    }
    await this.reply
      .code(error.status)
      .header('x-request-id', requestIdHeader(context))
      .headers(error.headers)
      .send(error.toBody());
  }
}

/** The client's own `x-request-id` when it sent a valid one, else Gravity's. */
export function requestIdHeader(context: RequestContext): string {
  return context.clientRequestId ?? context.requestId;
}

/** A whole response as one JSON body, with the metered figures in headers as well. */
class JsonRenderer extends HttpRenderer {
  private assembler: ResponseAssembler | null = null;

  protected begin(context: RequestContext): void {
    this.assembler = new ResponseAssembler(context.endpoint);
  }

  text(part: ContentPart): undefined {
    (this.assembler as ResponseAssembler).add(part);
    return undefined;
  }

  async finished(part: FinishPart, context: RequestContext): Promise<void> {
    if (context.metered) this.reply.headers(meteredHeaders(context.metered));
    const assembler = this.assembler ?? new ResponseAssembler(context.endpoint);
    await this.reply.send(
      completionResponseBody({
        context,
        choices: assembler.build(part.finishReason),
        usage: part.usage,
        metered: context.metered,
        systemFingerprint: assembler.fingerprint,
      }),
    );
  }
}

/**
 * OpenAI's SSE stream. The head goes out with the first token, not when the engine accepts the request:
 * until a byte is sent a failure is still a plain HTTP error with its status (a 502 a client's retry
 * logic can see), not a 200 carrying an SSE error event. Parts that stand for no token (a relayed
 * upstream's role-only opener) wait with the head.
 */
class SseRenderer extends HttpRenderer {
  private encoder: SseChunkEncoder | null = null;
  private context: RequestContext | null = null;
  /** Encoded parts waiting for the head. */
  private pending = '';
  /**
   * What the stream's first content part was: a relay brings its own opener; an engine's choice chunks
   * get one opener per choice (`openedChoices`), so a client never sees a choice begin with a token.
   */
  private firstPart: ContentPart['type'] | null = null;
  private readonly openedChoices = new Set<number>();

  constructor(
    reply: FastifyReply,
    private readonly clock: Clock,
    clientGone: AbortSignal,
    private readonly writeStallTimeoutMs: number,
  ) {
    super(reply, clientGone);
  }

  protected begin(context: RequestContext, request: ParsedRequest): undefined {
    this.context = context;
    this.encoder = new SseChunkEncoder(context, request.includeUsage);
    return undefined;
  }

  text(part: ContentPart): Promise<void> | undefined {
    // Hot path, once per token: encode, write (writeStreamed), and count the time as Gravity's own.
    const context = this.context as RequestContext;
    const partAtMs = this.clock.nowMs();
    if (!this.committed) {
      this.firstPart ??= part.type;
      if (part.tokens === 0) {
        this.pending += this.encode(part);
        context.gatewayOverheadMs += this.clock.nowMs() - partAtMs;
        return undefined;
      }
      this.commit();
    }
    // An empty text part only reports tokens whose text the client never sees (a stop sequence).
    const drained = writeStreamed(
      this.reply.raw,
      this.encode(part),
      this.clientGone,
      this.writeStallTimeoutMs,
    );
    context.gatewayOverheadMs += this.clock.nowMs() - partAtMs;
    return drained;
  }

  async finished(part: FinishPart, context: RequestContext): Promise<void> {
    if (!this.committed) this.commit();
    this.reply.raw.end((this.encoder as SseChunkEncoder).finish(part, context.metered));
  }

  private encode(part: ContentPart): string {
    const encoder = this.encoder as SseChunkEncoder;
    if (part.type === 'text-delta') return part.text === '' ? '' : encoder.text(part.text);
    if (part.type === 'choice-delta') {
      if (!encoder.chat) return encoder.choice(part.choice);
      // OpenAI opens each choice with the role and empty content; the SDK counts a first chunk's
      // logprobs twice when the choice begins with a token.
      const index = part.choice.index;
      if (this.openedChoices.has(index)) return encoder.choice(part.choice);
      this.openedChoices.add(index);
      return encoder.choiceOpening(index) + encoder.choice(part.choice);
    }
    // Embeddings are never streamed: their parts cannot reach an SSE renderer.
    return part.type === 'upstream-chunk' ? encoder.relay(part) : '';
  }

  /** Sends the head, the opener (unless the upstream's own is relayed) and what waited for them. */
  private commit(): void {
    const raw = writeEventStreamHead(this.reply);
    this.committed = true;
    // The default opener (choice 0) for text streams; a relay has its own, choice chunks get theirs.
    let opening: string | null = null;
    if (this.firstPart === 'text-delta' || this.firstPart === null) {
      opening = (this.encoder as SseChunkEncoder).opening();
      if (opening !== null) this.openedChoices.add(0);
    }
    const head = (opening ?? '') + this.pending;
    this.pending = '';
    if (head !== '') raw.write(head);
  }
}

/**
 * Writes one streamed part's encoded events (nothing for ''). Hot path, once per token for every
 * streamed endpoint: no allocation, no clock read (the caller counts its time). Writes made in the same
 * tick (several upstream events in one read) leave in one system call: the socket is corked until the
 * tick ends; one token per tick (llama.cpp) still leaves at once. Returns a promise only when the
 * client is slow (backpressure: the engine waits for the drain).
 */
export function writeStreamed(
  raw: ServerResponse,
  encoded: string,
  clientGone: AbortSignal,
  writeStallTimeoutMs: number,
): Promise<void> | undefined {
  if (encoded === '') return undefined;
  if (raw.writableCorked === 0) {
    raw.cork();
    process.nextTick(uncork, raw);
  }
  return raw.write(encoded) ? undefined : waitForDrain(raw, clientGone, writeStallTimeoutMs);
}

function uncork(raw: ServerResponse): void {
  raw.uncork();
}

/** A non-streamed response carries its own metered figures in headers as well as in `usage.gravity`. */
export function meteredHeaders(metered: MeteredFigures): Record<string, string> {
  return {
    'x-gravity-energy-joules': String(metered.energyJoules),
    'x-gravity-energy-source': metered.energySource,
    'x-gravity-cost-usd': String(metered.costUsd),
    'x-gravity-price-usd': String(metered.priceUsd),
    'x-gravity-margin-usd': String(metered.marginUsd),
    'x-gravity-carbon-grams': String(metered.carbonGrams),
  };
}

/**
 * Backpressure: a slow client pauses generation instead of growing Gravity's memory. A client that
 * disconnects while Gravity waits rejects this wait, ending the request. So does one that reads nothing
 * for `writeStallTimeoutMs`: it would otherwise hold its engine slot (and the upstream's) for as long as
 * it likes. Its connection is destroyed, which is a disconnect: `clientGone` (clientGoneSignal) aborts
 * before this rejects, so the pipeline records the request as the client's (499) and frees its slot.
 * Off the hot path: only a write that found the socket full gets here.
 */
export async function waitForDrain(
  raw: ServerResponse,
  clientGone: AbortSignal,
  writeStallTimeoutMs: number,
): Promise<void> {
  if (raw.destroyed) return;
  const drained = once(raw, 'drain', { signal: clientGone });
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<'stalled'>((resolve) => {
    timer = setTimeout(resolve, writeStallTimeoutMs, 'stalled');
  });
  try {
    if ((await Promise.race([drained, stalled])) !== 'stalled') return;
  } finally {
    clearTimeout(timer);
  }
  // The drain wait rejects once `clientGone` aborts below; nobody waits for it any more.
  drained.catch(() => {});
  if (!raw.destroyed) {
    const closed = once(raw, 'close');
    raw.destroy();
    await closed;
  }
  throw clientGone.reason ?? errors.cancelled('The client stopped reading.');
}

function endStreamWithError(raw: ServerResponse, error: GravityError): void {
  if (raw.writableEnded || raw.destroyed) return;
  raw.end(`data: ${JSON.stringify(error.toBody())}\n\n`);
}
