import { createOpenAI } from '@ai-sdk/openai';
import { tool as langchainTool } from '@langchain/core/tools';
import { ChatOpenAI } from '@langchain/openai';
import { generateText, stepCountIs, streamText, tool } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type CaptureUpstream, readCapture, startCaptureUpstream } from '../support/capture-upstream.js';
import { type Harness, startHarness } from '../support/gravity-harness.js';

/**
 * The three client libraries reading what Gravity relays from real servers' streams (the recorded vLLM
 * and llama-server captures in test/fixtures/sse-captures/, played by a loopback upstream): each must
 * find the tool call the server made, streamed and non-streamed, through Gravity's rewritten chunks.
 */

const servers = [
  { name: 'vLLM', model: 'g-vllm', capture: readCapture('vllm-chat-tool-call-reasoning.sse') },
  {
    name: 'llama-server',
    model: 'g-llama-server',
    capture: readCapture('llama-server-chat-tool-call-reasoning.sse'),
  },
];
const expectedArguments = { city: 'Paris', unit: 'celsius' };
const WeatherInput = z.object({ city: z.string(), unit: z.enum(['celsius', 'fahrenheit']) });

let upstream: CaptureUpstream;
let gravity: Harness;
beforeAll(async () => {
  upstream = await startCaptureUpstream(
    Object.fromEntries(
      servers.map(({ model, capture }) => [
        model.slice(2),
        { kind: 'capture' as const, raw: capture.raw, pieces: 4 },
      ]),
    ),
  );
  gravity = await startHarness(undefined, {
    engines: { captures: { type: 'openai-upstream', baseUrl: upstream.url, connectTimeoutMs: 5000 } },
    models: Object.fromEntries(
      servers.map(({ model }) => [model, { engine: 'captures', upstreamModel: model.slice(2) }]),
    ),
  });
});
afterAll(async () => {
  await gravity?.close();
  await upstream?.close();
});

describe('client libraries reading real servers’ tool-call streams relayed by Gravity', () => {
  for (const { name, model } of servers) {
    it(`openai SDK: finds ${name}'s tool call in the stream and in the non-streamed answer`, async () => {
      const request = {
        model,
        messages: [{ role: 'user' as const, content: 'Weather in Paris?' }],
        tools: [
          {
            type: 'function' as const,
            function: {
              name: 'get_weather',
              parameters: z.toJSONSchema(WeatherInput) as Record<string, unknown>,
            },
          },
        ],
      };
      for (const completion of [
        await gravity.client.chat.completions.stream(request).finalChatCompletion(),
        await gravity.client.chat.completions.create(request),
      ]) {
        const call = completion.choices[0]?.message.tool_calls?.[0];
        expect(call?.type === 'function' ? call.function.name : undefined).toBe('get_weather');
        expect(JSON.parse(call?.type === 'function' ? call.function.arguments : '')).toEqual(
          expectedArguments,
        );
        expect(completion.choices[0]?.finish_reason).toBe('tool_calls');
      }
    });

    it(`Vercel AI SDK: streamText and generateText read ${name}'s tool call through openai.chat`, async () => {
      const provider = createOpenAI({ baseURL: `${gravity.url}/v1`, apiKey: 'unused' });
      const tools = { get_weather: tool({ description: 'Current weather', inputSchema: WeatherInput }) };
      const streamed = streamText({
        model: provider.chat(model),
        tools,
        prompt: 'Weather in Paris?',
        maxRetries: 0,
      });
      for await (const part of streamed.fullStream) if (part.type === 'error') throw part.error;
      const streamedCalls = await streamed.toolCalls;
      expect(streamedCalls.map((call) => [call.toolName, call.input])).toEqual([
        ['get_weather', expectedArguments],
      ]);
      expect(await streamed.finishReason).toBe('tool-calls');

      const whole = await generateText({
        model: provider.chat(model),
        tools,
        stopWhen: stepCountIs(1),
        prompt: 'Weather in Paris?',
        maxRetries: 0,
      });
      expect(whole.toolCalls.map((call) => [call.toolName, call.input])).toEqual([
        ['get_weather', expectedArguments],
      ]);
    });

    it(`LangChain: bindTools reads ${name}'s tool call, invoked and streamed`, async () => {
      const chat = new ChatOpenAI({
        model,
        apiKey: 'unused',
        configuration: { baseURL: `${gravity.url}/v1` },
        maxRetries: 0,
      }).bindTools([
        langchainTool(async () => '', {
          name: 'get_weather',
          description: 'Current weather',
          schema: WeatherInput,
        }),
      ]);
      const invoked = await chat.invoke('Weather in Paris?');
      expect(invoked.tool_calls?.map((call) => [call.name, call.args])).toEqual([
        ['get_weather', expectedArguments],
      ]);

      let streamed: Awaited<ReturnType<typeof chat.invoke>> | undefined;
      for await (const chunk of await chat.stream('Weather in Paris?'))
        streamed = streamed ? streamed.concat(chunk) : chunk;
      expect(streamed?.tool_calls?.map((call) => [call.name, call.args])).toEqual([
        ['get_weather', expectedArguments],
      ]);
    });
  }
});
