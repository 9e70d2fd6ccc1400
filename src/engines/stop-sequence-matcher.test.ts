import { describe, expect, it } from 'vitest';
import { StopSequenceMatcher } from './stop-sequence-matcher.js';

function run(stops: string[], pieces: string[]) {
  const matcher = new StopSequenceMatcher(stops);
  let out = '';
  for (const piece of pieces) {
    const { emit, stopped } = matcher.push(piece);
    out += emit;
    if (stopped) return { out, stopped: true };
  }
  return { out: out + matcher.flush(), stopped: false };
}

describe('StopSequenceMatcher', () => {
  it('passes text through untouched when there are no stop sequences', () => {
    expect(run([], ['a', 'b', 'c'])).toEqual({ out: 'abc', stopped: false });
  });

  it('cuts at a stop sequence split across pieces and never emits part of it', () => {
    const matcher = new StopSequenceMatcher(['END']);
    expect(matcher.push('hello E')).toEqual({ emit: 'hello ', stopped: false });
    expect(matcher.push('N')).toEqual({ emit: '', stopped: false });
    expect(matcher.push('D and more')).toEqual({ emit: '', stopped: true });
  });

  it('releases held-back text once it cannot start a stop sequence', () => {
    expect(run(['END'], ['E', 'N', 'x'])).toEqual({ out: 'ENx', stopped: false });
  });

  it('stops at the earliest of several stop sequences', () => {
    expect(run(['c', 'b'], ['a b c'])).toEqual({ out: 'a ', stopped: true });
  });

  it('flushes a held-back prefix when generation ends without a stop', () => {
    expect(run(['\n\n'], ['line', '\n'])).toEqual({ out: 'line\n', stopped: false });
  });
});
