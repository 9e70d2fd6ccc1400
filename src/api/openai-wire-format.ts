import type { MeteredFigures, RequestContext } from '../core/request-context.js';
import type { ServiceTier } from '../core/service-tiers.js';
import type { FinishReason, TokenUsage } from '../core/stream-parts.js';

/**
 * OpenAI's response shapes, built by hand where they are on the per-token path: a stream chunk is a
 * precomputed prefix, the JSON-encoded text, and a precomputed suffix, so each token costs one
 * `JSON.stringify` of its text and no object allocation.
 */

/** OpenAI answers `auto` with the tier it actually used; without tiers that is `default`. */
export function echoedServiceTier(requested: ServiceTier): Exclude<ServiceTier, 'auto'> {
  return requested === 'auto' ? 'default' : requested;
}

/**
 * OpenAI's usage object, plus Gravity's metered figures under `gravity` (an extension field: the SDK keeps
 * unknown fields, so clients can read `usage.gravity.energy_joules`).
 */
export function usageObject(usage: TokenUsage, metered: MeteredFigures | null = null) {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedPromptTokens },
    completion_tokens_details: { reasoning_tokens: 0 },
    ...(metered
      ? {
          gravity: {
            usage_source: usage.source,
            energy_joules: metered.energyJoules,
            energy_source: metered.energySource,
            cost_usd: metered.costUsd,
            cost_source: metered.costSource,
            price_usd: metered.priceUsd,
            margin_usd: metered.marginUsd,
            carbon_grams: metered.carbonGrams,
          },
        }
      : {}),
  };
}

function responseId(context: RequestContext): string {
  return context.endpoint === 'chat.completions'
    ? `chatcmpl-${context.requestId}`
    : `cmpl-${context.requestId}`;
}

/** Encodes one response's SSE events. One instance per streamed response. */
export class SseChunkEncoder {
  private readonly head: string;
  private readonly isChat: boolean;
  private readonly includeUsage: boolean;

  constructor(context: RequestContext, includeUsage: boolean) {
    this.isChat = context.endpoint === 'chat.completions';
    this.includeUsage = includeUsage;
    const object = this.isChat ? 'chat.completion.chunk' : 'text_completion';
    this.head =
      `data: {"id":${JSON.stringify(responseId(context))},"object":"${object}",` +
      `"created":${Math.floor(context.receivedAtEpochMs / 1000)},"model":${JSON.stringify(context.model)},` +
      `"service_tier":"${echoedServiceTier(context.serviceTier)}","system_fingerprint":null,`;
  }

  /** OpenAI's chat streams open with an empty assistant delta; completions streams have no opener. */
  opening(): string | null {
    if (!this.isChat) return null;
    return `${this.head}"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${this.usageNull()}}\n\n`;
  }

  // Hot path: once per text chunk.
  text(text: string): string {
    const encoded = JSON.stringify(text);
    return this.isChat
      ? `${this.head}"choices":[{"index":0,"delta":{"content":${encoded}},"logprobs":null,"finish_reason":null}]${this.usageNull()}}\n\n`
      : `${this.head}"choices":[{"text":${encoded},"index":0,"logprobs":null,"finish_reason":null}]${this.usageNull()}}\n\n`;
  }

  finish(
    finishReason: FinishReason,
    usage: TokenUsage | null,
    metered: MeteredFigures | null = null,
  ): string {
    const last = this.isChat
      ? `${this.head}"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"${finishReason}"}]${this.usageNull()}}\n\n`
      : `${this.head}"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"${finishReason}"}]${this.usageNull()}}\n\n`;
    const usageChunk =
      this.includeUsage && usage
        ? `${this.head}"choices":[],"usage":${JSON.stringify(usageObject(usage, metered))}}\n\n`
        : '';
    return `${last}${usageChunk}data: [DONE]\n\n`;
  }

  private usageNull(): string {
    // With include_usage, OpenAI sends `"usage":null` on every chunk before the usage chunk.
    return this.includeUsage ? ',"usage":null' : '';
  }
}

export function completionResponseBody(options: {
  context: RequestContext;
  text: string;
  finishReason: FinishReason;
  usage: TokenUsage;
  metered: MeteredFigures | null;
}) {
  const { context, text, finishReason, usage, metered } = options;
  const common = {
    id: responseId(context),
    created: Math.floor(context.receivedAtEpochMs / 1000),
    model: context.model,
    service_tier: echoedServiceTier(context.serviceTier),
    system_fingerprint: null,
  };
  if (context.endpoint === 'chat.completions') {
    return {
      ...common,
      object: 'chat.completion',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: text, refusal: null },
          logprobs: null,
          finish_reason: finishReason,
        },
      ],
      usage: usageObject(usage, metered),
    };
  }
  return {
    ...common,
    object: 'text_completion',
    choices: [{ text, index: 0, logprobs: null, finish_reason: finishReason }],
    usage: usageObject(usage, metered),
  };
}
