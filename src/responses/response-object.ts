import { echoedServiceTier, usageObject } from '../api/openai-wire-format.js';
import type { MeteredFigures, RequestContext } from '../core/request-context.js';
import type { FinishReason, TokenUsage } from '../core/stream-parts.js';
import type { OutputItem } from './response-output.js';
import type { ResponseEcho } from './responses-request.js';

/** A response's id: `resp_` and the request id, so the ledger record and the stored response match. */
export function responseIdOf(requestId: string): string {
  return `resp_${requestId}`;
}

export type ResponseStatus = 'in_progress' | 'completed' | 'incomplete' | 'failed';

/** Why a response is incomplete, from the engine's finish reason; null when it completed. */
export function incompleteReason(finishReason: FinishReason): string | null {
  if (finishReason === 'length') return 'max_output_tokens';
  if (finishReason === 'content_filter') return 'content_filter';
  return null;
}

/**
 * OpenAI's usage object for responses, with Gravity's metered figures under `gravity` as chat responses
 * carry them (usage_source, energy_joules, cost_usd …).
 */
export function responseUsage(usage: TokenUsage, metered: MeteredFigures | null) {
  const chat = usageObject(usage, metered);
  return {
    input_tokens: usage.promptTokens,
    input_tokens_details: { cached_tokens: usage.cachedPromptTokens },
    output_tokens: usage.completionTokens,
    output_tokens_details: { reasoning_tokens: usage.reasoningTokens ?? 0 },
    total_tokens: usage.promptTokens + usage.completionTokens,
    ...('gravity' in chat ? { gravity: chat.gravity } : {}),
  };
}

/** The Response object, in every state: created (no output yet), finished, or failed. */
export function responseObject(options: {
  context: RequestContext;
  echo: ResponseEcho;
  status: ResponseStatus;
  /** Gravity's own items (response-output.ts), or an upstream's as it sent them (response-relay.ts). */
  output: readonly OutputItem[] | readonly unknown[];
  incompleteReason?: string | null;
  usage?: TokenUsage | null;
  metered?: MeteredFigures | null;
  error?: { code: string; message: string } | null;
  completedAtSeconds?: number | null;
}): Record<string, unknown> {
  const { context, echo } = options;
  return {
    id: responseIdOf(context.requestId),
    object: 'response',
    created_at: Math.floor(context.receivedAtEpochMs / 1000),
    status: options.status,
    background: false,
    completed_at: options.completedAtSeconds ?? null,
    error: options.error ?? null,
    incomplete_details: options.incompleteReason ? { reason: options.incompleteReason } : null,
    instructions: echo.instructions,
    max_output_tokens: echo.maxOutputTokens,
    max_tool_calls: null,
    model: context.model,
    output: options.output,
    parallel_tool_calls: echo.parallelToolCalls,
    previous_response_id: echo.previousResponseId,
    prompt_cache_key: echo.promptCacheKey,
    reasoning: echo.reasoning,
    safety_identifier: echo.safetyIdentifier,
    service_tier: echoedServiceTier(context.serviceTier),
    store: echo.store,
    temperature: echo.temperature,
    text: echo.text,
    tool_choice: echo.toolChoice,
    tools: echo.tools,
    top_logprobs: echo.topLogprobs,
    top_p: echo.topP,
    truncation: echo.truncation,
    usage: options.usage ? responseUsage(options.usage, options.metered ?? null) : null,
    user: echo.user,
    metadata: echo.metadata,
  };
}

/** When the response finished, in Unix seconds: its arrival plus the time it took on the request's clock. */
export function completedAtSeconds(context: RequestContext): number {
  const tookMs =
    (context.finishedAtMs ?? context.lastTokenAtMs ?? context.receivedAtMs) - context.receivedAtMs;
  return Math.floor((context.receivedAtEpochMs + tookMs) / 1000);
}
