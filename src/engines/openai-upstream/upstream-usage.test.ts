import { describe, expect, it } from 'vitest';
import { upstreamErrorFields } from '../../core/errors.js';
import { validatedUpstreamUsage } from './upstream-usage.js';

describe('validatedUpstreamUsage', () => {
  it('takes whole, non-negative, consistent counts as the upstream reported them', () => {
    expect(
      validatedUpstreamUsage({
        promptTokens: 12,
        cachedPromptTokens: 4,
        completionTokens: 9,
        reasoningTokens: 5,
      }),
    ).toEqual({
      promptTokens: 12,
      cachedPromptTokens: 4,
      completionTokens: 9,
      reasoningTokens: 5,
      source: 'upstream',
    });
    // Absent details: nothing cached, reasoning unknown.
    expect(
      validatedUpstreamUsage({ promptTokens: 0, cachedPromptTokens: null, completionTokens: 0 }),
    ).toEqual({
      promptTokens: 0,
      cachedPromptTokens: 0,
      completionTokens: 0,
      source: 'upstream',
    });
  });

  it.each([
    ['a fractional prompt', { promptTokens: 7.5, completionTokens: 3 }],
    ['a string cached count', { promptTokens: 7, cachedPromptTokens: 'abc', completionTokens: 3 }],
    ['a negative prompt', { promptTokens: -1e6, completionTokens: 3 }],
    ['an absurd completion', { promptTokens: 7, completionTokens: 1e300 }],
    ['numbers as strings', { promptTokens: '7', completionTokens: '3' }],
    ['NaN', { promptTokens: Number.NaN, completionTokens: 3 }],
    ['a missing completion', { promptTokens: 7 }],
    ['more cached than prompt tokens', { promptTokens: 7, cachedPromptTokens: 8, completionTokens: 3 }],
    ['more reasoning than completion tokens', { promptTokens: 7, completionTokens: 3, reasoningTokens: 4 }],
    ['a negative reasoning count', { promptTokens: 7, completionTokens: 3, reasoningTokens: -1 }],
  ])('refuses %s (the caller counts instead)', (_, reported) => {
    expect(validatedUpstreamUsage(reported as Parameters<typeof validatedUpstreamUsage>[0])).toBeNull();
  });
});

describe('upstreamErrorFields', () => {
  it('keeps strings, writes finite numbers as text and drops everything else', () => {
    expect(upstreamErrorFields({ message: 'bad', code: 400, type: 'BadRequestError', param: null })).toEqual({
      message: 'bad',
      code: '400',
      type: 'BadRequestError',
      param: null,
    });
    expect(upstreamErrorFields({ message: { a: 1 }, code: true, type: ['x'], param: Number.NaN })).toEqual({
      message: null,
      code: null,
      type: null,
      param: null,
    });
    expect(upstreamErrorFields('not an object')).toEqual({
      message: null,
      code: null,
      type: null,
      param: null,
    });
  });
});
