import type { TokenUsage } from '../../core/stream-parts.js';

/**
 * The token counts an upstream reported, as read from its wire shape (chat's usage chunk, the Responses
 * API's terminal usage, an embeddings answer), before any check: the upstream is another party.
 */
export interface ReportedTokenCounts {
  promptTokens: unknown;
  /** Absent (undefined or null) means none were cached. */
  cachedPromptTokens?: unknown;
  completionTokens: unknown;
  /** Absent means the upstream did not say. */
  reasoningTokens?: unknown;
}

/**
 * An upstream's usage as Gravity's, or null when any figure is unusable: every count a non-negative safe
 * integer, cached ≤ prompt and reasoning ≤ completion. A fractional, negative, absurd (1e300) or
 * non-numeric count is not trusted, and neither is the rest of that usage (one bad figure says the report
 * is broken): the caller meters with Gravity's own count (`source: 'counted'`) instead. This keeps the
 * ledger's counts whole and its prices non-negative whatever an upstream sends.
 */
export function validatedUpstreamUsage(reported: ReportedTokenCounts): TokenUsage | null {
  const { promptTokens, completionTokens } = reported;
  const cachedPromptTokens = reported.cachedPromptTokens ?? 0;
  const reasoningTokens = reported.reasoningTokens ?? undefined;
  if (!isTokenCount(promptTokens) || !isTokenCount(completionTokens) || !isTokenCount(cachedPromptTokens))
    return null;
  if (cachedPromptTokens > promptTokens) return null;
  if (
    reasoningTokens !== undefined &&
    !(isTokenCount(reasoningTokens) && reasoningTokens <= completionTokens)
  )
    return null;
  return {
    promptTokens,
    cachedPromptTokens,
    completionTokens,
    ...(reasoningTokens === undefined ? {} : { reasoningTokens }),
    source: 'upstream',
  };
}

/** Whole, non-negative, and small enough to add up exactly (a count of tokens, not a float's accident). */
function isTokenCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}
