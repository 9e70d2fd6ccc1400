import type { MeteredFigures, RequestContext } from '../core/request-context.js';
import type { ServiceTier } from '../core/service-tiers.js';
import type { FinishPart, TokenUsage, UpstreamChunkPart, WireChunkChoice } from '../core/stream-parts.js';
import { type OwnedFields, rewriteOwnedFields } from './relay-rewrite.js';

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
    completion_tokens_details: { reasoning_tokens: usage.reasoningTokens ?? 0 },
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

export function responseId(context: RequestContext): string {
  return context.endpoint === 'chat.completions'
    ? `chatcmpl-${context.requestId}`
    : `cmpl-${context.requestId}`;
}

/** Encodes one response's SSE events. One instance per streamed response. */
export class SseChunkEncoder {
  private readonly head: string;
  private readonly isChat: boolean;
  private readonly includeUsage: boolean;
  /** What a relayed upstream chunk's owned fields become. */
  private readonly ownedFields: OwnedFields;

  /** `created` and `system_fingerprint` of the last relayed chunk: the usage chunk repeats them. */
  private relayedCreated: unknown;
  private relayedFingerprint: unknown;
  private readonly object: string;

  constructor(context: RequestContext, includeUsage: boolean) {
    this.isChat = context.endpoint === 'chat.completions';
    this.includeUsage = includeUsage;
    this.object = this.isChat ? 'chat.completion.chunk' : 'text_completion';
    const id = JSON.stringify(responseId(context));
    const model = JSON.stringify(context.model);
    const tier = `"${echoedServiceTier(context.serviceTier)}"`;
    this.ownedFields = [
      ['id', id],
      ['model', model],
      ['service_tier', tier],
    ];
    this.head = this.headWith(Math.floor(context.receivedAtEpochMs / 1000), null);
  }

  /** The chunk's opening fields, up to `"choices"`. */
  private headWith(created: unknown, fingerprint: unknown): string {
    const [id, model, tier] = this.ownedFields.map(([, value]) => value);
    return (
      `data: {"id":${id},"object":"${this.object}",` +
      `"created":${JSON.stringify(created ?? null)},"model":${model},` +
      `"service_tier":${tier},"system_fingerprint":${JSON.stringify(fingerprint ?? null)},`
    );
  }

  /** OpenAI's chat streams open with an empty assistant delta; completions streams have no opener. */
  opening(): string | null {
    if (!this.isChat) return null;
    return `${this.head}"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${this.usageNull()}}\n\n`;
  }

  /** A choice's opener when an engine streams several choices (chat only): the role, empty content. */
  choiceOpening(index: number): string {
    return `${this.head}"choices":[{"index":${index},"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${this.usageNull()}}\n\n`;
  }

  get chat(): boolean {
    return this.isChat;
  }

  // Hot path: once per text chunk.
  text(text: string): string {
    const encoded = JSON.stringify(text);
    return this.isChat
      ? `${this.head}"choices":[{"index":0,"delta":{"content":${encoded}},"logprobs":null,"finish_reason":null}]${this.usageNull()}}\n\n`
      : `${this.head}"choices":[{"text":${encoded},"index":0,"logprobs":null,"finish_reason":null}]${this.usageNull()}}\n\n`;
  }

  /** One choice's chunk as an engine built it (tool-call deltas, logprobs, several choices). */
  choice(choice: WireChunkChoice): string {
    return `${this.head}"choices":[${JSON.stringify(choice)}]${this.usageNull()}}\n\n`;
  }

  /** An upstream's chunks as it sent them, with only the fields Gravity owns rewritten. */
  relay(part: UpstreamChunkPart): string {
    let out = '';
    for (const event of part.events) {
      const chunk = event.chunk;
      this.relayedCreated = chunk.created;
      this.relayedFingerprint = chunk.system_fingerprint;
      out += `data: ${rewriteOwnedFields(event.json, this.ownedFields, (key) => key in chunk)}\n\n`;
    }
    return out;
  }

  finish(part: FinishPart, metered: MeteredFigures | null = null): string {
    const { finishReason, usage } = part;
    const last = part.choicesFinished
      ? ''
      : this.isChat
        ? `${this.head}"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"${finishReason}"}]${this.usageNull()}}\n\n`
        : `${this.head}"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"${finishReason}"}]${this.usageNull()}}\n\n`;
    // After a relay, the usage chunk repeats the upstream's `created` and fingerprint, as its own would.
    const usageHead =
      this.relayedCreated === undefined
        ? this.head
        : this.headWith(this.relayedCreated, this.relayedFingerprint);
    const usageChunk = this.includeUsage
      ? `${usageHead}"choices":[],"usage":${JSON.stringify(usageObject(usage, metered))}}\n\n`
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
  choices: unknown[];
  usage: TokenUsage;
  metered: MeteredFigures | null;
  systemFingerprint?: unknown;
}) {
  const { context, choices, usage, metered } = options;
  return {
    id: responseId(context),
    object: context.endpoint === 'chat.completions' ? 'chat.completion' : 'text_completion',
    created: Math.floor(context.receivedAtEpochMs / 1000),
    model: context.model,
    choices,
    usage: usageObject(usage, metered),
    service_tier: echoedServiceTier(context.serviceTier),
    system_fingerprint: options.systemFingerprint ?? null,
  };
}
