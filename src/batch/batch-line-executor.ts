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
import { failedLineAnswer, type LineAnswer, type LineBodyCollector } from './line-answer.js';
import { parseResponsesBatchLine, responsesLineBody } from './responses-line.js';

export type { LineAnswer };

/** A batch endpoint's request type, parser (the HTTP edge's) and the collector of its answers' bodies. */
interface LineEndpoint {
  endpoint: Endpoint;
  parse: (body: unknown) => ParsedRequest;
  /** Made when the line starts (the request parsed and admitted), so it may read the request. */
  collector: (context: RequestContext, request: ParsedRequest) => LineBodyCollector;
}

const lineEndpoints: Record<BatchEndpoint, LineEndpoint> = {
  '/v1/chat/completions': {
    endpoint: 'chat.completions',
    parse: parseChatCompletionRequest,
    collector: completionBody,
  },
  '/v1/completions': {
    endpoint: 'completions',
    parse: parseCompletionRequest,
    collector: completionBody,
  },
  '/v1/embeddings': {
    endpoint: 'embeddings',
    parse: parseEmbeddingRequest,
    collector: (_context, request) => EmbeddingsAssembler.forRequest(request),
  },
  '/v1/responses': {
    endpoint: 'responses',
    parse: (body) => parseResponsesBatchLine(body as Record<string, unknown>),
    collector: responsesLineBody,
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
    renderer: new LineRenderer(line.collector),
    signal: options.signal,
    waitForRateLimits: { until: options.stopWaiting },
  });
}

/**
 * A line's answer: the body the same request over HTTP would have got, from its endpoint's collector, or
 * the error an HTTP client would have received.
 */
class LineRenderer implements ResponseRenderer<ParsedRequest, LineAnswer> {
  readonly committed = false;
  private collector: LineBodyCollector | null = null;

  constructor(private readonly collectorFor: LineEndpoint['collector']) {}

  admitted(): void {}

  /** The pipeline calls this before any part, and always before `finished`. */
  started(context: RequestContext, request: ParsedRequest): void {
    this.collector = this.collectorFor(context, request);
  }

  text(part: ContentPart): undefined {
    (this.collector as LineBodyCollector).add(part);
    return undefined;
  }

  finished(part: FinishPart, context: RequestContext): LineAnswer {
    return {
      statusCode: 200,
      requestId: context.requestId,
      body: (this.collector as LineBodyCollector).body(part, context),
      usage: part.usage,
      errorCode: null,
      pushedBack: false,
    };
  }

  failed(failure: PipelineFailure, context: RequestContext): LineAnswer {
    return failedLineAnswer(failure, context);
  }
}

/** A completion's or chat completion's body, as the HTTP edge's JSON renderer builds it. */
function completionBody(context: RequestContext): LineBodyCollector {
  const assembler = new ResponseAssembler(context.endpoint);
  return {
    add: (part) => assembler.add(part),
    body: (part, finishedContext) =>
      completionResponseBody({
        context: finishedContext,
        choices: assembler.build(part.finishReason),
        usage: part.usage,
        metered: finishedContext.metered,
        systemFingerprint: assembler.fingerprint,
      }),
  };
}
