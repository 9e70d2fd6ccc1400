import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GravityError } from '../../src/core/errors.js';
import type { StreamPart } from '../../src/core/stream-parts.js';
import {
  type EngineAdapter,
  engineSpecificationVersion,
  type GenerationRequest,
} from '../../src/engines/engine-adapter.js';
import type { EngineDefinition } from '../../src/engines/engine-definition.js';

/** A started engine of one type, built from its definition and config the way `gravity serve` builds it. */
export interface EngineUnderTest {
  definition: EngineDefinition;
  engine: EngineAdapter;
  /** The model id to ask for. */
  model: string;
  /** A prompt that does not fit the engine's context window. */
  overlongPrompt: string;
  /**
   * The engine that does the work behind this one (the replica of an upstream Gravity), for engines that
   * hand work elsewhere: an abort must reach it too. Absent where the engine does the work itself.
   */
  backend?: EngineAdapter;
  close(): Promise<void>;
}

/** A plain request for `model`; the cases override what they test. */
export function generationRequest(
  model: string,
  overrides: Partial<GenerationRequest> = {},
): GenerationRequest {
  return {
    requestId: `contract-${Math.random().toString(36).slice(2)}`,
    model,
    input: { kind: 'completion', prompt: 'a b c' },
    maxTokens: 8,
    temperature: 0,
    topP: 1,
    seed: 7,
    stop: [],
    user: null,
    ...overrides,
  };
}

async function collect(parts: AsyncIterable<StreamPart>): Promise<StreamPart[]> {
  const collected: StreamPart[] = [];
  for await (const part of parts) collected.push(part);
  return collected;
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const contentTypes = new Set(['text-delta', 'choice-delta', 'upstream-chunk']);
const isContent = (part: StreamPart | undefined) => part !== undefined && contentTypes.has(part.type);
const partTokens = (part: StreamPart) =>
  part.type === 'text-delta' || part.type === 'choice-delta' || part.type === 'upstream-chunk'
    ? part.tokens
    : 0;
/** The text a content part carries for choice 0, whatever its kind. */
function partText(part: StreamPart): string {
  if (part.type === 'text-delta') return part.text;
  const choices =
    part.type === 'choice-delta'
      ? [part.choice]
      : part.type === 'upstream-chunk'
        ? part.events.flatMap((event) => event.chunk.choices ?? [])
        : [];
  let text = '';
  for (const choice of choices) {
    if ((choice.index ?? 0) !== 0) continue;
    if (typeof choice.text === 'string') text += choice.text;
    const content = choice.delta?.content;
    if (typeof content === 'string') text += content;
  }
  return text;
}

/** Parts after response-start and before the abort that an engine may still hand out: "a few tokens". */
const partsAllowedAfterAbort = 4;

/**
 * The contract every engine adapter meets (engine-adapter.ts): one shared suite, run against each engine
 * type by a small test file that starts a real engine of that type.
 */
export function describeEngineConformance(name: string, setUp: () => Promise<EngineUnderTest>): void {
  describe(`${name} meets the engine contract`, () => {
    let subject: EngineUnderTest;
    const isIdle = (engine: EngineAdapter) => {
      const load = engine.load();
      return load.slotsBusy === 0 && load.waiting === 0;
    };
    /** The engine holds nothing; the work behind it may take a moment to hear of it over the network. */
    const idle = () => isIdle(subject.engine) && (subject.backend === undefined || isIdle(subject.backend));

    beforeAll(async () => {
      subject = await setUp();
    });
    afterAll(async () => {
      await subject?.close();
    });

    it('implements the current specification under its registered type, with the extensions it declares', () => {
      const { engine, definition } = subject;
      expect(engine.specificationVersion).toBe(engineSpecificationVersion);
      expect(engine.type).toBe(definition.type);
      expect(engine.models().map((model) => model.id)).toContain(subject.model);
      expect(engine.extensions?.modelledPower !== undefined).toBe(definition.capabilities.modelledPower);
      expect(engine.extensions?.counters !== undefined).toBe(definition.capabilities.workCounters);
      expect(idle()).toBe(true);
    });

    it('streams response-start first, then text, then finish last and nothing after it', async () => {
      const inputs: GenerationRequest['input'][] = [
        { kind: 'completion', prompt: 'a b c' },
        { kind: 'chat', messages: [{ role: 'user', content: 'a b c' }] },
      ];
      for (const input of inputs) {
        const parts = await collect(
          subject.engine.generate(generationRequest(subject.model, { input }), new AbortController().signal),
        );
        expect(parts[0]?.type).toBe('response-start');
        expect(parts.at(-1)?.type).toBe('finish');
        const middle = parts.slice(1, -1);
        expect(middle.length).toBeGreaterThan(0);
        for (const part of middle) expect(isContent(part)).toBe(true);
      }
      await waitFor('the engine to be idle after finishing', idle);
    });

    it('reports usage with its source, and the content parts carry exactly its completion tokens', async () => {
      const parts = await collect(
        subject.engine.generate(
          generationRequest(subject.model, { maxTokens: 6 }),
          new AbortController().signal,
        ),
      );
      const finish = parts.at(-1);
      if (finish?.type !== 'finish') throw new Error('the last part is not finish');
      expect(['engine', 'upstream', 'counted']).toContain(finish.usage.source);
      expect(finish.usage.promptTokens).toBeGreaterThan(0);
      expect(finish.usage.cachedPromptTokens).toBeGreaterThanOrEqual(0);
      expect(finish.usage.cachedPromptTokens).toBeLessThanOrEqual(finish.usage.promptTokens);
      expect(finish.usage.completionTokens).toBeGreaterThan(0);
      expect(finish.usage.completionTokens).toBeLessThanOrEqual(6);
      const deltaTokens = parts.reduce((sum, part) => sum + partTokens(part), 0);
      expect(deltaTokens).toBe(finish.usage.completionTokens);
      const start = parts[0];
      if (start?.type !== 'response-start') throw new Error('the first part is not response-start');
      expect(start.queueWaitMs).toBeGreaterThanOrEqual(0);
      // Counts known at the start are the ones the usage reports.
      if (start.promptTokens !== null) expect(start.promptTokens).toBe(finish.usage.promptTokens);
      if (finish.finishReason === 'length') expect(finish.usage.completionTokens).toBe(6);
    });

    it('counts the tokens of text a stop sequence withheld, so the content parts still add up to the usage', async () => {
      const parts = await collect(
        subject.engine.generate(
          generationRequest(subject.model, { maxTokens: 6, stop: [' f'] }),
          new AbortController().signal,
        ),
      );
      const finish = parts.at(-1);
      if (finish?.type !== 'finish') throw new Error('the last part is not finish');
      const text = parts.map(partText).join('');
      expect(text).not.toContain(' f');
      const deltaTokens = parts.reduce((sum, part) => sum + partTokens(part), 0);
      expect(deltaTokens).toBe(finish.usage.completionTokens);
    });

    it('throws a prompt longer than the context as a 400 before response-start, holding nothing', async () => {
      const parts = subject.engine.generate(
        generationRequest(subject.model, { input: { kind: 'completion', prompt: subject.overlongPrompt } }),
        new AbortController().signal,
      );
      const failure = await parts[Symbol.asyncIterator]()
        .next()
        .then(
          (result) => result,
          (error: unknown) => error,
        );
      expect(failure).toBeInstanceOf(GravityError);
      expect(failure).toMatchObject({ status: 400, code: 'context_length_exceeded' });
      expect(isIdle(subject.engine)).toBe(true);
      await waitFor('the engine to be idle after refusing', idle);
    });

    it('stops within a few tokens of an abort, throws the abort reason and frees what it held', async () => {
      const worker = subject.backend ?? subject.engine;
      const generatedTokens = () => worker.extensions?.counters?.().generationTokens ?? 0;
      const maxTokens = 200;
      const controller = new AbortController();
      const iterator = subject.engine
        .generate(generationRequest(subject.model, { maxTokens }), controller.signal)
        [Symbol.asyncIterator]();
      const first = await iterator.next();
      expect(first.value?.type).toBe('response-start');
      // The first token (a relayed upstream may send a role-only opener before it).
      let second = await iterator.next();
      while (!second.done && isContent(second.value) && partTokens(second.value) === 0)
        second = await iterator.next();
      expect(isContent(second.value)).toBe(true);
      expect(idle()).toBe(false);

      const reason = new Error('client went away');
      const generatedBeforeAbort = generatedTokens();
      controller.abort(reason);
      let thrown: unknown;
      const afterAbort: StreamPart[] = [];
      for (;;) {
        try {
          const next = await iterator.next();
          if (next.done) break;
          afterAbort.push(next.value);
        } catch (error) {
          thrown = error;
          break;
        }
      }
      expect(thrown).toBe(reason);
      expect(afterAbort.length).toBeLessThanOrEqual(partsAllowedAfterAbort);
      expect(afterAbort.every(isContent)).toBe(true);
      // The slot or sequence is free once the step in progress ends (at once for llama.cpp, at the end of
      // the modelled step for an emulated replica, when the disconnect arrives for an upstream's replica).
      await waitFor('the engine and the work behind it to free the aborted request', idle);
      // Where the worker counts its tokens: it stopped soon after the abort, far short of what was asked.
      expect(generatedTokens() - generatedBeforeAbort).toBeLessThan(maxTokens / 4);
    });

    it('throws the reason of a signal aborted before it starts, without a part', async () => {
      const controller = new AbortController();
      const reason = new Error('gone before it began');
      controller.abort(reason);
      await expect(
        collect(subject.engine.generate(generationRequest(subject.model), controller.signal)),
      ).rejects.toBe(reason);
      await waitFor('the engine to be idle', idle);
    });

    it('embeds each input once: response-start, embeddings parts, a finish with no completion tokens', async () => {
      const inputs = ['a b c', 'd e', 'a b c'];
      const parts = await collect(
        subject.engine.generate(
          generationRequest(subject.model, {
            input: { kind: 'embedding', inputs, encodingFormat: 'float', dimensions: null },
            maxTokens: 0,
            features: ['embeddings'],
          }),
          new AbortController().signal,
        ),
      );
      expect(parts[0]?.type).toBe('response-start');
      const finish = parts.at(-1);
      if (finish?.type !== 'finish') throw new Error('the last part is not finish');
      expect(finish.usage.completionTokens).toBe(0);
      expect(finish.usage.promptTokens).toBeGreaterThan(0);
      const vectors = parts.slice(1, -1).flatMap((part) => {
        if (part.type !== 'embeddings') throw new Error(`an embeddings request streamed a ${part.type} part`);
        expect(part.tokens).toBe(0);
        return part.data;
      });
      expect(vectors.map((vector) => vector.index).sort()).toEqual([0, 1, 2]);
      const numbers = (index: number) => {
        const embedding = vectors.find((vector) => vector.index === index)?.embedding;
        if (embedding === undefined || typeof embedding === 'string') throw new Error('no float vector');
        return Array.from(embedding);
      };
      expect(numbers(0).length).toBeGreaterThan(0);
      expect(Math.hypot(...numbers(0))).toBeCloseTo(1, 4);
      // The same input gets the same vector within a request.
      expect(numbers(2)).toEqual(numbers(0));
      await waitFor('the engine to be idle after embedding', idle);
    });

    it('throws an embedding input longer than the context as a 400 before response-start', async () => {
      const parts = subject.engine.generate(
        generationRequest(subject.model, {
          input: {
            kind: 'embedding',
            inputs: ['a b', subject.overlongPrompt],
            encodingFormat: 'float',
            dimensions: null,
          },
          maxTokens: 0,
          features: ['embeddings'],
        }),
        new AbortController().signal,
      );
      const failure = await parts[Symbol.asyncIterator]()
        .next()
        .then(
          (result) => result,
          (error: unknown) => error,
        );
      expect(failure).toMatchObject({ status: 400, code: 'context_length_exceeded' });
      await waitFor('the engine to be idle after refusing', idle);
    });

    it('still serves after the aborted and refused requests', async () => {
      const parts = await collect(
        subject.engine.generate(
          generationRequest(subject.model, { maxTokens: 3 }),
          new AbortController().signal,
        ),
      );
      expect(parts.at(-1)?.type).toBe('finish');
      await waitFor('the engine to be idle', idle);
    });
  });
}
