import { describe, expect, it } from 'vitest';
import type { ContentPart } from '../../core/stream-parts.js';
import { SlotPool } from '../slot-pool.js';
import type { ChoiceOutcome } from './choice-generation.js';
import { acquireAll, interleave } from './parallel-choices.js';

const first = () => 0;

async function* choice(
  texts: string[],
  delayMs: number,
  failAt = -1,
): AsyncGenerator<ContentPart, ChoiceOutcome> {
  for (const [at, text] of texts.entries()) {
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    if (at === failAt) throw new Error('choice failed');
    yield { type: 'text-delta', text, tokens: 1 };
  }
  return { finishReason: 'stop', completionTokens: texts.length };
}

describe('acquireAll', () => {
  it('lets two requests that each need most of the slots run one after the other, never deadlocked', async () => {
    const pool = new SlotPool([1, 2, 3, 4]);
    const signal = new AbortController().signal;
    const holder = await acquireAll(pool, signal, [first, first]);
    const a = acquireAll(pool, signal, [first, first, first]);
    const b = acquireAll(pool, signal, [first, first, first]);
    for (const slot of holder) pool.release(slot);
    const granted = await a;
    expect(granted).toHaveLength(3);
    for (const slot of granted) pool.release(slot);
    expect(await b).toHaveLength(3);
  });

  it('gives back the slots it got when it is aborted waiting for the rest', async () => {
    const pool = new SlotPool([1, 2]);
    const busy = await acquireAll(pool, new AbortController().signal, [first]);
    const controller = new AbortController();
    const waiting = acquireAll(pool, controller.signal, [first, first]);
    controller.abort(new Error('gone'));
    await expect(waiting).rejects.toThrow('gone');
    expect(pool.busy).toBe(busy.length);
  });
});

describe('interleave', () => {
  it('yields every choice’s parts as they come and returns each outcome by index', async () => {
    const parts: string[] = [];
    const merged = interleave([choice(['a1', 'a2', 'a3'], 1), choice(['b1'], 2)]);
    let result = await merged.next();
    while (!result.done) {
      if (result.value.type === 'text-delta') parts.push(result.value.text);
      result = await merged.next();
    }
    expect(parts.sort()).toEqual(['a1', 'a2', 'a3', 'b1']);
    expect(result.value.map((outcome) => outcome.completionTokens)).toEqual([3, 1]);
  });

  it('stops the other choices when one fails, then throws its error', async () => {
    let otherFinished = false;
    async function* tracked(): AsyncGenerator<ContentPart, ChoiceOutcome> {
      try {
        yield* choice(['x', 'y', 'z', 'w'], 5);
        return { finishReason: 'stop', completionTokens: 4 };
      } finally {
        otherFinished = true;
      }
    }
    const merged = interleave([choice(['a', 'b'], 1, 1), tracked()]);
    await expect(
      (async () => {
        for await (const _ of merged);
      })(),
    ).rejects.toThrow('choice failed');
    expect(otherFinished).toBe(true);
  });
});
