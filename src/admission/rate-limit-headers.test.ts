import { describe, expect, it } from 'vitest';
import { formatResetDuration, rateLimitHeaders, retryAfterSeconds } from './rate-limit-headers.js';

describe('rate-limit headers', () => {
  it('formats durations as OpenAI does (Go duration strings)', () => {
    expect(formatResetDuration(0)).toBe('0s');
    expect(formatResetDuration(20)).toBe('20ms');
    expect(formatResetDuration(0.2)).toBe('1ms');
    expect(formatResetDuration(1000)).toBe('1s');
    expect(formatResetDuration(1500)).toBe('1.5s');
    expect(formatResetDuration(17_123)).toBe('17.123s');
    expect(formatResetDuration(360_000)).toBe('6m0s');
    expect(formatResetDuration(61_500)).toBe('1m1.5s');
    expect(formatResetDuration(3_723_000)).toBe('1h2m3s');
  });

  it('gives retry-after in whole seconds, at least one', () => {
    expect(retryAfterSeconds(0)).toBe('1');
    expect(retryAfterSeconds(1001)).toBe('2');
    expect(retryAfterSeconds(60_000)).toBe('60');
  });

  it('sends the requests and tokens trios only for the limits that apply', () => {
    expect(rateLimitHeaders({ requests: null, tokens: null })).toEqual({});
    expect(
      rateLimitHeaders({
        requests: { limit: 600, remaining: 599, resetMs: 100 },
        tokens: { limit: 100_000, remaining: 98_000, resetMs: 1200 },
      }),
    ).toEqual({
      'x-ratelimit-limit-requests': '600',
      'x-ratelimit-remaining-requests': '599',
      'x-ratelimit-reset-requests': '100ms',
      'x-ratelimit-limit-tokens': '100000',
      'x-ratelimit-remaining-tokens': '98000',
      'x-ratelimit-reset-tokens': '1.2s',
    });
  });
});
