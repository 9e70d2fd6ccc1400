import type OpenAI from 'openai';
import { zodFunction, zodResponseFormat } from 'openai/helpers/zod';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  agentModel,
  expectValidAgainst,
  startAgentHarness,
  weatherParameters,
  weatherTool,
} from '../support/agent-harness.js';
import type { Harness } from '../support/gravity-harness.js';

/**
 * The official openai SDK (exact dev dependency) running agent-style traffic against a live Gravity with
 * an emulated replica: tool round trips with the returned message pushed back, structured outputs parsed
 * by the SDK's zod helper, the SDK's tool runner, and streamed tool calls assembled by the SDK.
 */

let harness: Harness;
let client: OpenAI;
beforeAll(async () => {
  harness = await startAgentHarness();
  client = harness.client;
});
afterAll(async () => {
  await harness?.close();
});

function parsedArguments(call: { type: string } | undefined): unknown {
  if (call?.type !== 'function') throw new Error(`not a function call: ${JSON.stringify(call)}`);
  return JSON.parse((call as unknown as { function: { arguments: string } }).function.arguments);
}

describe('the openai SDK against Gravity: agent loops', () => {
  it('runs a multi-turn tool round trip with each returned message pushed back into messages as is', async () => {
    const messages: ChatCompletionMessageParam[] = [
      { role: 'system', content: 'You answer weather questions.' },
      { role: 'user', content: 'What is the weather in Paris?' },
    ];
    const first = await client.chat.completions.create({ model: agentModel, messages, tools: [weatherTool] });
    const calling = first.choices[0];
    expect(calling?.finish_reason).toBe('tool_calls');
    // The assistant message as OpenAI returns it: content null, refusal null, the calls.
    expect(calling?.message).toMatchObject({ role: 'assistant', content: null, refusal: null });
    const call = calling?.message.tool_calls?.[0];
    expect(call).toMatchObject({ type: 'function', function: { name: 'get_weather' } });
    expect(call?.id).toMatch(/\S/);
    expectValidAgainst(weatherParameters, parsedArguments(call));

    // Pushed back untouched (refusal: null, content: null and all), then the tool's result.
    messages.push(calling?.message as ChatCompletionMessageParam);
    messages.push({
      role: 'tool',
      tool_call_id: call?.id ?? '',
      content: JSON.stringify({ temperature_c: 21 }),
    });
    const second = await client.chat.completions.create({
      model: agentModel,
      messages,
      tools: [weatherTool],
    });
    expect(second.choices[0]?.finish_reason).toBe('stop');
    expect(second.choices[0]?.message.tool_calls ?? []).toEqual([]);
    expect(second.choices[0]?.message.content).toMatch(/\S/);
    expect(second.choices[0]?.message.refusal).toBeNull();

    // And a further turn on the same history, without tools.
    messages.push(second.choices[0]?.message as ChatCompletionMessageParam);
    messages.push({ role: 'user', content: 'Thanks. And in one word?' });
    const third = await client.chat.completions.create({
      model: agentModel,
      messages,
      max_completion_tokens: 8,
    });
    expect(third.choices[0]?.message.content).toMatch(/\S/);
    expect(third.usage?.prompt_tokens).toBeGreaterThan(second.usage?.prompt_tokens ?? 0);
  });

  it('calls the named tool for a named tool_choice, and every tool for required', async () => {
    const clockTool = {
      type: 'function' as const,
      function: {
        name: 'get_time',
        parameters: { type: 'object', properties: { zone: { type: 'string' } }, required: ['zone'] },
      },
    };
    const named = await client.chat.completions.create({
      model: agentModel,
      messages: [{ role: 'user', content: 'Time in Paris?' }],
      tools: [weatherTool, clockTool],
      tool_choice: { type: 'function', function: { name: 'get_time' } },
    });
    expect(
      named.choices[0]?.message.tool_calls?.map(
        (call) => (call as { function: { name: string } }).function.name,
      ),
    ).toEqual(['get_time']);
    expectValidAgainst(
      clockTool.function.parameters,
      parsedArguments(named.choices[0]?.message.tool_calls?.[0]),
    );

    const required = await client.chat.completions.create({
      model: agentModel,
      messages: [{ role: 'user', content: 'Weather and time in Paris?' }],
      tools: [weatherTool, clockTool],
      tool_choice: 'required',
    });
    const calls = required.choices[0]?.message.tool_calls ?? [];
    expect(calls.map((call) => (call as { function: { name: string } }).function.name)).toEqual([
      'get_weather',
      'get_time',
    ]);
    expect(new Set(calls.map((call) => call.id)).size).toBe(2);
  });

  it('parses a structured output with chat.completions.parse and a zod schema', async () => {
    const Forecast = z.object({
      city: z.string(),
      temperature_c: z.number(),
      conditions: z.enum(['sunny', 'cloudy', 'rain']),
      hourly: z.array(z.object({ hour: z.number().int(), temperature_c: z.number() })),
    });
    const completion = await client.chat.completions.parse({
      model: agentModel,
      messages: [{ role: 'user', content: 'Forecast for Paris as JSON.' }],
      response_format: zodResponseFormat(Forecast, 'forecast'),
    });
    const message = completion.choices[0]?.message;
    expect(completion.choices[0]?.finish_reason).toBe('stop');
    expect(message?.refusal).toBeNull();
    // `parsed` is the SDK's own parse of the content with the zod schema: it throws if the JSON is invalid.
    expect(Forecast.parse(message?.parsed)).toEqual(JSON.parse(message?.content ?? ''));
  });

  it('parses strict tool arguments with zodFunction through chat.completions.parse', async () => {
    const WeatherArgs = z.object({ city: z.string(), unit: z.enum(['celsius', 'fahrenheit']) });
    const completion = await client.chat.completions.parse({
      model: agentModel,
      messages: [{ role: 'user', content: 'Weather in Oslo?' }],
      tools: [zodFunction({ name: 'get_weather', parameters: WeatherArgs })],
      tool_choice: 'required',
    });
    const call = completion.choices[0]?.message.tool_calls?.[0];
    expect(call?.type).toBe('function');
    const parsed = call?.type === 'function' ? call.function.parsed_arguments : undefined;
    expect(WeatherArgs.parse(parsed)).toEqual(parsedArguments(call));
  });

  it('runs a tool round trip with runTools: the SDK calls the function, sends its result, gets the answer', async () => {
    const calls: unknown[] = [];
    const runner = client.chat.completions.runTools({
      model: agentModel,
      messages: [{ role: 'user', content: 'What is the weather in Lisbon?' }],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Current weather for a city',
            parameters: weatherParameters,
            parse: JSON.parse,
            function: (args: { city: string; unit: string }) => {
              calls.push(args);
              return { city: args.city, temperature: 19, unit: args.unit };
            },
          },
        },
      ],
    });
    const answer = await runner.finalContent();
    expect(calls).toHaveLength(1);
    expectValidAgainst(weatherParameters, calls[0]);
    expect(answer).toMatch(/\S/);
    const roles = runner.messages.map((message) => message.role);
    expect(roles).toEqual(['user', 'assistant', 'tool', 'assistant']);
    const totalUsage = await runner.totalUsage();
    expect(totalUsage.completion_tokens).toBeGreaterThan(0);
  });

  it('assembles streamed tool calls with chat.completions.stream and finalChatCompletion', async () => {
    const argumentDeltas: string[] = [];
    const stream = client.chat.completions.stream({
      model: agentModel,
      messages: [{ role: 'user', content: 'Weather in Rome?' }],
      tools: [weatherTool],
      stream_options: { include_usage: true },
    });
    stream.on('tool_calls.function.arguments.delta', (event) => {
      argumentDeltas.push(event.arguments_delta);
    });
    const done: string[] = [];
    stream.on('tool_calls.function.arguments.done', (event) => {
      done.push(event.arguments);
    });
    const completion = await stream.finalChatCompletion();
    const call = completion.choices[0]?.message.tool_calls?.[0];
    expect(completion.choices[0]?.finish_reason).toBe('tool_calls');
    expect(call).toMatchObject({ type: 'function', function: { name: 'get_weather' } });
    const args = (call as { function: { arguments: string } }).function.arguments;
    // Arguments arrive in several deltas that add up to the whole JSON, as OpenAI streams them.
    expect(argumentDeltas.length).toBeGreaterThan(1);
    expect(argumentDeltas.join('')).toBe(args);
    expect(done).toEqual([args]);
    expectValidAgainst(weatherParameters, JSON.parse(args));
    expect(completion.usage?.completion_tokens).toBeGreaterThan(0);
  });

  it('streams the same message as the non-streamed answer for the same request', async () => {
    const request = {
      model: agentModel,
      messages: [{ role: 'user' as const, content: 'Weather in Madrid?' }],
      tools: [weatherTool],
      seed: 11,
    };
    const whole = await client.chat.completions.create(request);
    const streamed = await client.chat.completions.stream(request).finalChatCompletion();
    // `parsed` is the SDK stream helper's own field, not part of the wire message.
    const { parsed: _parsed, ...streamedMessage } = { ...streamed.choices[0]?.message };
    expect(streamedMessage).toEqual(whole.choices[0]?.message);
  });

  it('streams a structured output that the SDK parses as it arrives and at the end', async () => {
    const Forecast = z.object({ city: z.string(), temperature_c: z.number(), rain: z.boolean() });
    const partials: unknown[] = [];
    const stream = client.chat.completions.stream({
      model: agentModel,
      messages: [{ role: 'user', content: 'Forecast for Paris as JSON.' }],
      response_format: zodResponseFormat(Forecast, 'forecast'),
    });
    stream.on('content.delta', (event) => {
      if (event.parsed != null) partials.push(event.parsed);
    });
    const completion = await stream.finalChatCompletion();
    const parsed = completion.choices[0]?.message.parsed;
    expect(Forecast.parse(parsed)).toEqual(parsed);
    expect(partials.length).toBeGreaterThan(1);
    expect(partials.at(-1)).toEqual(parsed);
  });

  it('streams several choices with logprobs, assembled by the SDK as the non-streamed answer has them', async () => {
    const request = {
      model: agentModel,
      messages: [{ role: 'user' as const, content: 'Two short greetings.' }],
      n: 2,
      logprobs: true,
      top_logprobs: 2,
      max_completion_tokens: 6,
      seed: 5,
    };
    // OpenAI opens each choice with a delta that carries the role and no token. The SDK relies on it: a
    // choice whose first chunk already has logprobs gets them twice (ChatCompletionStream creates the
    // choice with the chunk's logprobs, then appends the same chunk's logprobs to them).
    const raw = await fetch(`${harness.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...request, stream: true }),
    });
    const chunks = (await raw.text())
      .split('\n\n')
      .filter((event) => event.startsWith('data: {'))
      .map((event) => JSON.parse(event.slice('data: '.length)));
    for (const index of [0, 1]) {
      const first = chunks.find((chunk) => chunk.choices[0]?.index === index)?.choices[0];
      expect(first, `choice ${index}'s first chunk`).toMatchObject({
        delta: { role: 'assistant', content: '' },
      });
      // OpenAI's opener has `"logprobs":{"content":[]}` when logprobs are on (BerriAI/litellm#3276 shows one).
      expect(first?.logprobs?.content ?? [], `choice ${index}'s first chunk`).toEqual([]);
    }
    const whole = await client.chat.completions.create(request);
    const streamed = await client.chat.completions.stream(request).finalChatCompletion();
    expect(whole.choices).toHaveLength(2);
    for (const completion of [whole, streamed]) {
      for (const choice of completion.choices) {
        expect(choice.finish_reason).toBe('length');
        // One logprob entry per token, each with its two alternatives, adding up to the text.
        expect(choice.logprobs?.content).toHaveLength(6);
        expect(choice.logprobs?.content?.map((entry) => entry.token).join('')).toBe(choice.message.content);
        expect(choice.logprobs?.content?.every((entry) => entry.top_logprobs.length === 2)).toBe(true);
      }
    }
    const messages = (completion: typeof whole) =>
      completion.choices.map((choice) => ({
        index: choice.index,
        content: choice.message.content,
        logprobs: choice.logprobs,
      }));
    expect(messages(streamed)).toEqual(messages(whole));
  });

  it('accepts the request fields current SDKs send (prompt_cache_key, safety_identifier, verbosity, include_obfuscation, a 64-bit seed)', async () => {
    const stream = await client.chat.completions.create({
      model: agentModel,
      messages: [
        { role: 'developer', content: 'Be brief.' },
        { role: 'user', content: 'Hi.' },
      ],
      prompt_cache_key: 'session-42',
      safety_identifier: 'user-hash-1f2e',
      verbosity: 'low',
      metadata: { run: 'clients-test' },
      store: false,
      seed: 2 ** 53 + 2, // above 2^53, as 64-bit seeds are
      max_completion_tokens: 4,
      stream: true,
      stream_options: { include_usage: true, include_obfuscation: false },
    });
    let text = '';
    let completionTokens: number | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    }
    expect(text).toMatch(/\S/);
    expect(completionTokens).toBe(4);
  });

  it('completes several prompts, as strings and as token arrays, in one completions request', async () => {
    const completion = await client.completions.create({
      model: agentModel,
      prompt: ['Once upon a time', 'The capital of France'],
      max_tokens: 3,
    });
    expect(completion.choices.map((choice) => choice.index)).toEqual([0, 1]);
    for (const choice of completion.choices) expect(choice.text).toMatch(/\S/);
    const fromTokens = await client.completions.create({
      model: agentModel,
      prompt: [
        [1, 2, 3],
        [4, 5],
      ],
      max_tokens: 2,
    });
    expect(fromTokens.choices).toHaveLength(2);
    expect(fromTokens.usage?.completion_tokens).toBe(4);
  });
});
