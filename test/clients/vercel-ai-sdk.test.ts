import { createOpenAI } from '@ai-sdk/openai';
import { generateObject, generateText, Output, stepCountIs, streamText, tool } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { agentModel, startAgentHarness } from '../support/agent-harness.js';
import type { Harness } from '../support/gravity-harness.js';

/**
 * The Vercel AI SDK (`ai` and `@ai-sdk/openai`, exact dev dependencies) against a live Gravity with an
 * emulated replica, through the provider's chat-completions model (`openai.chat`): structured objects,
 * a streamed tool loop that executes the tool and answers, and plain generation.
 */

let harness: Harness;
let provider: ReturnType<typeof createOpenAI>;
beforeAll(async () => {
  harness = await startAgentHarness();
  provider = createOpenAI({ baseURL: `${harness.url}/v1`, apiKey: 'unused' });
});
afterAll(async () => {
  await harness?.close();
});

const Recipe = z.object({
  name: z.string(),
  servings: z.number().int(),
  ingredients: z.array(z.object({ item: z.string(), grams: z.number() })),
  vegetarian: z.boolean(),
});

const WeatherInput = z.object({ city: z.string(), unit: z.enum(['celsius', 'fahrenheit']) });
const weather = tool({
  description: 'Current weather for a city',
  inputSchema: WeatherInput,
  execute: async ({ city, unit }) => ({ city, unit, temperature: 17 }),
});

describe('the Vercel AI SDK against Gravity', () => {
  it('generates an object valid against a zod schema with generateObject', async () => {
    const { object, finishReason, usage } = await generateObject({
      model: provider.chat(agentModel),
      schema: Recipe,
      prompt: 'A pancake recipe.',
      maxRetries: 0,
    });
    expect(finishReason).toBe('stop');
    expect(Recipe.parse(object)).toEqual(object);
    expect(usage.outputTokens).toBeGreaterThan(0);
  });

  it('generates the same kind of object with generateText and Output.object (generateObject’s successor)', async () => {
    const { output } = await generateText({
      model: provider.chat(agentModel),
      output: Output.object({ schema: Recipe }),
      prompt: 'A soup recipe.',
      maxRetries: 0,
    });
    expect(Recipe.parse(output)).toEqual(output);
  });

  it('streams a tool loop with streamText: the tool call, its execution, then the streamed answer', async () => {
    const result = streamText({
      model: provider.chat(agentModel),
      tools: { weather },
      stopWhen: stepCountIs(3),
      prompt: 'What is the weather in Berlin?',
      maxRetries: 0,
    });
    const partTypes = new Set<string>();
    for await (const part of result.fullStream) {
      partTypes.add(part.type);
      if (part.type === 'error') throw part.error;
    }
    const steps = await result.steps;
    expect(steps).toHaveLength(2);
    expect(steps[0]?.finishReason).toBe('tool-calls');
    const call = steps[0]?.toolCalls[0];
    expect(call?.toolName).toBe('weather');
    expect(WeatherInput.parse(call?.input)).toEqual(call?.input);
    expect(steps[0]?.toolResults[0]?.output).toMatchObject({ temperature: 17 });
    expect(steps[1]?.finishReason).toBe('stop');
    expect(await result.text).toMatch(/\S/);
    // Streamed: tool input arrived as deltas, the answer as text deltas.
    expect([...partTypes]).toEqual(
      expect.arrayContaining(['tool-input-delta', 'tool-call', 'tool-result', 'text-delta']),
    );
  });

  it('generates text with openai.chat and reports usage and the finish reason', async () => {
    const { text, finishReason, usage, response } = await generateText({
      model: provider.chat(agentModel),
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

  it('streams a partial object with streamText and Output.object, ending in the whole valid object', async () => {
    const result = streamText({
      model: provider.chat(agentModel),
      output: Output.object({ schema: Recipe }),
      prompt: 'A salad recipe.',
      maxRetries: 0,
    });
    let partials = 0;
    for await (const _partial of result.partialOutputStream) partials++;
    const output = await result.output;
    expect(Recipe.parse(output)).toEqual(output);
    expect(partials).toBeGreaterThan(1);
  });
});
