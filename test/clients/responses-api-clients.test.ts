import { createOpenAI } from '@ai-sdk/openai';
import type { AIMessageChunk } from '@langchain/core/messages';
import { HumanMessage } from '@langchain/core/messages';
import { tool as langchainTool } from '@langchain/core/tools';
import { ChatOpenAI } from '@langchain/openai';
import { generateObject, generateText, stepCountIs, streamText, tool } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { agentModel, startAgentHarness } from '../support/agent-harness.js';
import type { Harness } from '../support/gravity-harness.js';

/**
 * The clients whose default path is the Responses API, against a live Gravity with an emulated replica:
 * the Vercel AI SDK's default provider model (`createOpenAI(...)(id)` calls `POST /v1/responses`) and
 * LangChain's `ChatOpenAI({ useResponsesApi: true })`.
 */

let harness: Harness;
let provider: ReturnType<typeof createOpenAI>;
let chat: ChatOpenAI;
beforeAll(async () => {
  harness = await startAgentHarness();
  provider = createOpenAI({ baseURL: `${harness.url}/v1`, apiKey: 'unused' });
  chat = new ChatOpenAI({
    model: agentModel,
    apiKey: 'unused',
    configuration: { baseURL: `${harness.url}/v1` },
    maxRetries: 0,
    useResponsesApi: true,
  });
});
afterAll(async () => {
  await harness?.close();
});

const Recipe = z.object({
  name: z.string(),
  servings: z.number().int(),
  ingredients: z.array(z.object({ item: z.string(), grams: z.number() })),
});
const WeatherInput = z.object({ city: z.string(), unit: z.enum(['celsius', 'fahrenheit']) });

describe("the Vercel AI SDK's default (Responses) provider model against Gravity", () => {
  it('generates text with generateText and reports usage and the finish reason', async () => {
    const { text, finishReason, usage, response } = await generateText({
      model: provider(agentModel),
      system: 'Be brief.',
      prompt: 'Say hello.',
      maxOutputTokens: 12,
      maxRetries: 0,
    });
    expect(text).toMatch(/\S/);
    expect(finishReason).toBe('length');
    expect(usage.outputTokens).toBe(12);
    expect(response.modelId).toBe(agentModel);
  });

  it('streams text with streamText', async () => {
    const result = streamText({ model: provider(agentModel), prompt: 'Stream a greeting.', maxRetries: 0 });
    let deltas = 0;
    for await (const part of result.fullStream) {
      if (part.type === 'error') throw part.error;
      if (part.type === 'text-delta') deltas++;
    }
    expect(deltas).toBeGreaterThan(1);
    expect(await result.text).toMatch(/\S/);
    expect((await result.usage).outputTokens).toBeGreaterThan(0);
  });

  it('generates an object valid against a zod schema with generateObject', async () => {
    const { object } = await generateObject({
      model: provider(agentModel),
      schema: Recipe,
      prompt: 'A pancake recipe.',
      maxRetries: 0,
    });
    expect(Recipe.parse(object)).toEqual(object);
  });

  it('runs a streamed tool loop: the call, its execution, then the answer', async () => {
    const result = streamText({
      model: provider(agentModel),
      tools: {
        weather: tool({
          description: 'Current weather for a city',
          inputSchema: WeatherInput,
          execute: async ({ city, unit }) => ({ city, unit, temperature: 17 }),
        }),
      },
      stopWhen: stepCountIs(3),
      prompt: 'What is the weather in Berlin?',
      maxRetries: 0,
    });
    for await (const part of result.fullStream) if (part.type === 'error') throw part.error;
    const steps = await result.steps;
    expect(steps).toHaveLength(2);
    expect(steps[0]?.finishReason).toBe('tool-calls');
    expect(WeatherInput.parse(steps[0]?.toolCalls[0]?.input)).toEqual(steps[0]?.toolCalls[0]?.input);
    expect(steps[1]?.finishReason).toBe('stop');
    expect(await result.text).toMatch(/\S/);
  });
});

describe('LangChain ChatOpenAI with useResponsesApi against Gravity', () => {
  const getWeather = langchainTool(
    async ({ city, unit }) => JSON.stringify({ city, unit, temperature: 23 }),
    {
      name: 'get_weather',
      description: 'Current weather for a city',
      schema: WeatherInput,
    },
  );

  it('invokes and reports usage', async () => {
    const answer = await chat.invoke([new HumanMessage('Say hello.')]);
    expect(answer.text).toMatch(/\S/);
    expect(answer.usage_metadata?.output_tokens).toBeGreaterThan(0);
    expect(answer.id ?? answer.response_metadata.id).toMatch(/^(resp|msg)_/);
  });

  it('streams text chunks', async () => {
    let message: AIMessageChunk | undefined;
    let chunks = 0;
    for await (const chunk of await chat.stream('Stream a greeting.')) {
      message = message ? message.concat(chunk) : chunk;
      chunks++;
    }
    expect(chunks).toBeGreaterThan(2);
    expect(message?.text).toMatch(/\S/);
  });

  it('calls a bound tool and answers once it has the result', async () => {
    const withTools = chat.bindTools([getWeather]);
    const question = new HumanMessage('Weather in Athens?');
    const calling = await withTools.invoke([question]);
    expect(calling.tool_calls).toHaveLength(1);
    const call = calling.tool_calls?.[0];
    expect(WeatherInput.parse(call?.args)).toEqual(call?.args);
    const result = await getWeather.invoke(call as NonNullable<typeof call>);
    const answer = await withTools.invoke([question, calling, result]);
    expect(answer.tool_calls ?? []).toEqual([]);
    expect(answer.text).toMatch(/\S/);
  });

  it('answers structured output valid against a zod schema', async () => {
    const structured = chat.withStructuredOutput(Recipe, { method: 'jsonSchema' });
    const recipe = await structured.invoke('A soup recipe.');
    expect(Recipe.parse(recipe)).toEqual(recipe);
  });
});

describe('what the clients called', () => {
  it('served every request above on /v1/responses, none on chat completions', async () => {
    const metrics = await (await fetch(`${harness.url}/metrics`)).text();
    expect(metrics).toMatch(
      /gravity_requests_total\{endpoint="responses",model="agent-8b",status="200"\} \d+/,
    );
    expect(metrics).not.toMatch(/gravity_requests_total\{endpoint="chat.completions"/);
  });
});
