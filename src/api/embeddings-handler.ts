import { setImmediate } from 'node:timers/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { requestCaller } from '../admission/request-caller.js';
import type { RequestContext } from '../core/request-context.js';
import { requestCorrelation } from '../core/request-correlation.js';
import type { ContentPart, FinishPart } from '../core/stream-parts.js';
import type { RequestPipeline } from '../pipeline/request-pipeline.js';
import { clientGoneSignal, HttpRenderer, meteredHeaders, waitForDrain } from './completion-handler.js';
import { EmbeddingsAssembler } from './embeddings-response.js';
import { type ParsedRequest, parseEmbeddingRequest } from './request-schemas.js';

/**
 * Serves `/v1/embeddings`: the request goes through the pipeline like a completion (one ledger record,
 * admission, tiers, limits, routing) and the outcome is one JSON body; embeddings are never streamed.
 */
export function embeddingsHandler(options: {
  pipeline: RequestPipeline;
  /** How long the answer's pieces wait for a client that reads nothing (waitForDrain). */
  writeStallTimeoutMs: number;
}) {
  const { pipeline, writeStallTimeoutMs } = options;
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const body = request.body as { model?: unknown } | undefined;
    const clientGone = clientGoneSignal(reply);
    await pipeline.run({
      endpoint: 'embeddings',
      received: { model: typeof body?.model === 'string' ? body.model : '', stream: false },
      caller: requestCaller(request),
      correlation: requestCorrelation(request.headers),
      parse: () => parseEmbeddingRequest(request.body),
      renderer: new EmbeddingsRenderer(reply, clientGone, writeStallTimeoutMs),
      signal: clientGone,
    });
  };
}

/** The embeddings list as one JSON body, written in pieces, with the metered figures in headers as well. */
class EmbeddingsRenderer extends HttpRenderer {
  private assembler: EmbeddingsAssembler | null = null;

  constructor(
    reply: FastifyReply,
    clientGone: AbortSignal,
    private readonly writeStallTimeoutMs: number,
  ) {
    super(reply, clientGone);
  }

  protected begin(_context: RequestContext, request: ParsedRequest): void {
    this.assembler = EmbeddingsAssembler.forRequest(request);
  }

  text(part: ContentPart): undefined {
    (this.assembler as EmbeddingsAssembler).add(part);
    return undefined;
  }

  /**
   * Runs after the ledger commit (ADR 0001), so every byte written here comes after it. The body goes out
   * in pieces (embeddings-response.ts), yielding to the event loop between them and waiting for the
   * socket to drain when it is full: a large answer neither blocks other requests nor piles up in memory.
   * A client that left gets no more pieces.
   */
  async finished(part: FinishPart, context: RequestContext): Promise<void> {
    if (context.metered) this.reply.headers(meteredHeaders(context.metered));
    this.reply.hijack();
    const raw = this.reply.raw;
    raw.writeHead(200, {
      ...(this.reply.getHeaders() as Record<string, string>),
      'content-type': 'application/json; charset=utf-8',
    });
    const pieces = (this.assembler as EmbeddingsAssembler).jsonPieces(part, context);
    let piece = pieces.next();
    while (!piece.done) {
      const next = pieces.next();
      if (next.done) {
        raw.end(piece.value);
        return;
      }
      const flushed = raw.write(piece.value);
      try {
        await (flushed ? setImmediate() : waitForDrain(raw, this.clientGone, this.writeStallTimeoutMs));
      } catch {
        // Aborted while waiting for the socket to drain: the client is gone.
      }
      if (this.clientGone.aborted || raw.destroyed) return;
      piece = next;
    }
  }
}
