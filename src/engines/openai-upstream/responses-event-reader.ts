import { errors } from '../../core/errors.js';
import type { ContentPart, FinishReason, TokenUsage } from '../../core/stream-parts.js';

/**
 * Reads an upstream's Responses API event stream (`POST /v1/responses`, `stream: true`) as Gravity's
 * content parts: output text as `text-delta`, function calls as chat-shaped tool-call `choice-delta`s,
 * which the Responses renderer turns back into items under Gravity's own ids, sequence numbers and
 * stored response. Parsed leniently like every upstream stream: unknown events (reasoning summaries,
 * keep-alives) are skipped, a missing optional field does not fail the response.
 */
export class ResponsesEventReader {
  /** Function-call items by the upstream's item id → their chat tool-call index. */
  private readonly toolCallIndex = new Map<string, number>();
  /** Content events so far (one token each until the upstream's usage says otherwise). */
  contentEvents = 0;
  finishReason: FinishReason = 'stop';
  usage: {
    input_tokens?: number;
    output_tokens?: number;
    input_tokens_details?: { cached_tokens?: number } | null;
    output_tokens_details?: { reasoning_tokens?: number } | null;
  } | null = null;
  /** Set once `response.completed` or `response.incomplete` arrived. */
  done = false;

  constructor(private readonly engineId: string) {}

  /** The part one event stands for, or null when it carries nothing Gravity renders. */
  read(data: string): ContentPart | null {
    let event: { type?: unknown; [key: string]: unknown };
    try {
      event = JSON.parse(data) as typeof event;
    } catch {
      return null;
    }
    if (event === null || typeof event !== 'object') return null;
    switch (event.type) {
      case 'response.output_text.delta': {
        if (typeof event.delta !== 'string' || event.delta === '') return null;
        this.contentEvents++;
        return { type: 'text-delta', text: event.delta, tokens: 1 };
      }
      case 'response.output_item.added': {
        const item = event.item as
          | { type?: string; id?: string; call_id?: string; name?: string }
          | undefined;
        if (item?.type !== 'function_call') return null;
        const index = this.toolCallIndex.size;
        this.toolCallIndex.set(item.id ?? String(index), index);
        this.finishReason = 'tool_calls';
        return {
          type: 'choice-delta',
          choice: {
            index: 0,
            delta: {
              tool_calls: [
                {
                  index,
                  id: item.call_id ?? '',
                  type: 'function',
                  function: { name: item.name ?? '', arguments: '' },
                },
              ],
            },
            finish_reason: null,
          },
          tokens: 0,
        };
      }
      case 'response.function_call_arguments.delta': {
        const index = this.toolCallIndex.get(String(event.item_id));
        if (index === undefined || typeof event.delta !== 'string' || event.delta === '') return null;
        this.contentEvents++;
        return {
          type: 'choice-delta',
          choice: {
            index: 0,
            delta: { tool_calls: [{ index, function: { arguments: event.delta } }] },
            finish_reason: null,
          },
          tokens: 1,
        };
      }
      case 'response.completed':
      case 'response.incomplete': {
        const response = event.response as
          | { usage?: ResponsesEventReader['usage']; incomplete_details?: { reason?: string } | null }
          | undefined;
        this.usage = response?.usage ?? null;
        const reason = response?.incomplete_details?.reason;
        if (event.type === 'response.incomplete')
          this.finishReason = reason === 'content_filter' ? 'content_filter' : 'length';
        this.done = true;
        return null;
      }
      case 'response.failed':
      case 'error': {
        const failure =
          event.type === 'error'
            ? (event as { message?: unknown })
            : ((event.response as { error?: { message?: unknown } } | undefined)?.error ?? {});
        throw errors.upstream({
          status: 502,
          message: `upstream '${this.engineId}': ${typeof failure.message === 'string' ? failure.message : 'response failed'}`,
        });
      }
      default:
        return null;
    }
  }

  /** The upstream's usage, when it sent one, as Gravity's. */
  reportedUsage(): TokenUsage | null {
    const usage = this.usage;
    if (!usage || typeof usage.input_tokens !== 'number' || typeof usage.output_tokens !== 'number')
      return null;
    const reasoningTokens = usage.output_tokens_details?.reasoning_tokens;
    return {
      promptTokens: usage.input_tokens,
      cachedPromptTokens: usage.input_tokens_details?.cached_tokens ?? 0,
      completionTokens: usage.output_tokens,
      ...(typeof reasoningTokens === 'number' ? { reasoningTokens } : {}),
      source: 'upstream',
    };
  }
}
