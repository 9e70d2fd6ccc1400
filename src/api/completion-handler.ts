import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Admission } from '../admission/admission.js';
import { requestCaller } from '../admission/request-caller.js';
import { errors, GravityError, toGravityError } from '../core/errors.js';
import type { Endpoint, MeteredFigures, RequestContext } from '../core/request-context.js';
import type { StreamPart } from '../core/stream-parts.js';
import type { Gateway } from '../gateway/gateway.js';
import { completionResponseBody, SseChunkEncoder } from './openai-wire-format.js';
import type { ParsedRequest } from './request-schemas.js';

/** HTTP status recorded for a request whose client went away (nginx's convention). */
const clientClosedRequest = 499;

/**
 * Serves `/v1/chat/completions` and `/v1/completions`: validates, runs the request through the gateway
 * and writes the answer as JSON or as OpenAI's SSE stream. Every request that reaches here ends with
 * exactly one `gateway.finish(context)`, awaited before the response's last bytes so that a response the
 * client saw complete is already in the ledger.
 */
export function completionHandler(options: {
  gateway: Gateway;
  endpoint: Endpoint;
  parse: (body: unknown) => ParsedRequest;
  log: (context: RequestContext, error: unknown) => void;
  /** Tiers and limits; absent: the requested tier as is, no limits. */
  admission?: Admission | undefined;
}) {
  const { gateway, endpoint, parse } = options;
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const body = request.body as { model?: unknown; stream?: unknown } | undefined;
    const context = gateway.begin({
      endpoint,
      stream: body?.stream === true,
      model: typeof body?.model === 'string' ? body.model : '',
      serviceTier: 'auto',
    });
    reply.header('x-request-id', context.requestId);
    const caller = requestCaller(request);
    context.tenant = caller.tenant;
    context.apiKeyId = caller.apiKeyId;

    // The client's disconnect aborts the generation. `close` on the response fires both on normal end
    // and on disconnect; only an unfinished response means the client left.
    const clientGone = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished)
        clientGone.abort(errors.cancelled('The client closed the connection.'));
    });

    let parsed: ParsedRequest | undefined;
    let iterator: AsyncIterator<StreamPart> | undefined;
    try {
      parsed = parse(request.body);
      if (options.admission) {
        // 403 for a tier the key may not use, 429 over a limit; the x-ratelimit-* headers go on every
        // answer from here on, streamed or not.
        context.serviceTier = options.admission.resolveTier(caller, parsed.serviceTier);
        reply.headers(await options.admission.admit(context, caller, parsed.generation));
      } else context.serviceTier = parsed.serviceTier;
      iterator = gateway.execute(context, parsed.generation, clientGone.signal)[Symbol.asyncIterator]();
      context.gatewayOverheadMs += gateway.clock.nowMs() - context.receivedAtMs;
      // Wait for the engine to accept the request before committing to a 200: until then, any failure is
      // still a plain HTTP error.
      const first = await iterator.next();
      if (first.done || first.value.type !== 'response-start')
        throw errors.internal('engine sent no response-start');
      context.status = 200;
      // Why this replica: its scores and the runners-up (docs/routing.md).
      if (context.route !== null) reply.header('x-gravity-route', context.route);
      if (parsed.stream)
        await writeStream({
          reply,
          context,
          gateway,
          parts: iterator,
          includeUsage: parsed.includeUsage,
          clientGone: clientGone.signal,
        });
      else await writeJson({ reply, context, gateway, parts: iterator });
    } catch (error) {
      const gravityError = clientGone.signal.aborted
        ? errors.cancelled('The client closed the connection.')
        : toGravityError(error);
      if (!(error instanceof GravityError) && !clientGone.signal.aborted) options.log(context, error);
      context.errorCode = gravityError.code;
      if (clientGone.signal.aborted) {
        context.status = clientClosedRequest;
        await gateway.finish(context);
      } else if (reply.raw.headersSent) {
        // The stream has begun (status stays 200): the error travels as an SSE event, as OpenAI sends it.
        await gateway.finish(context);
        endStreamWithError(reply.raw, gravityError);
      } else {
        context.status = gravityError.status;
        await gateway.finish(context);
        await reply.code(gravityError.status).headers(gravityError.headers).send(gravityError.toBody());
      }
    } finally {
      await iterator?.return?.(undefined).catch(() => {});
      await gateway.finish(context);
    }
  };
}

interface WriteOptions {
  reply: FastifyReply;
  context: RequestContext;
  gateway: Gateway;
  parts: AsyncIterator<StreamPart>;
}

async function writeJson({ reply, context, gateway, parts }: WriteOptions): Promise<void> {
  let text = '';
  for (let next = await parts.next(); !next.done; next = await parts.next()) {
    const part = next.value;
    if (part.type === 'text-delta') text += part.text;
    else if (part.type === 'finish') {
      await gateway.finish(context);
      if (context.metered) reply.headers(meteredHeaders(context.metered));
      const body = completionResponseBody({
        context,
        text,
        finishReason: part.finishReason,
        usage: part.usage,
        metered: context.metered,
      });
      await reply.send(body);
      return;
    }
  }
  throw errors.internal('engine ended without a finish part');
}

async function writeStream({
  reply,
  context,
  gateway,
  parts,
  includeUsage,
  clientGone,
}: WriteOptions & { includeUsage: boolean; clientGone: AbortSignal }): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    ...(reply.getHeaders() as Record<string, string>),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    // Tells nginx-style proxies in front of Gravity not to buffer the stream.
    'x-accel-buffering': 'no',
  });
  const encoder = new SseChunkEncoder(context, includeUsage);
  const opening = encoder.opening();
  if (opening && !raw.write(opening)) await waitForDrain(raw, clientGone);
  const clock = gateway.clock;
  for (let next = await parts.next(); !next.done; next = await parts.next()) {
    const part = next.value;
    if (part.type === 'text-delta') {
      // Hot path, once per token: encode, write, and count the time as Gravity's own. Writes made in
      // the same tick (several upstream events in one read) leave in one system call: the socket is
      // corked until the tick ends. One token per tick (llama.cpp) still leaves at once.
      const partAtMs = clock.nowMs();
      if (raw.writableCorked === 0) {
        raw.cork();
        process.nextTick(() => raw.uncork());
      }
      const flushed = raw.write(encoder.text(part.text));
      context.gatewayOverheadMs += clock.nowMs() - partAtMs;
      if (!flushed) await waitForDrain(raw, clientGone);
    } else if (part.type === 'finish') {
      // The ledger commit happens before the final bytes: a client that saw [DONE] is on record.
      await gateway.finish(context);
      raw.end(encoder.finish(part.finishReason, part.usage, context.metered));
      return;
    }
  }
  throw errors.internal('engine ended without a finish part');
}

/** A non-streamed response carries its own metered figures in headers as well as in `usage.gravity`. */
function meteredHeaders(metered: MeteredFigures): Record<string, string> {
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
 * disconnects while Gravity waits rejects this wait, ending the request.
 */
async function waitForDrain(raw: ServerResponse, clientGone: AbortSignal): Promise<void> {
  if (raw.destroyed) return;
  await once(raw, 'drain', { signal: clientGone });
}

function endStreamWithError(raw: ServerResponse, error: GravityError): void {
  if (raw.writableEnded || raw.destroyed) return;
  raw.end(`data: ${JSON.stringify(error.toBody())}\n\n`);
}
