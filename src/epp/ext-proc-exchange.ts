import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { Admission } from '../admission/admission.js';
import type { Caller } from '../admission/request-caller.js';
import {
  type ParsedRequest,
  parseChatCompletionRequest,
  parseCompletionRequest,
  parseEmbeddingRequest,
} from '../api/request-schemas.js';
import { errors, GravityError, toGravityError } from '../core/errors.js';
import { estimateRequestTokens } from '../core/prompt-size.js';
import type { RequestContext } from '../core/request-context.js';
import type { StreamPart } from '../core/stream-parts.js';
import type { GenerationRequest } from '../engines/engine-adapter.js';
import type { Gateway, Placement } from '../gateway/gateway.js';
import { type RequestExecutor, RequestPipeline } from '../pipeline/request-pipeline.js';
import type { EndpointDirectory } from './endpoint-directory.js';
import {
  bodySendMode,
  type HttpBody,
  type HttpHeaders,
  headerValue,
  type ProcessingRequest,
  type ProcessingResponse,
  type StructMessage,
  structStrings,
} from './ext-proc-protocol.js';
import { ResponseUsageReader } from './response-usage.js';

/** The GIE protocol's names (docs/proposals/004-endpoint-picker-protocol). */
export const destinationHeader = 'x-gateway-destination-endpoint';
export const lbNamespace = 'envoy.lb';
export const subsetHintNamespace = 'envoy.lb.subset_hint';
export const subsetHintKey = 'x-gateway-destination-endpoint-subset';
export const servedEndpointKey = 'x-gateway-destination-endpoint-served';

export interface ExchangeSettings {
  gateway: Gateway;
  admission: Admission;
  endpoints: EndpointDirectory;
  /** The model a request without a readable body is placed for (the EPP's first model). */
  defaultModel: string;
  bodyLimitBytes: number;
  log: (message: string, details: Record<string, unknown>) => void;
}

/** How the response ended, as the request path's placement waits for it. */
interface ResponseEnd {
  status: number;
  firstByteAtMs: number | null;
  /** The endpoint Envoy says served the request, when it said so. */
  servedEngineId: string | null;
}

type Decision = { kind: 'placed'; placement: Placement } | { kind: 'refused'; error: GravityError };

/**
 * One ext_proc stream: one HTTP request and its response as Envoy passes them through the EPP.
 *
 * Request path. `request_headers` with `end_of_stream` (no body) is placed at once. Otherwise the body is
 * gathered: in FULL_DUPLEX_STREAMED mode (announced in `protocol_config`) nothing is answered until the
 * last chunk (or the trailers, which then mark the body's end); then the header response carries the
 * destination, followed by the body sent back as `streamed_response` chunks. In BUFFERED mode Envoy waits for the header response before it sends the
 * body, so the headers are answered with CONTINUE and the destination rides on the body's response
 * (header mutations apply there in that mode). A chat or completions body goes through the same
 * pipeline as the HTTP API — parsed by the edge's parsers, admitted, routed and queued by the fleet core,
 * one ledger record — with `Gateway.place` instead of an engine: the request holds its endpoint's slot
 * until the response ends. Refusals become ImmediateResponses with OpenAI-shaped bodies.
 *
 * Response path. Headers and body chunks are answered with CONTINUE, or, in FULL_DUPLEX_STREAMED, the
 * chunks are passed back as `streamed_response`; the usage is read on the way, and the end of the
 * response releases the endpoint and closes the ledger record.
 */
export class ExtProcExchange {
  private fullDuplexRequest = false;
  private fullDuplexResponse = false;
  private readonly requestHeaders = new Map<string, string>();
  private subsetHint: string[] | undefined;
  private readonly bodyChunks: Buffer[] = [];
  private bodyBytes = 0;
  private decided = false;
  private placement: Placement | null = null;
  private promptTokensEstimate = 0;
  private responseStatus = 200;
  private servedEngineId: string | null = null;
  private firstByteAtMs: number | null = null;
  private readonly usageReader = new ResponseUsageReader(() => {
    this.firstByteAtMs = this.settings.gateway.clock.nowMs();
  });
  private resolveResponseEnd: ((end: ResponseEnd) => void) | null = null;
  private readonly responseEnd: Promise<ResponseEnd>;
  private responseEnded = false;
  private sawResponse = false;
  /** Aborted when Envoy ends the stream before the response did: the request was abandoned. */
  private readonly abandoned = new AbortController();
  /** Messages are handled one at a time, in order: a placement may take a while (a queue). */
  private pending: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly call: ServerDuplexStream<ProcessingRequest, ProcessingResponse>,
    private readonly settings: ExchangeSettings,
  ) {
    this.responseEnd = new Promise((resolve) => {
      this.resolveResponseEnd = resolve;
    });
    call.on('data', (message: ProcessingRequest) => {
      this.pending = this.pending
        .then(() => this.handle(message))
        .catch((error: unknown) => this.fail(error));
    });
    call.on('end', () => {
      // Envoy configured to skip the response (no response messages) ends the stream once the HTTP
      // exchange is over: that is the response's end, figures unknown. Queued behind any message.
      this.pending = this.pending.then(() => {
        if (!this.sawResponse && this.decided) this.endResponse();
        this.close();
      });
    });
    call.on('cancelled', () => this.close());
    call.on('error', () => this.close());
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.responseEnded) {
      this.abandoned.abort(errors.cancelled('Envoy ended the ext_proc stream.'));
      this.placement?.release({ kind: 'abandoned' });
    }
    // Ending our half of the stream once Envoy ended its own; a cancelled call ignores it.
    if (!this.call.cancelled) this.call.end();
  }

  private fail(error: unknown): void {
    this.settings.log('ext_proc stream failed', {
      error: error instanceof Error ? error.message : String(error),
    });
    this.close();
  }

  private send(response: ProcessingResponse): void {
    if (!this.closed && !this.call.cancelled) this.call.write(response);
  }

  private async handle(message: ProcessingRequest): Promise<void> {
    if (this.closed) return;
    if (message.protocol_config) {
      this.fullDuplexRequest = message.protocol_config.request_body_mode === bodySendMode.fullDuplexStreamed;
      this.fullDuplexResponse =
        message.protocol_config.response_body_mode === bodySendMode.fullDuplexStreamed;
    }
    // Observability mode wants no answers; the EPP cannot pick without answering, so it only reads.
    const answer = message.observability_mode !== true;
    if (message.request_headers) await this.onRequestHeaders(message.request_headers, message, answer);
    else if (message.request_body) await this.onRequestBody(message.request_body, answer);
    else if (message.response_headers) this.onResponseHeaders(message.response_headers, message, answer);
    else if (message.response_body) this.onResponseBody(message.response_body, message, answer);
    else if (message.request_trailers) await this.onRequestTrailers(answer);
    else if (message.response_trailers) {
      if (answer) this.send({ response_trailers: {} });
      this.endResponse();
    }
  }

  private async onRequestHeaders(
    headers: HttpHeaders,
    message: ProcessingRequest,
    answer: boolean,
  ): Promise<void> {
    for (const header of headers.headers?.headers ?? [])
      this.requestHeaders.set(header.key.toLowerCase(), headerValue(header));
    this.subsetHint = structStrings(
      message.metadata_context?.filter_metadata?.[subsetHintNamespace]?.fields?.[subsetHintKey],
    );
    if (headers.end_of_stream === true) {
      // No body: nothing to parse or meter; the request is placed as an empty one for the pool's model.
      const decision = await this.decide(null);
      if (answer) this.answerDecision(decision, 'request_headers');
      return;
    }
    // BUFFERED (and STREAMED) Envoy waits for this answer before it sends the body; FULL_DUPLEX_STREAMED
    // sends the body regardless, and the answer, which carries the destination, waits for the body.
    if (!this.fullDuplexRequest && answer) this.send({ request_headers: { response: {} } });
  }

  private async onRequestBody(body: HttpBody, answer: boolean): Promise<void> {
    if (this.decided) {
      // A body after the decision (a trailing empty chunk): passed on as it is.
      if (answer) this.send({ request_body: { response: {} } });
      return;
    }
    const bytes = body.body ?? Buffer.alloc(0);
    this.bodyBytes += bytes.length;
    if (this.bodyBytes > this.settings.bodyLimitBytes) {
      this.decided = true;
      if (answer) this.send(immediateResponse(errors.payloadTooLarge(this.settings.bodyLimitBytes)));
      return;
    }
    this.bodyChunks.push(bytes);
    if (body.end_of_stream !== true) {
      // Chunks of a STREAMED body must each be answered; FULL_DUPLEX_STREAMED ones are sent back at the end.
      if (!this.fullDuplexRequest && answer) this.send({ request_body: { response: {} } });
      return;
    }
    await this.decideOnBody(answer, true);
  }

  /**
   * FULL_DUPLEX_STREAMED with trailers: Envoy marks no body chunk as the last one, and the trailers say
   * the body is complete. The answers keep the request's order: headers, body, trailers.
   */
  private async onRequestTrailers(answer: boolean): Promise<void> {
    if (!this.decided && this.fullDuplexRequest) await this.decideOnBody(answer, false);
    if (answer) this.send({ request_trailers: {} });
  }

  /** The whole body is in: pick, and answer as the body mode wants (see the class comment). */
  private async decideOnBody(answer: boolean, endOfStream: boolean): Promise<void> {
    const decision = await this.decide(Buffer.concat(this.bodyChunks));
    if (!answer) return;
    if (decision.kind === 'refused' || !this.fullDuplexRequest) {
      this.answerDecision(decision, 'request_body');
      return;
    }
    this.answerDecision(decision, 'request_headers');
    // The body goes on to the endpoint as it came, chunk by chunk, the last one marked as the end unless
    // trailers follow it.
    const chunks = this.bodyChunks.length > 0 ? this.bodyChunks : [Buffer.alloc(0)];
    chunks.forEach((chunk, index) => {
      this.send({
        request_body: {
          response: {
            body_mutation: {
              streamed_response: { body: chunk, end_of_stream: endOfStream && index === chunks.length - 1 },
            },
          },
        },
      });
    });
  }

  private answerDecision(decision: Decision, phase: 'request_headers' | 'request_body'): void {
    if (decision.kind === 'refused') {
      this.send(immediateResponse(decision.error));
      return;
    }
    const { placement } = decision;
    const { endpoints } = this.settings;
    const destination = [placement.replica, ...placement.fallbacks]
      .map((id) => endpoints.addressOf(id))
      .filter((address): address is string => address !== undefined)
      .join(',');
    this.send({
      [phase]: {
        response: {
          header_mutation: {
            set_headers: [{ header: { key: destinationHeader, raw_value: Buffer.from(destination) } }],
          },
          clear_route_cache: true,
        },
      },
      // The same value in the header and the metadata: the protocol leaves undefined which one a proxy
      // reads when they differ.
      dynamic_metadata: {
        fields: {
          [lbNamespace]: { structValue: { fields: { [destinationHeader]: { stringValue: destination } } } },
        },
      },
    });
  }

  /** Authenticates, then places the request: through the pipeline for a completion, directly otherwise. */
  private async decide(body: Buffer | null): Promise<Decision> {
    this.decided = true;
    let caller: Caller;
    try {
      // A key refused here never reaches the pipeline, as on the HTTP edge: no ledger row for it.
      caller = this.settings.admission.authenticate(this.requestHeaders.get('authorization'));
    } catch (error) {
      return { kind: 'refused', error: toGravityError(error) };
    }
    const eligible = this.eligibleEngines();
    if (eligible.size === 0)
      return {
        kind: 'refused',
        error: errors.noReplicaAvailable(
          'the subset hint',
          'none of the endpoints in the subset hint is one of this picker',
        ),
      };
    const endpoint = completionEndpoint(this.requestHeaders.get(':path'));
    if (body === null || endpoint === null) return this.placeUnmetered(body, eligible);
    return this.placeThroughPipeline(body, endpoint, caller, eligible);
  }

  /** The engines the pick may choose: the EPP's endpoints, narrowed to the subset hint when Envoy sent one. */
  private eligibleEngines(): ReadonlySet<string> {
    const { endpoints } = this.settings;
    if (this.subsetHint === undefined) return endpoints.engineIds;
    const eligible = new Set<string>();
    for (const address of this.subsetHint) {
      const id = endpoints.idOf(address);
      if (id !== undefined) eligible.add(id);
    }
    return eligible;
  }

  /** A request Gravity does not meter (no body, another API): routed by the pool's model, no record. */
  private async placeUnmetered(body: Buffer | null, eligible: ReadonlySet<string>): Promise<Decision> {
    const model = modelNamed(body) ?? this.settings.defaultModel;
    try {
      const placement = await this.settings.gateway.place(
        null,
        { model, input: { kind: 'completion', prompt: '' }, maxTokens: null, features: undefined },
        { tenant: null, serviceTier: 'auto', eligible },
        this.abandoned.signal,
      );
      this.placement = placement;
      void this.responseEnd.then((end) => this.releaseAfter(placement, end));
      return { kind: 'placed', placement };
    } catch (error) {
      return { kind: 'refused', error: toGravityError(asShed(error)) };
    }
  }

  private placeThroughPipeline(
    body: Buffer,
    endpoint: MeteredEndpoint,
    caller: Caller,
    eligible: ReadonlySet<string>,
  ): Promise<Decision> {
    const { gateway, admission } = this.settings;
    return new Promise<Decision>((resolve) => {
      let json: unknown;
      let jsonError: GravityError | null = null;
      try {
        json = JSON.parse(body.toString('utf8'));
      } catch {
        jsonError = errors.invalidRequest('The request body is not valid JSON.');
      }
      const received = receivedFields(json);
      const executor: RequestExecutor = {
        clock: gateway.clock,
        begin: (options) => gateway.begin(options),
        finish: (context) => gateway.finish(context),
        execute: (context, generation, signal) =>
          this.placeAndAwaitResponse(context, generation, eligible, signal),
      };
      const pipeline = new RequestPipeline({
        gateway: executor,
        admission,
        log: (context, error) =>
          this.settings.log('request failed', {
            requestId: context.requestId,
            error: error instanceof Error ? error.message : String(error),
          }),
      });
      void pipeline.run({
        endpoint,
        received,
        caller,
        signal: this.abandoned.signal,
        parse: () => {
          if (jsonError) throw jsonError;
          return requestParsers[endpoint](json);
        },
        renderer: {
          // Nothing reaches the client through the EPP, so a failure keeps its own status in the record.
          committed: false,
          admitted: () => {},
          started: () => resolve({ kind: 'placed', placement: this.placement as Placement }),
          text: () => undefined,
          finished: () => {},
          // Before the placement this is the answer; after it, the response already went its way.
          failed: (failure) => resolve({ kind: 'refused', error: failure.error }),
        },
      });
    });
  }

  /**
   * The pipeline's `execute`: place the request, report it started (the destination goes to Envoy),
   * then wait for the response to end and report its usage as the finish. The endpoint's slot is held
   * until then.
   */
  private async *placeAndAwaitResponse(
    context: RequestContext,
    generation: Omit<GenerationRequest, 'requestId'>,
    eligible: ReadonlySet<string>,
    signal: AbortSignal,
  ): AsyncGenerator<StreamPart> {
    const { gateway } = this.settings;
    let placement: Placement;
    try {
      placement = await gateway.place(
        context,
        generation,
        { tenant: context.tenant, serviceTier: context.serviceTier, eligible },
        signal,
      );
    } catch (error) {
      throw asShed(error);
    }
    this.placement = placement;
    try {
      this.promptTokensEstimate = estimateRequestTokens(generation);
      context.startedAtMs = gateway.clock.nowMs();
      yield { type: 'response-start', promptTokens: null, cachedPromptTokens: null, queueWaitMs: 0 };
      const end = await abortable(this.responseEnd, signal);
      this.releaseAfter(placement, end);
      if (end.servedEngineId !== null) context.engineId = end.servedEngineId;
      context.firstTokenAtMs = end.firstByteAtMs;
      if (end.status >= 400)
        throw new GravityError({
          status: end.status,
          type: end.status >= 500 ? 'server_error' : 'invalid_request_error',
          code: 'upstream_error',
          message: `The model server answered with HTTP ${end.status}.`,
        });
      const usage = this.usageReader.usage(this.promptTokensEstimate);
      context.usage = usage;
      context.finishReason = 'stop';
      context.prefillTokens = usage.promptTokens - usage.cachedPromptTokens;
      context.decodeTokens = usage.completionTokens;
      yield { type: 'finish', finishReason: 'stop', usage };
    } finally {
      placement.release({ kind: 'abandoned' });
    }
  }

  /**
   * What the response says about the pick: an endpoint Envoy fell back from did not serve, and a server
   * error counts against the one that answered it, as the HTTP path's outlier detection counts it.
   */
  private releaseAfter(placement: Placement, end: ResponseEnd): void {
    const servedElsewhere = end.servedEngineId !== null && end.servedEngineId !== placement.replica;
    if (servedElsewhere)
      placement.release({ kind: 'failed', message: `Envoy fell back to ${end.servedEngineId}` });
    else if (end.status >= 500) placement.release({ kind: 'failed', message: `HTTP ${end.status}` });
    else placement.release({ kind: 'finished', firstTokenAtMs: end.firstByteAtMs });
  }

  private onResponseHeaders(headers: HttpHeaders, message: ProcessingRequest, answer: boolean): void {
    this.sawResponse = true;
    this.readServedEndpoint(message.metadata_context?.filter_metadata?.[lbNamespace]);
    for (const header of headers.headers?.headers ?? []) {
      const key = header.key.toLowerCase();
      if (key === ':status') this.responseStatus = Number(headerValue(header)) || 200;
      else if (key === 'content-type') this.usageReader.contentType(headerValue(header));
    }
    if (answer) this.send({ response_headers: { response: {} } });
    if (headers.end_of_stream === true) this.endResponse();
  }

  private onResponseBody(body: HttpBody, message: ProcessingRequest, answer: boolean): void {
    this.sawResponse = true;
    this.readServedEndpoint(message.metadata_context?.filter_metadata?.[lbNamespace]);
    const bytes = body.body ?? Buffer.alloc(0);
    this.usageReader.chunk(bytes);
    const last = body.end_of_stream === true;
    if (answer)
      this.send({
        response_body: {
          // FULL_DUPLEX_STREAMED: the chunk reaches the client only if it is sent back.
          response: this.fullDuplexResponse
            ? { body_mutation: { streamed_response: { body: bytes, end_of_stream: last } } }
            : {},
        },
      });
    if (last) this.endResponse();
  }

  private readServedEndpoint(metadata: StructMessage | undefined): void {
    const served = metadata?.fields?.[servedEndpointKey]?.stringValue;
    if (served === undefined || served === '') return;
    // A list when Envoy reports several attempts: the last one is the one that served.
    const address = served.split(',').pop()?.trim() ?? '';
    this.servedEngineId = this.settings.endpoints.idOf(address) ?? null;
  }

  private endResponse(): void {
    if (this.responseEnded) return;
    this.responseEnded = true;
    this.resolveResponseEnd?.({
      status: this.responseStatus,
      firstByteAtMs: this.firstByteAtMs,
      servedEngineId: this.servedEngineId,
    });
  }
}

/** The ImmediateResponse for an error: its status and an OpenAI-shaped JSON body. */
export function immediateResponse(error: GravityError): ProcessingResponse {
  const headers = [
    { header: { key: 'content-type', raw_value: Buffer.from('application/json') } },
    ...Object.entries(error.headers).map(([key, value]) => ({
      header: { key, raw_value: Buffer.from(value) },
    })),
  ];
  return {
    immediate_response: {
      status: { code: error.status },
      headers: { set_headers: headers },
      body: Buffer.from(JSON.stringify(error.toBody())),
      details: error.code ?? 'gravity_epp',
    },
  };
}

/**
 * The protocol has two refusals: 503 when no endpoint is ready, 429 when the request is shed. A request
 * that waited in a queue past its tier's bound was shed under load, so the EPP answers (and records) it
 * as a 429, although the HTTP API, which has no fallback endpoints to offer, answers it with a 503.
 */
function asShed(error: unknown): unknown {
  if (!(error instanceof GravityError) || error.code !== 'overloaded') return error;
  return new GravityError({
    status: 429,
    type: 'rate_limit_error',
    code: error.code,
    message: error.message,
    headers: error.headers,
  });
}

type MeteredEndpoint = 'chat.completions' | 'completions' | 'embeddings';

/** The HTTP API's parser for each endpoint the EPP meters: the same validation on both paths. */
const requestParsers: Record<MeteredEndpoint, (body: unknown) => ParsedRequest> = {
  'chat.completions': parseChatCompletionRequest,
  completions: parseCompletionRequest,
  embeddings: parseEmbeddingRequest,
};

/**
 * The pipeline endpoint for an OpenAI path Gravity meters; null for any other. The Responses API is
 * placed but not metered: a model server's own `/v1/responses` keeps its conversations
 * (`previous_response_id`) where Gravity cannot read them, so its prompt cannot be judged here.
 */
function completionEndpoint(path: string | undefined): MeteredEndpoint | null {
  const bare = path?.split('?')[0]?.replace(/\/+$/, '');
  if (bare === '/v1/chat/completions' || bare === '/chat/completions') return 'chat.completions';
  if (bare === '/v1/completions' || bare === '/completions') return 'completions';
  if (bare === '/v1/embeddings' || bare === '/embeddings') return 'embeddings';
  return null;
}

/** What the record says before validation: the body's model and stream flag, if it has them. */
function receivedFields(json: unknown): { model: string; stream: boolean } {
  const body = json !== null && typeof json === 'object' ? (json as Record<string, unknown>) : {};
  return {
    model: typeof body.model === 'string' ? body.model : '',
    stream: body.stream === true,
  };
}

function modelNamed(body: Buffer | null): string | null {
  if (body === null || body.length === 0) return null;
  try {
    const model = receivedFields(JSON.parse(body.toString('utf8'))).model;
    return model === '' ? null : model;
  } catch {
    return null;
  }
}

/** `promise`, or the signal's reason once it aborts first. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
