import type { Caller } from '../admission/request-caller.js';
import { EmbeddingsAssembler } from '../api/embeddings-response.js';
import { completionResponseBody } from '../api/openai-wire-format.js';
import {
  type ParsedRequest,
  parseChatCompletionRequest,
  parseCompletionRequest,
  parseEmbeddingRequest,
} from '../api/request-schemas.js';
import { ResponseAssembler } from '../api/response-assembler.js';
import { errors, type GravityError } from '../core/errors.js';
import type { Endpoint, RequestContext } from '../core/request-context.js';
import type { ContentPart, FinishPart } from '../core/stream-parts.js';
import type { PipelineFailure, RequestPipeline, ResponseRenderer } from '../pipeline/request-pipeline.js';
import type { BatchEndpoint } from './batch-input.js';
import { failedLineAnswer, type LineAnswer } from './line-answer.js';
import { parseResponsesBatchLine, ResponsesLineRenderer } from './responses-line.js';

export type { LineAnswer };

/** Each batch endpoint's request type, parser (the HTTP edge's) and the renderer of its lines' answers. */
const lineEndpoints: Record<
  BatchEndpoint,
  {
    endpoint: Endpoint;
    parse: (body: unknown) => ParsedRequest;
    renderer: () => ResponseRenderer<ParsedRequest, LineAnswer>;
  }
> = {
  '/v1/chat/completions': {
    endpoint: 'chat.completions',
    parse: parseChatCompletionRequest,
    renderer: () => new LineAnswerRenderer(),
  },
  '/v1/completions': {
    endpoint: 'completions',
    parse: parseCompletionRequest,
    renderer: () => new LineAnswerRenderer(),
  },
  '/v1/embeddings': {
    endpoint: 'embeddings',
    parse: parseEmbeddingRequest,
    renderer: () => new EmbeddingsLineRenderer(),
  },
  '/v1/responses': {
    endpoint: 'responses',
    parse: (body) => parseResponsesBatchLine(body as Record<string, unknown>),
    renderer: () => new ResponsesLineRenderer(),
  },
};

/**
 * Runs one batch line through the request pipeline, exactly as the same request over HTTP would run —
 * the edge's request parser, admission against the limits of the key that created the batch, the
 * gateway, one ledger record — non-streamed and at the `batch` tier. A line refused for a rate limit
 * waits for it (a batch has 24 hours) until `stopWaiting` aborts. Never throws: a failure is the line's
 * answer, with the status and body the HTTP edge would have sent.
 */
export function executeBatchLine(options: {
  pipeline: RequestPipeline;
  endpoint: BatchEndpoint;
  body: Record<string, unknown>;
  /** The batch's owner: its tenant and the key that created the batch (limits, ledger `apiKeyId`). */
  caller: Caller;
  /** Why the line may not run at all (the key that created the batch was revoked): its answer. */
  refusal: GravityError | null;
  /** Cancel or expiry: ends the line whatever it is doing; its reason is the answer. */
  signal: AbortSignal;
  /** Shutdown: ends a wait for a rate limit (its reason is the answer); running lines carry on. */
  stopWaiting: AbortSignal;
}): Promise<LineAnswer> {
  const { body } = options;
  const line = lineEndpoints[options.endpoint];
  return options.pipeline.run({
    endpoint: line.endpoint,
    received: {
      model: typeof body.model === 'string' ? body.model : '',
      stream: false,
      serviceTier: 'batch',
    },
    caller: options.caller,
    parse: () => {
      if (options.refusal) throw options.refusal;
      if (body.stream === true)
        throw errors.unsupportedParameter(
          'stream',
          'is not supported in a batch: each line is answered whole.',
        );
      // A line's own service_tier is not the batch's: batch lines always run at the batch tier.
      const { service_tier: _ignored, ...request } = body;
      const parsed = line.parse(request);
      return { ...parsed, serviceTier: 'batch' };
    },
    renderer: line.renderer(),
    signal: options.signal,
    waitForRateLimits: { until: options.stopWaiting },
  });
}

/** An embeddings line's answer: the list body `/v1/embeddings` would have sent (embeddings-response.ts). */
class EmbeddingsLineRenderer implements ResponseRenderer<ParsedRequest, LineAnswer> {
  readonly committed = false;
  private readonly assembler = new EmbeddingsAssembler();
  private encodingFormat: 'float' | 'base64' = 'float';

  admitted(): void {}

  started(_context: RequestContext, request: ParsedRequest): void {
    const input = request.generation.input;
    if (input.kind === 'embedding') this.encodingFormat = input.encodingFormat;
  }

  text(part: ContentPart): undefined {
    this.assembler.add(part);
    return undefined;
  }

  finished(part: FinishPart, context: RequestContext): LineAnswer {
    const { encodingFormat } = this;
    return {
      statusCode: 200,
      requestId: context.requestId,
      body: this.assembler.build({ context, usage: part.usage, metered: context.metered, encodingFormat }),
      usage: part.usage,
      errorCode: null,
      pushedBack: false,
    };
  }

  failed(failure: PipelineFailure, context: RequestContext): LineAnswer {
    return failedLineAnswer(failure, context);
  }
}

/** Assembles a line's answer and gives the JSON body or error an HTTP client would have received. */
class LineAnswerRenderer implements ResponseRenderer<ParsedRequest, LineAnswer> {
  readonly committed = false;
  private assembler: ResponseAssembler | null = null;

  admitted(): void {}

  started(context: RequestContext): void {
    this.assembler = new ResponseAssembler(context.endpoint);
  }

  text(part: ContentPart): undefined {
    (this.assembler as ResponseAssembler).add(part);
    return undefined;
  }

  finished(part: FinishPart, context: RequestContext): LineAnswer {
    const assembler = this.assembler ?? new ResponseAssembler(context.endpoint);
    return {
      statusCode: 200,
      requestId: context.requestId,
      body: completionResponseBody({
        context,
        choices: assembler.build(part.finishReason),
        usage: part.usage,
        metered: context.metered,
        systemFingerprint: assembler.fingerprint,
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
