import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../../core/seeded-random.js';
import { estimatePromptTokens, promptBlockHashes, promptText } from './emulated-prompt.js';
import { drawAnswerTokens, SyntheticText } from './synthetic-text.js';

describe('synthetic text', () => {
  it('is the same for the same seed, one readable ASCII word per token', () => {
    const a = new SyntheticText(new SeededRandom(42));
    const b = new SyntheticText(new SeededRandom(42));
    const pieces = Array.from({ length: 200 }, () => a.take(1));
    expect(pieces.join('')).toBe(b.take(200));
    expect(pieces.every((piece) => /^ [A-Za-z]+\.?$/.test(piece))).toBe(true);
    expect(Buffer.from(pieces.join(''), 'utf8').toString('utf8')).toBe(pieces.join(''));
    expect(new SyntheticText(new SeededRandom(43)).take(200)).not.toBe(pieces.join(''));
  });

  it('folds any integer seed, negative or beyond 32 bits, into a usable state', () => {
    for (const seed of [-1, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER]) {
      const value = new SeededRandom(seed).uniform();
      expect(value).toBeGreaterThanOrEqual(0);
      expect(value).toBeLessThan(1);
    }
  });

  it('draws ShareGPT-like answer lengths: mean about 180 tokens, a long right tail, never 0', () => {
    const random = new SeededRandom(1);
    const draws = Array.from({ length: 50_000 }, () => drawAnswerTokens(random));
    const mean = draws.reduce((sum, tokens) => sum + tokens, 0) / draws.length;
    expect(mean).toBeGreaterThan(165);
    expect(mean).toBeLessThan(195);
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(1);
    expect(Math.max(...draws)).toBeGreaterThan(1000);
  });
});

describe('emulated prompts', () => {
  it('estimates ~4 characters per token, at least one', () => {
    expect(estimatePromptTokens('')).toBe(1);
    expect(estimatePromptTokens('abcd')).toBe(1);
    expect(estimatePromptTokens('abcde')).toBe(2);
    const text = promptText({
      kind: 'chat',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hi' },
      ],
    });
    expect(text).toBe('be brief\nhi');
  });

  it('hashes whole 64-character blocks, chained so that a block depends on all text before it', () => {
    const shared = 'x'.repeat(128);
    const a = promptBlockHashes(`${shared}${'a'.repeat(70)}`, 16);
    const b = promptBlockHashes(`${shared}${'b'.repeat(70)}`, 16);
    expect(a).toHaveLength(3);
    expect(a.slice(0, 2)).toEqual(b.slice(0, 2));
    expect(a[2]).not.toBe(b[2]);
    // Same content at a different position is a different block.
    expect(a[1]).not.toBe(a[0]);
    expect(promptBlockHashes('short', 16)).toEqual([]);
  });
});
