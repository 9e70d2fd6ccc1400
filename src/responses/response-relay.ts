import { echoedServiceTier } from '../api/openai-wire-format.js';
import { type OwnedFields, rewriteOwnedFields, topLevelValueSpan } from '../api/relay-rewrite.js';
import type { MeteredFigures, RequestContext } from '../core/request-context.js';
import {
  type ContentPart,
  type FinishPart,
  terminalResponseEvents,
  type UpstreamChunkPart,
  type UpstreamEvent,
} from '../core/stream-parts.js';
import { responseIdOf, responseUsage } from './response-object.js';
import type { ResponseEcho } from './responses-request.js';

/** An upstream's Responses events, relayed (the `openai-upstream` engine with `responsesApi: true`). */
export function isRelayedResponses(part: ContentPart): part is UpstreamChunkPart {
  return part.type === 'upstream-chunk' && part.protocol === 'responses';
}

/** A relayed Response object's fields, the object parsed and its JSON text. */
export interface RelayedResponse {
  /** `response.completed` or `response.incomplete`. */
  type: string;
  /** The whole event as it goes to the client, fields Gravity owns rewritten. */
  eventJson: string;
  /** The Response object inside it, as JSON text and parsed (what is stored and answered). */
  responseJson: string;
  response: Record<string, unknown>;
}

/**
 * Relays an upstream's Responses API events (parts with `protocol: 'responses'`) to the client: every
 * event as the upstream sent it, byte for byte, except the fields Gravity owns inside the `response`
 * object of lifecycle events (`response.created`, `in_progress`, `completed`, `incomplete`, …): its
 * `id` (`resp_<request id>`, so Gravity's stored-response routes find it), `model` (Gravity's model
 * name), `service_tier`, and `previous_response_id` and `store` as the client sent them (the upstream
 * saw the earlier turns expanded and `store: false`). Item ids, sequence numbers and every other field
 * stay the upstream's: Gravity inserts and drops no event on a stream that succeeds.
 *
 * The terminal event is held back: it goes out in `finish`, after the ledger commit (ADR 0001), with
 * Gravity's metered figures added as `usage.gravity`. It is also the stored and the non-streamed
 * Response: the upstream's whole `output` (reasoning items, refusals, annotations, logprobs).
 *
 * Rewrites are span edits (relay-rewrite.ts), not a parse and re-serialise: a delta event is written as
 * its own text, which keeps the per-token path to a property check and a string concatenation.
 */
export class ResponseRelay {
  /** Gravity's fields of the Response object, as values (the object) and JSON-encoded (the span edits). */
  private readonly owned: ReadonlyArray<readonly [key: string, value: unknown]>;
  private readonly fields: OwnedFields;
  private terminal: UpstreamEvent | null = null;
  /** The items finished so far (`response.output_item.done`), for a `response.failed` after them. */
  private readonly doneItems = new Map<number, unknown>();
  private lastSequenceNumber = -1;

  constructor(context: RequestContext, echo: ResponseEcho) {
    this.owned = [
      ['id', responseIdOf(context.requestId)],
      ['model', context.model],
      ['service_tier', echoedServiceTier(context.serviceTier)],
      ['previous_response_id', echo.previousResponseId],
      ['store', echo.store],
    ];
    this.fields = this.owned.map(([key, value]) => [key, JSON.stringify(value)] as const);
  }

  /** The part's events as SSE text, the terminal event held back. */
  encode(part: UpstreamChunkPart): string {
    let out = '';
    for (const event of part.events) {
      const json = this.relayedText(event);
      if (json === null) continue;
      const type = event.chunk.type;
      // The `event:` line is the type, as OpenAI writes it; a type that could break the framing is left out.
      out +=
        typeof type === 'string' && !/[\r\n]/.test(type)
          ? `event: ${type}\ndata: ${json}\n\n`
          : `data: ${json}\n\n`;
    }
    return out;
  }

  /**
   * Notes a part's events without encoding them (a non-streamed answer, a batch line): only the terminal
   * event's text is used, so lifecycle events are not rewritten.
   */
  add(part: UpstreamChunkPart): void {
    for (const event of part.events) this.note(event);
  }

  /** The sequence number for an event Gravity adds after the upstream's (its `response.failed`). */
  nextSequenceNumber(): number {
    return this.lastSequenceNumber + 1;
  }

  /** The items the upstream finished so far, in output order. */
  items(): unknown[] {
    // A map, not a sparse array: an upstream's output_index is not trusted to be small.
    return [...this.doneItems].sort(([a], [b]) => a - b).map(([, item]) => item);
  }

  /**
   * The terminal event and its Response object with Gravity's fields, the usage carrying Gravity's
   * metered figures: the upstream's usage with `gravity` added, or Gravity's own counts when the
   * upstream sent none. Null when the upstream sent no terminal event (the engine then failed).
   */
  finish(part: FinishPart, metered: MeteredFigures | null): RelayedResponse | null {
    const terminal = this.terminal;
    if (terminal === null) return null;
    const span = topLevelValueSpan(terminal.json, 'response');
    const parsed = terminal.chunk.response as Record<string, unknown> | undefined;
    if (span === null || parsed === null || typeof parsed !== 'object') return null;
    // The same edits twice, on the text (what is sent and stored) and on the engine's parsed object (what
    // a batch line carries): no second parse of the upstream's Response, no re-encoding of it.
    let responseJson = this.rewrite(terminal.json.slice(span[0], span[1]), parsed);
    let response = withOwnedFields(parsed, this.owned);
    const usage = responseUsage(part.usage, metered);
    const upstreamUsage = parsed.usage as Record<string, unknown> | null | undefined;
    const usageSpan = topLevelValueSpan(responseJson, 'usage');
    if (part.usage.source === 'upstream' && upstreamUsage && typeof upstreamUsage === 'object' && usageSpan) {
      if ('gravity' in usage) {
        const withGravity = rewriteOwnedFields(
          responseJson.slice(usageSpan[0], usageSpan[1]),
          [['gravity', JSON.stringify(usage.gravity)]],
          (key) => Object.hasOwn(upstreamUsage, key),
        );
        responseJson = responseJson.slice(0, usageSpan[0]) + withGravity + responseJson.slice(usageSpan[1]);
        response.usage = withOwnedFields(upstreamUsage, [['gravity', usage.gravity]]);
      }
    } else {
      responseJson = rewriteOwnedFields(responseJson, [['usage', JSON.stringify(usage)]], (key) =>
        Object.hasOwn(parsed, key),
      );
      response = withOwnedFields(response, [['usage', usage]]);
    }
    return {
      type: String(terminal.chunk.type),
      eventJson: terminal.json.slice(0, span[0]) + responseJson + terminal.json.slice(span[1]),
      responseJson,
      response,
    };
  }

  /** Notes one event; returns its text to relay, or null for the terminal event (held). */
  private relayedText(event: UpstreamEvent): string | null {
    if (this.note(event)) return null;
    // Hot path (deltas): no `response`, relayed as received.
    const response = event.chunk.response;
    if (response === undefined || response === null || typeof response !== 'object') return event.json;
    const span = topLevelValueSpan(event.json, 'response');
    if (span === null) return event.json;
    const rewritten = this.rewrite(event.json.slice(span[0], span[1]), response as Record<string, unknown>);
    return event.json.slice(0, span[0]) + rewritten + event.json.slice(span[1]);
  }

  /** Notes what an event says about the stream (sequence, finished items); true for the terminal event. */
  private note(event: UpstreamEvent): boolean {
    const chunk = event.chunk as {
      type?: unknown;
      response?: unknown;
      sequence_number?: unknown;
      output_index?: unknown;
      item?: unknown;
    };
    if (typeof chunk.sequence_number === 'number') this.lastSequenceNumber = chunk.sequence_number;
    if (chunk.response === undefined) {
      if (chunk.type === 'response.output_item.done' && typeof chunk.output_index === 'number')
        this.doneItems.set(chunk.output_index, chunk.item);
      return false;
    }
    if (typeof chunk.type === 'string' && terminalResponseEvents.has(chunk.type)) {
      this.terminal = event;
      return true;
    }
    return false;
  }

  private rewrite(responseJson: string, parsed: Record<string, unknown>): string {
    return rewriteOwnedFields(responseJson, this.fields, (key) => Object.hasOwn(parsed, key));
  }
}

/**
 * A copy of `object` with the owned fields set, as `rewriteOwnedFields` edits its text: a field present
 * keeps its place, a missing one comes first; so the object and the text list their keys alike.
 */
function withOwnedFields(
  object: Record<string, unknown>,
  owned: ReadonlyArray<readonly [key: string, value: unknown]>,
): Record<string, unknown> {
  const missing: Record<string, unknown> = {};
  for (const [key, value] of owned) if (!Object.hasOwn(object, key)) missing[key] = value;
  // Spread, not Object.assign: an upstream's own `__proto__` key stays a plain property.
  const copy: Record<string, unknown> = { ...missing, ...object };
  for (const [key, value] of owned) copy[key] = value;
  return copy;
}
