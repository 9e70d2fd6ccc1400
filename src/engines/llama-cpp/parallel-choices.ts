// Running several choices of one request at once: their slots, and their parts as they come.

import type { ContentPart } from '../../core/stream-parts.js';
import type { SlotPool } from '../slot-pool.js';
import type { ChoiceOutcome } from './choice-generation.js';

/**
 * One slot per prompt, all requested in the same turn: the pool serves waiters first-come, so a request's
 * slots are contiguous in its queue and two requests can never each hold part of what the other needs.
 * On failure (abort) the slots already granted go back.
 */
export async function acquireAll<Slot>(
  slots: SlotPool<Slot>,
  signal: AbortSignal,
  picks: ReadonlyArray<(free: readonly Slot[]) => number>,
): Promise<Slot[]> {
  const settled = await Promise.allSettled(picks.map((pick) => slots.acquire(signal, pick)));
  const granted = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const failure = settled.find((result) => result.status === 'rejected');
  if (failure) {
    for (const sequence of granted) slots.release(sequence);
    throw failure.reason;
  }
  return granted;
}

/**
 * Runs the choices' generators concurrently and yields their parts as they come; returns each choice's
 * outcome. If one fails, the others are stopped before the failure propagates.
 */
export async function* interleave(
  choices: Array<AsyncGenerator<ContentPart, ChoiceOutcome>>,
): AsyncGenerator<ContentPart, ChoiceOutcome[]> {
  const outcomes: ChoiceOutcome[] = new Array(choices.length);
  if (choices.length === 1) {
    outcomes[0] = yield* choices[0] as AsyncGenerator<ContentPart, ChoiceOutcome>;
    return outcomes;
  }
  type Next = { index: number; result: IteratorResult<ContentPart, ChoiceOutcome> };
  const pending = new Map<number, Promise<Next>>();
  const advance = (index: number) => {
    const next = (choices[index] as AsyncGenerator<ContentPart, ChoiceOutcome>)
      .next()
      .then((result) => ({ index, result }));
    // Rejections are read through Promise.race; this keeps a second one from being unhandled.
    next.catch(() => {});
    pending.set(index, next);
  };
  for (let index = 0; index < choices.length; index++) advance(index);
  try {
    while (pending.size > 0) {
      const { index, result } = await Promise.race(pending.values());
      if (result.done) {
        outcomes[index] = result.value;
        pending.delete(index);
      } else {
        advance(index);
        yield result.value;
      }
    }
  } finally {
    if (pending.size > 0)
      await Promise.allSettled(choices.map((choice) => choice.return(undefined as never)));
  }
  return outcomes;
}
