import { afterEach, describe, expect, it } from 'vitest';
import { GravityError } from '../../core/errors.js';
import type { StreamPart } from '../../core/stream-parts.js';
import { hardwareProfiles } from '../../performance-model/hardware-profiles.js';
import { modelProfile } from '../../performance-model/model-profiles.js';
import { firstComeFirstServed, tierPriority } from '../../performance-model/queue-ordering.js';
import { resolveReplicaSpec } from '../../performance-model/replica-spec.js';
import { StepCostModel } from '../../performance-model/step-cost-model.js';
import {
  defaultGenerationOptions,
  type GenerationOptions,
  type GenerationRequest,
} from '../engine-adapter.js';
import { EmulatedEngine } from './emulated-engine.js';

const engines: EmulatedEngine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((engine) => engine.close()));
});

/** A fast replica (8B in FP8 on an H200: a few ms per step) so that tests take milliseconds. */
async function startEngine(
  options: { maxNumSeqs?: number; contextTokens?: number; ordering?: typeof tierPriority } = {},
) {
  const model = modelProfile('llama-3.1-8b', { weightDtype: 'fp8' });
  if (!model) throw new Error('no profile');
  const spec = resolveReplicaSpec({ hardware: hardwareProfiles.h200, model, maxNumSeqs: options.maxNumSeqs });
  const engine = new EmulatedEngine({
    id: 'e0',
    modelId: 'llama-3.1-8b',
    spec,
    ordering: options.ordering ?? firstComeFirstServed,
    contextTokens: options.contextTokens ?? 8192,
  });
  await engine.start();
  engines.push(engine);
  return engine;
}

function request(overrides: Partial<GenerationRequest> = {}): GenerationRequest {
  return {
    requestId: 'r',
    model: 'llama-3.1-8b',
    input: { kind: 'chat', messages: [{ role: 'user', content: 'Tell me about routing.' }] },
    maxTokens: 12,
    temperature: 1,
    topP: 1,
    seed: null,
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

function withOptions(options: Partial<GenerationOptions>, overrides: Partial<GenerationRequest> = {}) {
  return request({ options: { ...defaultGenerationOptions, ...options }, ...overrides });
}

/** The content parts' tokens: what usage's completion tokens must add up to. */
function partTokens(parts: StreamPart[]): number {
  let tokens = 0;
  for (const part of parts)
    if (part.type === 'text-delta' || part.type === 'choice-delta') tokens += part.tokens;
  return tokens;
}

function finishOf(parts: StreamPart[]) {
  const finish = parts.at(-1);
  if (finish?.type !== 'finish') throw new Error('no finish part');
  return finish;
}

function choiceDeltas(parts: StreamPart[], index: number) {
  return parts.flatMap((part) => (part.type === 'choice-delta' && part.choice.index === index ? [part] : []));
}

function textOf(parts: StreamPart[]): string {
  return parts.map((part) => (part.type === 'text-delta' ? part.text : '')).join('');
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

describe('EmulatedEngine', () => {
  it('streams response-start, one text-delta per token and a finish with the engine’s usage', async () => {
    const engine = await startEngine();
    const parts = await collect(engine.generate(request(), new AbortController().signal));
    expect(parts[0]).toEqual({
      type: 'response-start',
      promptTokens: 6,
      cachedPromptTokens: 0,
      queueWaitMs: 0,
    });
    const deltas = parts.filter((part) => part.type === 'text-delta');
    expect(deltas).toHaveLength(12);
    expect(deltas.every((part) => part.tokens === 1 && /^ [A-Za-z]+\.?$/.test(part.text))).toBe(true);
    expect(parts.at(-1)).toEqual({
      type: 'finish',
      finishReason: 'length',
      usage: { promptTokens: 6, cachedPromptTokens: 0, completionTokens: 12, source: 'engine' },
    });
    expect(engine.load()).toEqual({ slotsTotal: 1024, slotsBusy: 0, waiting: 0, kvUsedFraction: 0 });
  });

  it('gives the same answer for the same prompt, and a different one for another seed', async () => {
    const engine = await startEngine();
    const signal = new AbortController().signal;
    const first = textOf(await collect(engine.generate(request({ maxTokens: 30 }), signal)));
    const again = textOf(await collect(engine.generate(request({ maxTokens: 30 }), signal)));
    const seeded = textOf(await collect(engine.generate(request({ maxTokens: 30, seed: 7 }), signal)));
    expect(again).toBe(first);
    expect(seeded).not.toBe(first);
    // Sentences: a capital after each full stop.
    expect(first).toMatch(/^ [A-Z]/);
    expect(
      first
        .split('. ')
        .slice(1)
        .every((sentence) => /^[A-Z]/.test(sentence)),
    ).toBe(true);
  });

  it('ends with finish_reason stop after a drawn length when max_tokens is absent', async () => {
    const engine = await startEngine();
    const parts = await collect(
      engine.generate(request({ maxTokens: null, seed: 8 }), new AbortController().signal),
    );
    const finish = parts.at(-1);
    expect(finish?.type === 'finish' && finish.finishReason).toBe('stop');
    const completionTokens = finish?.type === 'finish' ? finish.usage.completionTokens : 0;
    expect(completionTokens).toBeGreaterThan(0);
    expect(textOf(parts).split(' ').length - 1).toBe(completionTokens);
  });

  it('serves a repeated long prompt’s blocks from the prefix cache', async () => {
    const engine = await startEngine();
    const content = 'You are a careful assistant who answers questions about networks. '.repeat(20);
    const longRequest = request({
      input: { kind: 'chat', messages: [{ role: 'system', content }] },
      maxTokens: 2,
    });
    const first = await collect(engine.generate(longRequest, new AbortController().signal));
    const second = await collect(engine.generate(longRequest, new AbortController().signal));
    const promptTokens = Math.ceil(content.length / 4);
    expect(first[0]).toMatchObject({ promptTokens, cachedPromptTokens: 0 });
    const cached = second[0]?.type === 'response-start' ? (second[0].cachedPromptTokens ?? 0) : 0;
    expect(cached).toBeGreaterThan(promptTokens / 2);
    expect(cached % 16).toBe(0);
    expect(cached).toBeLessThan(promptTokens);
    const counters = engine.extensions.counters();
    expect(counters.prefixCacheHitTokens).toBe(cached);
    expect(counters.prefixCacheQueriedTokens).toBe(2 * promptTokens);
    expect(counters.promptTokens).toBe(2 * promptTokens);
  });

  it('rejects a request that does not fit the context before its first part', async () => {
    const engine = await startEngine({ contextTokens: 100 });
    const iterator = engine.generate(request({ maxTokens: 95 }), new AbortController().signal);
    const error = await iterator.next().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(GravityError);
    expect((error as GravityError).code).toBe('context_length_exceeded');
    expect((error as GravityError).message).toContain('maximum context length is 100 tokens');
  });

  it('cancels on abort: the iterator throws the reason and the sequence’s KV blocks are freed', async () => {
    const engine = await startEngine();
    const controller = new AbortController();
    const reason = new Error('client left');
    let deltas = 0;
    const run = (async () => {
      for await (const part of engine.generate(request({ maxTokens: 5000 }), controller.signal)) {
        if (part.type === 'text-delta' && ++deltas === 3) controller.abort(reason);
      }
    })();
    await expect(run).rejects.toBe(reason);
    expect(deltas).toBe(3);
    await waitFor(() => engine.load().slotsBusy === 0);
    expect(engine.load().kvUsedFraction).toBe(0);
  });

  it('queues beyond maxNumSeqs and reports the wait', async () => {
    const engine = await startEngine({ maxNumSeqs: 2 });
    let maxWaiting = 0;
    const sampler = setInterval(() => {
      maxWaiting = Math.max(maxWaiting, engine.load().waiting);
    }, 1);
    const results = await Promise.all(
      [0, 1, 2, 3].map((index) =>
        collect(engine.generate(request({ seed: index, maxTokens: 20 }), new AbortController().signal)),
      ),
    );
    clearInterval(sampler);
    // The first request starts the idle replica at once; the others arrive during its first step and
    // wait for the next, where only one more fits.
    expect(maxWaiting).toBe(3);
    const waits = results.map((parts) => (parts[0]?.type === 'response-start' ? parts[0].queueWaitMs : -1));
    expect(waits[0]).toBe(0);
    expect(waits[1]).toBeGreaterThan(0);
    expect(Math.min(waits[2] ?? 0, waits[3] ?? 0)).toBeGreaterThan(waits[1] ?? 0);
  });

  it('admits the priority tier first when ordering by priority', async () => {
    const engine = await startEngine({ maxNumSeqs: 1, ordering: tierPriority });
    const admitted: string[] = [];
    const run = async (name: string, serviceTier: GenerationRequest['serviceTier']) => {
      for await (const part of engine.generate(
        request({ serviceTier, maxTokens: 5 }),
        new AbortController().signal,
      ))
        if (part.type === 'response-start') admitted.push(name);
    };
    const first = run('first', 'default');
    await waitFor(() => engine.load().slotsBusy === 1);
    await Promise.all([first, run('flex', 'flex'), run('priority', 'priority')]);
    expect(admitted).toEqual(['first', 'priority', 'flex']);
  });

  it('takes at least the modelled decode step time per token (8B BF16 on one H100)', async () => {
    const model = modelProfile('llama-3.1-8b');
    if (!model) throw new Error('no profile');
    const spec = resolveReplicaSpec({ hardware: hardwareProfiles['h100-sxm'], model });
    const engine = new EmulatedEngine({
      id: 'h100',
      modelId: 'llama-3.1-8b',
      spec,
      ordering: firstComeFirstServed,
      contextTokens: 8192,
    });
    await engine.start();
    engines.push(engine);
    // The cheapest possible decode step: one sequence, no context, weights read once, plus host overhead.
    const floorMs = new StepCostModel(spec).cost({
      decodeSequences: 1,
      decodeContextTokens: 0,
      prefillTokens: 0,
      prefillAttentionPositions: 0,
      prefillContextTokens: 0,
    }).stepMs;
    expect(floorMs).toBeGreaterThan(5); // ~8 ms: 16 GB of weights at ~2.4 TB/s effective
    const startedMs = performance.now();
    await collect(engine.generate(request({ maxTokens: 64 }), new AbortController().signal));
    const elapsedMs = performance.now() - startedMs;
    // 63 decode steps after the prefill step that gives the first token; a timer may fire 0.25 ms early.
    expect(elapsedMs).toBeGreaterThanOrEqual(63 * floorMs - 1);
    expect(elapsedMs).toBeLessThan(63 * floorMs * 10 + 2000);
    expect(engine.extensions.modelledPower.dynamicEnergyJoules()).toBeGreaterThan(0);
  });

  it('embeds as prefill-only work: the modelled energy of prefilling the inputs, no decode step', async () => {
    const text = 'word '.repeat(400);
    const energyOf = async (generation: GenerationRequest) => {
      const engine = await startEngine();
      const parts = await collect(engine.generate(generation, new AbortController().signal));
      return { parts, joules: engine.extensions.modelledPower.dynamicEnergyJoules() };
    };
    const embedding = await energyOf(
      request({
        input: { kind: 'embedding', inputs: [text], encodingFormat: 'float', dimensions: null },
        maxTokens: 0,
        features: ['embeddings'],
      }),
    );
    // A completion that stops at its first token does exactly the prefill; one more token is a decode.
    const prefillOnly = await energyOf(
      request({ input: { kind: 'completion', prompt: text }, maxTokens: 1 }),
    );
    const withDecode = await energyOf(request({ input: { kind: 'completion', prompt: text }, maxTokens: 2 }));
    expect(embedding.joules).toBeGreaterThan(0);
    expect(embedding.joules).toBeCloseTo(prefillOnly.joules, 9);
    expect(embedding.joules).toBeLessThan(withDecode.joules);
    expect(finishOf(embedding.parts).usage).toEqual({
      promptTokens: 500,
      cachedPromptTokens: 0,
      completionTokens: 0,
      source: 'engine',
    });
    expect(embedding.parts.map((part) => part.type)).toEqual(['response-start', 'embeddings', 'finish']);
  });

  it('ends in-flight generations with an error when closed', async () => {
    const engine = await startEngine();
    const iterator = engine.generate(request({ maxTokens: 5000 }), new AbortController().signal);
    await iterator.next();
    await engine.close();
    await expect(iterator.next()).rejects.toMatchObject({ code: 'engine_error' });
  });

  describe('beyond plain text', () => {
    const weather = {
      name: 'get_weather',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string' } },
        required: ['city'],
        additionalProperties: false,
      },
    };

    it('writes a tool call as a header delta then argument pieces, tokens modelled and added up', async () => {
      const engine = await startEngine();
      const parts = await collect(
        engine.generate(withOptions({ tools: [weather] }, { maxTokens: null }), new AbortController().signal),
      );
      const deltas = choiceDeltas(parts, 0);
      const header = deltas[0]?.choice.delta as { role: string; tool_calls: Array<Record<string, unknown>> };
      expect(header.role).toBe('assistant');
      expect(header.tool_calls[0]).toMatchObject({
        index: 0,
        type: 'function',
        function: { name: 'get_weather', arguments: '' },
      });
      expect(deltas[0]?.tokens).toBe(Math.ceil('get_weather'.length / 4));
      const argumentsText = deltas
        .slice(1)
        .map((part) => {
          const calls = part.choice.delta?.tool_calls as Array<{ function: { arguments: string } }>;
          return calls[0]?.function.arguments;
        })
        .join('');
      expect(Object.keys(JSON.parse(argumentsText))).toEqual(['city']);
      expect(deltas.slice(1).every((part) => part.tokens === 1)).toBe(true);
      expect(deltas.at(-1)?.choice.finish_reason).toBe('tool_calls');
      const finish = finishOf(parts);
      expect(finish).toMatchObject({ finishReason: 'tool_calls', choicesFinished: true });
      expect(finish.usage.completionTokens).toBe(partTokens(parts));
      // The tool definitions are part of the prompt a chat template builds.
      expect(finish.usage.promptTokens).toBe(
        Math.ceil('Tell me about routing.'.length / 4) + Math.ceil(JSON.stringify([weather]).length / 4),
      );
    });

    it('answers a tool result with text when tool_choice is auto', async () => {
      const engine = await startEngine();
      const messages = [
        { role: 'user' as const, content: 'Weather in Rome?' },
        {
          role: 'assistant' as const,
          content: '',
          toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{"city":"Rome"}' }],
        },
        { role: 'tool' as const, content: '{"sky":"clear"}', toolCallId: 'call_1' },
      ];
      const parts = await collect(
        engine.generate(
          withOptions({ tools: [weather] }, { input: { kind: 'chat', messages }, maxTokens: 4 }),
          new AbortController().signal,
        ),
      );
      expect(parts.filter((part) => part.type === 'text-delta')).toHaveLength(4);
      expect(finishOf(parts)).toMatchObject({ finishReason: 'length' });
      expect(finishOf(parts).choicesFinished).toBeUndefined();
    });

    it('models n choices as n sequences, each with its own answer and finish, usage over all of them', async () => {
      const engine = await startEngine();
      const single = await collect(engine.generate(request({ maxTokens: 6 }), new AbortController().signal));
      const parts = await collect(
        engine.generate(withOptions({ n: 3 }, { maxTokens: 6 }), new AbortController().signal),
      );
      // Choice 0 is what n = 1 answers, on the plain path; the others come as choice-deltas.
      expect(textOf(parts)).toBe(textOf(single));
      const answers = [1, 2].map((index) => choiceDeltas(parts, index));
      for (const deltas of answers) {
        expect(deltas.reduce((sum, part) => sum + part.tokens, 0)).toBe(6);
        expect(deltas[0]?.choice.delta).toMatchObject({ role: 'assistant' });
        expect(deltas.at(-1)?.choice.finish_reason).toBe('length');
      }
      const texts = answers.map((deltas) => deltas.map((part) => part.choice.delta?.content).join(''));
      expect(new Set([textOf(single), ...texts]).size).toBe(3);
      const finish = finishOf(parts);
      expect(finish.usage).toMatchObject({ promptTokens: 6, completionTokens: 18 });
      expect(partTokens(parts)).toBe(18);
      expect(finish.choicesFinished).toBeUndefined();
      expect(engine.extensions.counters().generationTokens).toBe(6 + 18);
    });

    it('gives modelled logprobs in OpenAI’s chat shape, the alternatives most likely first', async () => {
      const engine = await startEngine();
      const parts = await collect(
        engine.generate(
          withOptions({ logprobs: true, topLogprobs: 3 }, { maxTokens: 5 }),
          new AbortController().signal,
        ),
      );
      const deltas = choiceDeltas(parts, 0);
      expect(deltas).toHaveLength(5);
      for (const part of deltas) {
        const logprobs = part.choice.logprobs as { content: Array<Record<string, unknown>>; refusal: null };
        const [entry] = logprobs.content;
        expect(entry?.token).toBe(part.choice.delta?.content);
        expect(entry?.logprob).toBeLessThan(0);
        expect(entry?.bytes).toEqual([...Buffer.from(String(entry?.token))]);
        const top = entry?.top_logprobs as Array<{ token: string; logprob: number }>;
        expect(top).toHaveLength(3);
        expect(top.map((alternative) => alternative.logprob)).toEqual(
          [...top.map((alternative) => alternative.logprob)].sort((a, b) => b - a),
        );
        expect(top.reduce((sum, alternative) => sum + Math.exp(alternative.logprob), 0)).toBeLessThanOrEqual(
          1,
        );
      }
      expect(finishOf(parts)).toMatchObject({ finishReason: 'length', choicesFinished: true });
    });

    it('gives every choice its own tool calls, and JSON with logprobs as choice-deltas', async () => {
      const engine = await startEngine();
      const calls = await collect(
        engine.generate(
          withOptions({ tools: [weather], toolChoice: 'required', n: 2 }, { maxTokens: null }),
          new AbortController().signal,
        ),
      );
      for (const index of [0, 1]) {
        const deltas = choiceDeltas(calls, index);
        expect((deltas[0]?.choice.delta?.tool_calls as unknown[] | undefined)?.length).toBe(1);
        expect(deltas.at(-1)?.choice.finish_reason).toBe('tool_calls');
      }
      expect(finishOf(calls)).toMatchObject({ finishReason: 'tool_calls', choicesFinished: true });
      expect(finishOf(calls).usage.completionTokens).toBe(partTokens(calls));

      const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] };
      const json = await collect(
        engine.generate(
          withOptions(
            { responseFormat: { type: 'json_schema', name: 's', schema, strict: true }, logprobs: true },
            { maxTokens: null },
          ),
          new AbortController().signal,
        ),
      );
      const deltas = choiceDeltas(json, 0);
      const text = deltas.map((part) => part.choice.delta?.content).join('');
      expect(typeof JSON.parse(text).ok).toBe('boolean');
      const tokens = deltas.flatMap((part) =>
        (part.choice.logprobs as { content: Array<{ token: string }> }).content.map((entry) => entry.token),
      );
      expect(tokens.join('')).toBe(text);
      expect(finishOf(json)).toMatchObject({ finishReason: 'stop', choicesFinished: true });
    });

    it('answers several completion prompts, one choice each, echoing the prompt when asked', async () => {
      const engine = await startEngine();
      const parts = await collect(
        engine.generate(
          request({
            input: {
              kind: 'completion',
              prompt: 'first\nsecond one',
              prompts: ['first', 'second one', [1, 2, 3]],
            },
            maxTokens: 3,
            options: { ...defaultGenerationOptions, logprobs: true, topLogprobs: 2 },
            carried: { echo: true },
          }),
          new AbortController().signal,
        ),
      );
      const texts = [0, 1, 2].map((index) =>
        choiceDeltas(parts, index)
          .map((part) => part.choice.text)
          .join(''),
      );
      expect(texts[0]?.startsWith('first ')).toBe(true);
      expect(texts[1]?.startsWith('second one ')).toBe(true);
      const logprobs = choiceDeltas(parts, 1)[0]?.choice.logprobs as Record<string, unknown[]>;
      expect(logprobs.tokens).toHaveLength(1);
      expect(logprobs.text_offset).toEqual(['second one'.length]);
      expect(Object.keys(logprobs.top_logprobs?.[0] as object)).toHaveLength(2);
      expect(finishOf(parts).usage).toMatchObject({ promptTokens: 2 + 3 + 3, completionTokens: 9 });
    });

    it('counts image and audio parts at their fixed estimates', async () => {
      const engine = await startEngine();
      const parts = await collect(
        engine.generate(
          request({
            carried: {
              messages: [
                {
                  role: 'user',
                  content: [
                    { type: 'text', text: 'Tell me about routing.' },
                    { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
                    { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
                    { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } },
                  ],
                },
              ],
            },
          }),
          new AbortController().signal,
        ),
      );
      expect(parts[0]).toMatchObject({ type: 'response-start', promptTokens: 6 + 765 + 85 + 250 });
    });

    it('frees every choice’s sequence on abort', async () => {
      const engine = await startEngine();
      const controller = new AbortController();
      const reason = new Error('client left');
      let deltas = 0;
      const run = (async () => {
        for await (const part of engine.generate(
          withOptions({ n: 4 }, { maxTokens: 5000 }),
          controller.signal,
        ))
          if (part.type !== 'response-start' && ++deltas === 8) controller.abort(reason);
      })();
      await expect(run).rejects.toBe(reason);
      await waitFor(() => engine.load().slotsBusy === 0);
      expect(engine.load().kvUsedFraction).toBe(0);
    });

    it('refuses, before any part, what a mixed fleet’s text-only replica does not serve', async () => {
      const model = modelProfile('llama-3.1-8b', { weightDtype: 'fp8' });
      if (!model) throw new Error('no profile');
      const engine = new EmulatedEngine({
        id: 'text-only',
        modelId: 'llama-3.1-8b',
        spec: resolveReplicaSpec({ hardware: hardwareProfiles.h200, model }),
        ordering: firstComeFirstServed,
        contextTokens: 8192,
        servedFeatures: new Set(['logprobs']),
      });
      await engine.start();
      engines.push(engine);
      const error = await engine
        .generate(
          withOptions({ tools: [weather] }, { features: ['logprobs', 'tools'] }),
          new AbortController().signal,
        )
        .next()
        .catch((caught: unknown) => caught);
      expect(error).toMatchObject({ status: 400, param: 'tools', code: 'unsupported_parameter' });
    });
  });
});
