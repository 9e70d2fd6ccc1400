import type { FastifyReply, FastifyRequest } from 'fastify';
import { requestCaller } from '../admission/request-caller.js';
import type { RequestContext } from '../core/request-context.js';
import type { ContentPart, FinishPart } from '../core/stream-parts.js';
import type { RequestPipeline } from '../pipeline/request-pipeline.js';
import { clientGoneSignal, HttpRenderer, meteredHeaders } from './completion-handler.js';
import { EmbeddingsAssembler } from './embeddings-response.js';
import { type ParsedRequest, parseEmbeddingRequest } from './request-schemas.js';

/**
 * Serves `/v1/embeddings`: the request goes through the pipeline like a completion (one ledger record,
 * admission, tiers, limits, routing) and the outcome is one JSON body; embeddings are never streamed.
 */
export function embeddingsHandler(options: { pipeline: RequestPipeline }) {
  const { pipeline } = options;
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const body = request.body as { model?: unknown } | undefined;
    const clientGone = clientGoneSignal(reply);
    await pipeline.run({
      endpoint: 'embeddings',
      received: { model: typeof body?.model === 'string' ? body.model : '', stream: false },
      caller: requestCaller(request),
      parse: () => parseEmbeddingRequest(request.body),
      renderer: new EmbeddingsRenderer(reply, clientGone),
      signal: clientGone,
    });
  };
}

/** The embeddings list as one JSON body, with the metered figures in headers as well. */
class EmbeddingsRenderer extends HttpRenderer {
  private readonly assembler = new EmbeddingsAssembler();
  private encodingFormat: 'float' | 'base64' = 'float';

  protected begin(_context: RequestContext, request: ParsedRequest): void {
    const input = request.generation.input;
    if (input.kind === 'embedding') this.encodingFormat = input.encodingFormat;
  }

  text(part: ContentPart): undefined {
    this.assembler.add(part);
    return undefined;
  }

  async finished(part: FinishPart, context: RequestContext): Promise<void> {
    if (context.metered) this.reply.headers(meteredHeaders(context.metered));
    await this.reply.send(
      this.assembler.build({
        context,
        usage: part.usage,
        metered: context.metered,
        encodingFormat: this.encodingFormat,
      }),
    );
  }
}
