import { Ajv } from 'ajv';
import type OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';

// The in-process llama.cpp engine's request features, through a live Gravity and the openai SDK. The
// 'random' tiny model writes noise and never picks end-of-sequence on its own: grammars are what make
// its output valid JSON and tool calls, and bounded schemas (maxLength, enum) let the grammar close.

let harness: Harness;
beforeAll(async () => {
  harness = await startHarness();
});
afterAll(async () => {
  await harness?.close();
});

const randomModel = 'gravity-tiny-random';
const ajv = new Ajv({ strict: false });

const personSchema = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 6 },
    age: { type: 'integer' },
    role: { enum: ['admin', 'user'] },
    active: { type: 'boolean' },
    tags: { type: 'array', items: { type: 'string', maxLength: 3 }, maxItems: 2 },
    nickname: { type: ['string', 'null'], maxLength: 4 },
  },
  required: ['name', 'age', 'role', 'active', 'tags', 'nickname'],
  additionalProperties: false,
} as const;

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 6 }, unit: { enum: ['c', 'f'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
} as const;
const timeTool = {
  type: 'function',
  function: {
    name: 'get_time',
    parameters: { type: 'object', properties: { zone: { enum: ['utc', 'cet'] } }, required: ['zone'] },
  },
} as const;
const tools = [weatherTool, timeTool];
const parameterValidators = new Map<string, ReturnType<typeof ajv.compile>>(
  tools.map((tool) => [tool.function.name, ajv.compile(tool.function.parameters)]),
);

function expectValidCalls(calls: OpenAI.ChatCompletionMessageToolCall[] | undefined, names: string[]) {
  expect(calls?.length ?? 0).toBeGreaterThan(0);
  for (const call of calls ?? []) {
    if (call.type !== 'function') throw new Error(`unexpected call type ${call.type}`);
    expect(call.id).toMatch(/^call_[A-Za-z0-9_-]{24}$/);
    expect(names).toContain(call.function.name);
    const validate = parameterValidators.get(call.function.name);
    const args = JSON.parse(call.function.arguments);
    expect(validate?.(args), JSON.stringify(validate?.errors)).toBe(true);
  }
}

describe('the llama.cpp engine serves structured output', () => {
  it('writes JSON valid against a json_schema, and finishes with stop once the value closes', async () => {
    const validate = ajv.compile(personSchema);
    const completions = await Promise.all(
      [1, 2, 3].map((seed) =>
        harness.client.chat.completions.create({
          model: randomModel,
          messages: [{ role: 'user', content: 'Describe a person.' }],
          response_format: {
            type: 'json_schema',
            json_schema: { name: 'person', schema: personSchema, strict: true },
          },
          max_tokens: 400,
          temperature: 1,
          seed,
        }),
      ),
    );
    for (const completion of completions) {
      const choice = completion.choices[0];
      expect(choice?.finish_reason).toBe('stop');
      const value = JSON.parse(choice?.message.content ?? '');
      expect(validate(value), JSON.stringify(validate.errors)).toBe(true);
    }
  });

  it('serves the SDK’s chat.completions.parse with a zod schema (integers carry safe-integer bounds)', async () => {
    const Pet = z.object({
      name: z.string().max(5),
      legs: z.number().int(),
      kind: z.enum(['cat', 'dog']),
      tame: z.boolean(),
    });
    const completion = await harness.client.chat.completions.parse({
      model: randomModel,
      messages: [{ role: 'user', content: 'A pet, please.' }],
      response_format: zodResponseFormat(Pet, 'pet'),
      max_tokens: 300,
      seed: 9,
    });
    const message = completion.choices[0]?.message;
    expect(completion.choices[0]?.finish_reason).toBe('stop');
    expect(Pet.parse(message?.parsed)).toEqual(message?.parsed);
    expect(Number.isSafeInteger(message?.parsed?.legs)).toBe(true);
  });

  it('streams a json_object response that parses as one object', async () => {
    const stream = await harness.client.chat.completions.create({
      model: randomModel,
      messages: [{ role: 'user', content: 'Any JSON object.' }],
      response_format: { type: 'json_object' },
      max_tokens: 400,
      seed: 5,
      stream: true,
    });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    if (finish === 'stop') expect(typeof JSON.parse(text)).toBe('object');
    else expect(finish).toBe('length');
  });

  it('refuses a schema the grammar cannot enforce with a 400 naming response_format', async () => {
    const response = await postRaw(
      `${harness.url}/v1/chat/completions`,
      JSON.stringify({
        model: randomModel,
        messages: [{ role: 'user', content: 'hi' }],
        response_format: {
          type: 'json_schema',
          json_schema: {
            name: 'x',
            schema: { type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]+$' } } },
          },
        },
      }),
    );
    expect(response.status).toBe(400);
    expect(response.json.error?.param).toBe('response_format');
    expect(String(response.json.error?.message)).toContain('pattern');
  });
});

describe('the llama.cpp engine serves tools', () => {
  it('answers tool_choice required with calls whose arguments are valid, finish_reason tool_calls', async () => {
    const completion = await harness.client.chat.completions.create({
      model: randomModel,
      messages: [{ role: 'user', content: 'Weather or time?' }],
      tools: [...tools],
      tool_choice: 'required',
      parallel_tool_calls: false,
      max_tokens: 300,
      seed: 11,
    });
    const choice = completion.choices[0];
    expect(choice?.finish_reason).toBe('tool_calls');
    expect(choice?.message.tool_calls).toHaveLength(1);
    expect(choice?.message.content).toBeNull();
    expectValidCalls(choice?.message.tool_calls, ['get_weather', 'get_time']);
  });

  it('calls the named tool, and the SDK assembles the streamed deltas into the same calls', async () => {
    const request = {
      model: randomModel,
      messages: [{ role: 'user' as const, content: 'Weather in Oslo?' }],
      tools: [...tools],
      tool_choice: { type: 'function' as const, function: { name: 'get_weather' } },
      max_tokens: 300,
      temperature: 1,
      seed: 21,
    };
    const whole = await harness.client.chat.completions.create(request);
    const streamed = await harness.client.chat.completions.stream(request).finalChatCompletion();
    for (const completion of [whole, streamed]) {
      expect(completion.choices[0]?.finish_reason).toBe('tool_calls');
      expectValidCalls(completion.choices[0]?.message.tool_calls, ['get_weather']);
    }
    const callsOf = (completion: OpenAI.ChatCompletion) =>
      completion.choices[0]?.message.tool_calls?.map((call) => call.type === 'function' && call.function);
    expect(callsOf(streamed)).toEqual(callsOf(whole));
  });

  it('streams parallel calls with OpenAI delta shapes: id, type and name first, then arguments', async () => {
    const stream = await harness.client.chat.completions.create({
      model: randomModel,
      messages: [{ role: 'user', content: 'Both, please.' }],
      tools: [...tools],
      tool_choice: 'required',
      max_tokens: 600,
      seed: 3,
      stream: true,
    });
    const seen = new Set<number>();
    let finish: string | null = null;
    for await (const chunk of stream) {
      for (const delta of chunk.choices[0]?.delta.tool_calls ?? []) {
        if (!seen.has(delta.index)) {
          expect(delta).toMatchObject({ id: expect.stringMatching(/^call_/), type: 'function' });
          expect(delta.function?.arguments).toBe('');
          seen.add(delta.index);
        } else expect(delta.id).toBeUndefined();
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(seen.size).toBeGreaterThan(0);
    expect(['tool_calls', 'length']).toContain(finish);
  });

  it('carries an earlier tool call and its result into the prompt', async () => {
    const base: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather in Oslo?' }];
    const withResult: OpenAI.ChatCompletionMessageParam[] = [
      ...base,
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"city":"Oslo","unit":"c"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'Sunny, 21 degrees' },
    ];
    const ask = (messages: OpenAI.ChatCompletionMessageParam[]) =>
      harness.client.chat.completions.create({
        model: randomModel,
        messages,
        tools: [...tools],
        max_tokens: 1,
      });
    const [before, after] = [await ask(base), await ask(withResult)];
    // The call and the result text are in the prompt: at least one token per character of the result.
    expect((after.usage?.prompt_tokens ?? 0) - (before.usage?.prompt_tokens ?? 0)).toBeGreaterThan(
      'Sunny, 21 degrees'.length + 'get_weather'.length,
    );
  });
});

describe('the llama.cpp engine serves logprobs, several choices and sampling controls', () => {
  it('returns chat logprobs in OpenAI shape with the asked number of alternatives', async () => {
    const completion = await harness.client.chat.completions.create({
      model: randomModel,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 4,
      logprobs: true,
      top_logprobs: 2,
    });
    const content = completion.choices[0]?.logprobs?.content ?? [];
    expect(content).toHaveLength(4);
    expect(content.map((entry) => entry.token).join('')).toBe(completion.choices[0]?.message.content);
    for (const entry of content) {
      expect(entry.logprob).toBeLessThanOrEqual(0);
      expect(entry.bytes?.length).toBeGreaterThan(0);
      expect(entry.top_logprobs).toHaveLength(2);
      expect(entry.top_logprobs[0]?.logprob).toBeGreaterThanOrEqual(entry.top_logprobs[1]?.logprob ?? 0);
    }
  });

  it('returns legacy completions logprobs for each prompt of a prompt array, token ids included', async () => {
    const completion = await harness.client.completions.create({
      model: randomModel,
      prompt: [
        [5, 6, 7],
        [8, 9],
      ],
      max_tokens: 3,
      logprobs: 1,
    });
    expect(completion.choices.map((choice) => choice.index)).toEqual([0, 1]);
    for (const choice of completion.choices) {
      const logprobs = choice.logprobs;
      expect(logprobs?.tokens).toHaveLength(3);
      expect(logprobs?.token_logprobs).toHaveLength(3);
      expect(logprobs?.text_offset).toEqual([
        0,
        logprobs?.tokens?.[0]?.length,
        (logprobs?.tokens?.[0]?.length ?? 0) + (logprobs?.tokens?.[1]?.length ?? 0),
      ]);
      for (const top of logprobs?.top_logprobs ?? []) expect(Object.keys(top)).toHaveLength(1);
    }
    expect(completion.usage?.completion_tokens).toBe(6);
  });

  it('generates n choices as parallel sequences, streamed and whole, and refuses more than its slots', async () => {
    const request = {
      model: randomModel,
      messages: [{ role: 'user' as const, content: 'hi' }],
      max_tokens: 5,
      n: 2,
    };
    const whole = await harness.client.chat.completions.create(request);
    expect(whole.choices.map((choice) => choice.index)).toEqual([0, 1]);
    expect(whole.usage?.completion_tokens).toBe(10);
    const streamed = await harness.client.chat.completions.stream(request).finalChatCompletion();
    expect(streamed.choices).toHaveLength(2);
    for (const choice of streamed.choices) expect(choice.finish_reason).toBe('length');

    const refused = await postRaw(
      `${harness.url}/v1/chat/completions`,
      JSON.stringify({ ...request, n: 64 }),
    );
    expect(refused.status).toBe(400);
    expect(refused.json.error?.param).toBe('n');
  });

  it('frees every slot of a several-choice stream the client abandons', async () => {
    const stream = await harness.client.chat.completions.create({
      model: randomModel,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 2000,
      n: 3,
      stream: true,
    });
    for await (const chunk of stream) {
      if (chunk.choices.length > 0) break;
    }
    // All four slots must come back for n: 4 to run at all.
    const full = await harness.client.chat.completions.create({
      model: randomModel,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 2,
      n: 4,
    });
    expect(full.choices).toHaveLength(4);
  });

  it('reproduces a seed, and gives parallel requests without one different texts', async () => {
    const ask = (seed?: number) =>
      harness.client.chat.completions
        .create({
          model: randomModel,
          messages: [{ role: 'user', content: 'hi' }],
          max_tokens: 12,
          temperature: 1,
          ...(seed === undefined ? {} : { seed }),
        })
        .then((completion) => completion.choices[0]?.message.content);
    expect(await ask(-1)).toBe(await ask(-1));
    const unseeded = await Promise.all([ask(), ask(), ask(), ask()]);
    expect(new Set(unseeded).size).toBeGreaterThan(1);
    // Seeds that truncation to 32 bits would merge still differ.
    const merged = await Promise.all([ask(1), ask(2 ** 32 + 1), ask(0), ask(-1)]);
    expect(new Set(merged).size).toBe(4);
  });

  it('applies logit_bias: a banned token is never chosen', async () => {
    // The alphabet model continues 'a' with ' b c d …' at temperature 0; '▁b' is token 355.
    const ask = (logit_bias?: Record<string, number>) =>
      harness.client.completions
        .create({
          model: 'gravity-tiny',
          prompt: 'a',
          max_tokens: 3,
          temperature: 0,
          ...(logit_bias ? { logit_bias } : {}),
        })
        .then((completion) => completion.choices[0]?.text);
    expect(await ask()).toBe(' b c d');
    expect(await ask({ '355': -100 })).not.toMatch(/^ b/);
  });

  it('applies frequency and presence penalties and sampling extras', async () => {
    const ask = (extra: Record<string, unknown>) =>
      postRaw(
        `${harness.url}/v1/chat/completions`,
        JSON.stringify({
          model: randomModel,
          messages: [{ role: 'user', content: 'hi' }],
          max_tokens: 40,
          temperature: 0,
          ...extra,
        }),
      );
    const plain = await ask({});
    const penalised = await ask({ frequency_penalty: 2, presence_penalty: 2 });
    const extras = await ask({ top_k: 5, min_p: 0.05, repetition_penalty: 1.3 });
    for (const response of [plain, penalised, extras]) expect(response.status).toBe(200);
    const text = (response: typeof plain) =>
      (response.json as unknown as OpenAI.ChatCompletion).choices[0]?.message.content;
    // Greedy decoding repeats itself on this model; the penalties change what it writes.
    expect(text(penalised)).not.toBe(text(plain));
  });

  it('refuses an extra it does not serve with a 400 naming it', async () => {
    const response = await postRaw(
      `${harness.url}/v1/chat/completions`,
      JSON.stringify({
        model: randomModel,
        messages: [{ role: 'user', content: 'hi' }],
        chat_template_kwargs: { enable_thinking: false },
      }),
    );
    expect(response.status).toBe(400);
    expect(response.json.error?.param).toBe('chat_template_kwargs');
  });
});
