import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { APIError } from 'openai';
import { zodFunction, zodResponseFormat } from 'openai/helpers/zod';
import type { ChatCompletionTool } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type Harness, startHarness } from './support/gravity-harness.js';

/**
 * The emulated engine's answers to agent traffic, through a live Gravity and the official openai SDK:
 * tool calls (streamed and not), structured outputs, the tool round trip of an agent loop, logprobs,
 * n > 1, media inputs, and a mixed fleet where only some replicas serve tools.
 */
const fastReplica = {
  type: 'emulated',
  hardware: 'h200',
  model: 'llama-3.1-8b',
  weightDtype: 'fp8',
  contextTokens: 4096,
};

let harness: Harness;
beforeAll(async () => {
  harness = await startHarness(undefined, {
    // Round robin, so plain requests visibly spread over both replicas of the mixed model.
    routing: { policy: 'round-robin' },
    engines: {
      agent: fastReplica,
      // A mixed fleet: one replica serves tools, the other only plain text.
      'with-tools': fastReplica,
      'text-only': { ...fastReplica, servedFeatures: [] },
      'plain-only': { ...fastReplica, servedFeatures: [] },
    },
    models: {
      'llama-3.1-8b': { engine: 'agent' },
      mixed: { engines: ['with-tools', 'text-only'] },
      plain: { engine: 'plain-only' },
    },
  });
});
afterAll(async () => {
  await harness?.close();
});

const ajv = addFormats.default(new Ajv({ strict: false, allErrors: true }));

const weatherTool: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string', minLength: 2 },
        unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
        days: { type: 'integer', minimum: 1, maximum: 7 },
      },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};
const timeTool: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_time',
    parameters: {
      type: 'object',
      properties: { zone: { type: 'string' } },
      required: ['zone'],
      additionalProperties: false,
    },
  },
};

function argumentsValid(tool: ChatCompletionTool, text: string): boolean {
  if (tool.type !== 'function') return false;
  return ajv.validate(tool.function.parameters ?? {}, JSON.parse(text));
}

describe('emulated tool calls through the openai SDK', () => {
  it('calls the named function with arguments that validate, finish_reason tool_calls', async () => {
    const completion = await harness.client.chat.completions.create({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
      tools: [timeTool, weatherTool],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    const choice = completion.choices[0];
    expect(choice?.finish_reason).toBe('tool_calls');
    expect(choice?.message.content).toBeNull();
    const calls = choice?.message.tool_calls ?? [];
    expect(calls).toHaveLength(1);
    const call = calls[0];
    if (call?.type !== 'function') throw new Error('expected a function call');
    expect(call.id).toMatch(/^call_[A-Za-z0-9]{24}$/);
    expect(call.function.name).toBe('get_weather');
    expect(argumentsValid(weatherTool, call.function.arguments)).toBe(true);
    // Tool-call tokens are completion tokens: the name's and four characters of arguments per token.
    const expectedTokens =
      Math.ceil('get_weather'.length / 4) + Math.ceil(call.function.arguments.length / 4);
    expect(completion.usage?.completion_tokens).toBe(expectedTokens);
    expect(completion.usage?.prompt_tokens).toBeGreaterThan(
      Math.ceil('What is the weather in Paris?'.length / 4),
    );
  });

  it('streams tool calls in OpenAI’s delta shape that the SDK assembles into the non-streamed answer', async () => {
    const body = {
      model: 'llama-3.1-8b',
      messages: [{ role: 'user' as const, content: 'Weather and time in Oslo, please.' }],
      tools: [weatherTool, timeTool],
      tool_choice: 'required' as const,
      seed: 11,
    };
    const whole = await harness.client.chat.completions.create(body);
    const stream = harness.client.chat.completions.stream({
      ...body,
      stream_options: { include_usage: true },
    });
    let argumentDeltas = 0;
    let headers = 0;
    for await (const chunk of stream) {
      for (const call of chunk.choices[0]?.delta.tool_calls ?? []) {
        if (call.id) headers++;
        else if (call.function?.arguments) argumentDeltas++;
      }
    }
    const assembled = await stream.finalChatCompletion();
    const streamedChoice = assembled.choices[0];
    const wholeChoice = whole.choices[0];
    // `required` with parallel tool calls on (the default): one call per tool, in order.
    expect(
      wholeChoice?.message.tool_calls?.map((call) => (call.type === 'function' ? call.function.name : '')),
    ).toEqual(['get_weather', 'get_time']);
    expect(streamedChoice?.message.tool_calls).toEqual(wholeChoice?.message.tool_calls);
    expect(streamedChoice?.finish_reason).toBe('tool_calls');
    expect(headers).toBe(2);
    expect(argumentDeltas).toBeGreaterThan(4);
    expect(assembled.usage?.completion_tokens).toBe(whole.usage?.completion_tokens);
  });

  it('with parallel_tool_calls false, `required` calls only the first tool', async () => {
    const completion = await harness.client.chat.completions.create({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'Anything.' }],
      tools: [timeTool, weatherTool],
      tool_choice: 'required',
      parallel_tool_calls: false,
    });
    const calls = completion.choices[0]?.message.tool_calls ?? [];
    expect(calls.map((call) => (call.type === 'function' ? call.function.name : ''))).toEqual(['get_time']);
  });

  it('does one agent round trip with runTools: auto calls the first tool, then answers the tool result', async () => {
    const invocations: Array<{ city: string; unit: string }> = [];
    const runner = harness.client.chat.completions.runTools({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'Should I take an umbrella in Lyon?' }],
      tools: [
        zodFunction({
          name: 'get_weather',
          parameters: z.object({ city: z.string(), unit: z.enum(['celsius', 'fahrenheit']) }),
          function: (args) => {
            invocations.push(args);
            return { forecast: 'rain', temperature: 12 };
          },
        }),
      ],
      // No max_tokens: the emulated model talks until max_tokens cuts it off (finish_reason `length`),
      // which the SDK's parsing helpers refuse; without it the answer ends with `stop`.
    });
    const content = await runner.finalContent();
    expect(invocations).toHaveLength(1);
    expect(['celsius', 'fahrenheit']).toContain(invocations[0]?.unit);
    expect(content).toMatch(/^( [A-Za-z]+\.?)+$/);
    const messages = runner.messages.map((message) => message.role);
    expect(messages).toEqual(['user', 'assistant', 'tool', 'assistant']);
  });

  it('answers with text when tool_choice is none', async () => {
    const completion = await harness.client.chat.completions.create({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'Just talk.' }],
      tools: [weatherTool],
      tool_choice: 'none',
      max_tokens: 5,
    });
    expect(completion.choices[0]?.message.tool_calls ?? []).toHaveLength(0);
    expect(completion.choices[0]?.message.content?.trim().split(' ')).toHaveLength(5);
  });

  it('cuts a tool call at max_tokens with finish_reason length', async () => {
    const completion = await harness.client.chat.completions.create({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'Weather?' }],
      tools: [weatherTool],
      max_tokens: 5,
    });
    const choice = completion.choices[0];
    expect(choice?.finish_reason).toBe('length');
    expect(completion.usage?.completion_tokens).toBe(5);
    const call = choice?.message.tool_calls?.[0];
    expect(call?.type === 'function' && call.function.arguments.length).toBe((5 - 3) * 4);
  });
});

describe('emulated structured outputs through the openai SDK', () => {
  const Answer = z.object({
    title: z.string(),
    steps: z.array(z.object({ explanation: z.string(), output: z.number() })),
    tags: z.array(z.enum(['fast', 'cheap', 'green'])).min(1),
    contact: z.object({ email: z.email(), site: z.url().nullable() }),
  });

  it('parses a json_schema answer with chat.completions.parse, and it validates against the schema', async () => {
    const format = zodResponseFormat(Answer, 'answer');
    const completion = await harness.client.chat.completions.parse({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'Plan a fleet.' }],
      response_format: format,
    });
    const message = completion.choices[0]?.message;
    expect(message?.parsed).not.toBeNull();
    expect(Answer.safeParse(message?.parsed).success).toBe(true);
    expect(ajv.validate(format.json_schema.schema as object, JSON.parse(message?.content ?? ''))).toBe(true);
    expect(completion.choices[0]?.finish_reason).toBe('stop');
    expect(completion.usage?.completion_tokens).toBe(Math.ceil((message?.content ?? '').length / 4));
  });

  it('streams the same JSON in pieces', async () => {
    const body = {
      model: 'llama-3.1-8b',
      messages: [{ role: 'user' as const, content: 'Plan a fleet, streamed.' }],
      response_format: zodResponseFormat(Answer, 'answer'),
    };
    const whole = await harness.client.chat.completions.create(body);
    const stream = await harness.client.chat.completions.create({ ...body, stream: true });
    const pieces: string[] = [];
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content;
      if (content) pieces.push(content);
    }
    expect(pieces.length).toBeGreaterThan(5);
    expect(pieces.join('')).toBe(whole.choices[0]?.message.content);
  });

  it('answers json_object with a JSON object', async () => {
    const completion = await harness.client.chat.completions.create({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'Reply in JSON.' }],
      response_format: { type: 'json_object' },
    });
    const value = JSON.parse(completion.choices[0]?.message.content ?? '');
    expect(typeof value).toBe('object');
    expect(Array.isArray(value)).toBe(false);
  });

  it('refuses a schema that points nowhere with a 400 naming response_format', async () => {
    const error = await harness.client.chat.completions
      .create({
        model: 'llama-3.1-8b',
        messages: [{ role: 'user', content: 'x' }],
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'broken', schema: { $ref: '#/$defs/missing' } },
        },
      })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).status).toBe(400);
    expect((error as APIError).param).toBe('response_format');
    expect((error as APIError).message).toContain('#/$defs/missing');
  });
});

describe('emulated logprobs, n, media and prompts through the openai SDK', () => {
  it('returns modelled logprobs in OpenAI’s shape, one entry per token', async () => {
    const completion = await harness.client.chat.completions.create({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'Some words with their odds.' }],
      max_tokens: 6,
      logprobs: true,
      top_logprobs: 2,
    });
    const choice = completion.choices[0];
    const entries = choice?.logprobs?.content ?? [];
    expect(entries).toHaveLength(6);
    expect(entries.map((entry) => entry.token).join('')).toBe(choice?.message.content);
    for (const entry of entries) {
      expect(entry.logprob).toBeLessThan(0);
      expect(entry.top_logprobs).toHaveLength(2);
    }
  });

  it('answers n choices, the same streamed (as the SDK assembles them) as not', async () => {
    const body = {
      model: 'llama-3.1-8b',
      messages: [{ role: 'user' as const, content: 'Three takes, please.' }],
      max_tokens: 7,
      n: 3,
    };
    const whole = await harness.client.chat.completions.create(body);
    expect(whole.choices.map((choice) => choice.index)).toEqual([0, 1, 2]);
    expect(new Set(whole.choices.map((choice) => choice.message.content)).size).toBe(3);
    expect(whole.usage?.completion_tokens).toBe(21);
    const stream = harness.client.chat.completions.stream({
      ...body,
      stream_options: { include_usage: true },
    });
    const assembled = await stream.finalChatCompletion();
    expect(
      assembled.choices.map((choice) => [choice.index, choice.message.content, choice.finish_reason]),
    ).toEqual(whole.choices.map((choice) => [choice.index, choice.message.content, 'length']));
    expect(assembled.usage?.completion_tokens).toBe(21);
  });

  it('counts an image part as prompt tokens at the fixed estimate', async () => {
    const text = 'What is in this picture?';
    const completion = await harness.client.chat.completions.create({
      model: 'llama-3.1-8b',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' } },
          ],
        },
      ],
      max_tokens: 3,
    });
    expect(completion.usage?.prompt_tokens).toBe(Math.ceil(text.length / 4) + 85);
  });

  it('accepts penalties, logit_bias and vendor extras, which the synthetic text ignores', async () => {
    const base = {
      model: 'llama-3.1-8b',
      messages: [{ role: 'user' as const, content: 'Same words either way.' }],
      max_tokens: 8,
    };
    const plain = await harness.client.chat.completions.create(base);
    const tuned = await harness.client.chat.completions.create({
      ...base,
      presence_penalty: 0.5,
      frequency_penalty: 0.5,
      logit_bias: { '42': -100 },
      // @ts-expect-error vLLM's sampling extras are not in the SDK's types
      top_k: 20,
      min_p: 0.05,
      repetition_penalty: 1.1,
      chat_template_kwargs: { enable_thinking: false },
    });
    expect(tuned.choices[0]?.message.content).toBe(plain.choices[0]?.message.content);
  });

  it('answers several completion prompts, one choice each', async () => {
    const completion = await harness.client.completions.create({
      model: 'llama-3.1-8b',
      prompt: ['Once upon a time', 'The gateway'],
      max_tokens: 4,
    });
    expect(completion.choices.map((choice) => choice.index)).toEqual([0, 1]);
    for (const choice of completion.choices) expect(choice.text.trim().split(' ')).toHaveLength(4);
    expect(completion.usage?.completion_tokens).toBe(8);
  });
});

describe('a mixed emulated fleet', () => {
  it('routes tool requests only to the replica serving tools, plain ones to either', async () => {
    const replicaOf = (response: Response) =>
      (JSON.parse(response.headers.get('x-gravity-route') ?? '{}') as { replica?: string }).replica;
    const toolReplicas = new Set<string | undefined>();
    for (let index = 0; index < 6; index++) {
      const { response } = await harness.client.chat.completions
        .create({
          model: 'mixed',
          messages: [{ role: 'user', content: `Weather ${index}?` }],
          tools: [weatherTool],
        })
        .withResponse();
      toolReplicas.add(replicaOf(response));
    }
    expect(toolReplicas).toEqual(new Set(['with-tools']));
    const plainReplicas = new Set<string | undefined>();
    for (let index = 0; index < 6; index++) {
      const { response } = await harness.client.chat.completions
        .create({ model: 'mixed', messages: [{ role: 'user', content: `Hello ${index}` }], max_tokens: 2 })
        .withResponse();
      plainReplicas.add(replicaOf(response));
    }
    expect(plainReplicas).toEqual(new Set(['with-tools', 'text-only']));
  });

  it('refuses a feature no replica of the model serves with a 400 naming the parameter', async () => {
    const error = await harness.client.chat.completions
      .create({ model: 'plain', messages: [{ role: 'user', content: 'x' }], tools: [weatherTool] })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).status).toBe(400);
    expect((error as APIError).param).toBe('tools');
    expect((error as APIError).message).toContain('plain-only');
  });
});
