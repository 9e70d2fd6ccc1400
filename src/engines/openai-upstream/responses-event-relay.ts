import { errors, upstreamErrorFields } from '../../core/errors.js';
import {
  type FinishReason,
  type TokenUsage,
  terminalResponseEvents,
  type UpstreamEvent,
} from '../../core/stream-parts.js';
import { validatedUpstreamUsage } from './upstream-usage.js';

/**
 * Reads an upstream's Responses API event stream (`POST /v1/responses`, `stream: true`) for relaying:
 * each event goes on as the upstream sent it (its JSON text untouched, see UpstreamEvent) and is parsed
 * only to meter it. Nothing is converted: reasoning items, refusals, annotations, logprobs and events no
 * one has invented yet reach the client as they came; the Responses renderer rewrites the few fields
 * Gravity owns (src/responses/response-relay.ts).
 *
 * Metering:
 * - one token per output delta event: `response.output_text.delta`, `response.refusal.delta`,
 *   `response.function_call_arguments.delta`, `response.reasoning_text.delta` and
 *   `response.reasoning_summary_text.delta` (all of them are generated tokens: OpenAI's
 *   `output_tokens` includes `reasoning_tokens`), until the terminal event's usage says otherwise;
 * - usage from the terminal `response.completed` / `response.incomplete`, counted when it has none;
 * - `response.failed` and `error` are the upstream's failure: a 502, which a started stream ends with
 *   Gravity's `response.failed`.
 * Parsed leniently, like every upstream stream: servers differ in the optional fields they send, and an
 * event Gravity does not know is relayed, not refused.
 */
const outputDeltaEvents = new Set([
  'response.output_text.delta',
  'response.refusal.delta',
  'response.function_call_arguments.delta',
  'response.reasoning_text.delta',
  'response.reasoning_summary_text.delta',
]);

/** As the upstream sent it: checked before use (validatedUpstreamUsage). */
interface UpstreamResponsesUsage {
  input_tokens?: unknown;
  output_tokens?: unknown;
  input_tokens_details?: { cached_tokens?: unknown } | null;
  output_tokens_details?: { reasoning_tokens?: unknown } | null;
}

export class ResponsesEventRelay {
  /** Output delta events so far (one token each until the upstream's usage says otherwise). */
  outputEvents = 0;
  finishReason: FinishReason = 'stop';
  private usage: UpstreamResponsesUsage | null = null;
  /** Set once `response.completed` or `response.incomplete` arrived. */
  done = false;

  constructor(private readonly engineId: string) {}

  /**
   * The event to relay, or null for data that is not a JSON object (keep-alive junk, a `[DONE]` some
   * servers add). `tokens` is 1 for an output delta. Throws the upstream's failure.
   */
  read(data: string): { event: UpstreamEvent; tokens: 0 | 1 } | null {
    let parsed: { type?: unknown; [key: string]: unknown };
    try {
      parsed = JSON.parse(data) as typeof parsed;
    } catch {
      return null;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return null;
    const type = parsed.type;
    const event: UpstreamEvent = { json: data, chunk: parsed };
    if (typeof type !== 'string') return { event, tokens: 0 };
    if (outputDeltaEvents.has(type)) {
      // An empty delta stands for no token (servers send one to open a part).
      if (typeof parsed.delta === 'string' && parsed.delta === '') return { event, tokens: 0 };
      this.outputEvents++;
      return { event, tokens: 1 };
    }
    if (terminalResponseEvents.has(type)) {
      // The terminal Response object is the answer and the stored response: without it there is none.
      if (parsed.response === null || typeof parsed.response !== 'object' || Array.isArray(parsed.response))
        throw errors.upstream({
          status: 502,
          message: `upstream '${this.engineId}' sent ${type} without its response object`,
        });
      const response = parsed.response as {
        usage?: UpstreamResponsesUsage | null;
        incomplete_details?: { reason?: string } | null;
        output?: Array<{ type?: unknown }> | null;
      };
      this.usage = response.usage ?? null;
      if (type === 'response.incomplete')
        this.finishReason =
          response.incomplete_details?.reason === 'content_filter' ? 'content_filter' : 'length';
      else if (
        Array.isArray(response.output) &&
        response.output.some((item) => item?.type === 'function_call')
      )
        this.finishReason = 'tool_calls';
      this.done = true;
      return { event, tokens: 0 };
    }
    if (type === 'response.failed' || type === 'error') {
      const failure = type === 'error' ? parsed : (parsed.response as { error?: unknown } | null)?.error;
      throw errors.upstream({
        status: 502,
        message: `upstream '${this.engineId}': ${upstreamErrorFields(failure).message ?? 'response failed'}`,
      });
    }
    return { event, tokens: 0 };
  }

  /**
   * The upstream's usage, when its terminal event had one whose figures hold up (validatedUpstreamUsage),
   * as Gravity's; null tells the caller to count.
   */
  reportedUsage(): TokenUsage | null {
    const usage = this.usage;
    if (!usage) return null;
    return validatedUpstreamUsage({
      promptTokens: usage.input_tokens,
      cachedPromptTokens: usage.input_tokens_details?.cached_tokens,
      completionTokens: usage.output_tokens,
      reasoningTokens: usage.output_tokens_details?.reasoning_tokens,
    });
  }
}
