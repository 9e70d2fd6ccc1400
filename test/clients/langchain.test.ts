import type { AIMessageChunk } from '@langchain/core/messages';
import { HumanMessage, SystemMessage, ToolMessage } from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { ChatOpenAI } from '@langchain/openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { agentModel, startAgentHarness } from '../support/agent-harness.js';
import type { Harness } from '../support/gravity-harness.js';

/**
 * LangChain's ChatOpenAI (`@langchain/openai` and `@langchain/core`, exact dev dependencies) against a
 * live Gravity with an emulated replica: tools bound with `bindTools` (invoked and streamed, with the
 * tool's answer sent back), and `withStructuredOutput` by JSON schema and by function calling.
 */

let harness: Harness;
let chat: ChatOpenAI;
beforeAll(async () => {
  harness = await startAgentHarness();
  chat = new ChatOpenAI({
    model: agentModel,
    apiKey: 'unused',
    configuration: { baseURL: `${harness.url}/v1` },
    maxRetries: 0,
  });
});
afterAll(async () => {
  await harness?.close();
});

const WeatherInput = z.object({ city: z.string(), unit: z.enum(['celsius', 'fahrenheit']) });
const getWeather = tool(async ({ city, unit }) => JSON.stringify({ city, unit, temperature: 23 }), {
  name: 'get_weather',
  description: 'Current weather for a city',
  schema: WeatherInput,
});

const Person = z.object({
  name: z.string(),
  age: z.number().int(),
  languages: z.array(z.string()),
});

describe('LangChain ChatOpenAI against Gravity', () => {
  it('calls a tool bound with bindTools, runs it, and answers once it has the result', async () => {
    const withTools = chat.bindTools([getWeather]);
    const messages = [
      new SystemMessage('You answer weather questions.'),
      new HumanMessage('Weather in Athens?'),
    ];
    const calling = await withTools.invoke(messages);
    expect(calling.tool_calls).toHaveLength(1);
    const call = calling.tool_calls?.[0];
    expect(call?.name).toBe('get_weather');
    expect(WeatherInput.parse(call?.args)).toEqual(call?.args);
    expect(calling.response_metadata.finish_reason).toBe('tool_calls');

    // The AIMessage goes back as LangChain serialises it (content '' or null, tool_calls), then the result.
    const result = await getWeather.invoke(call as NonNullable<typeof call>);
    expect(result).toBeInstanceOf(ToolMessage);
    const answer = await withTools.invoke([...messages, calling, result]);
    expect(answer.tool_calls ?? []).toEqual([]);
    expect(typeof answer.content === 'string' ? answer.content : '').toMatch(/\S/);
    expect(answer.usage_metadata?.output_tokens).toBeGreaterThan(0);
  });

  it('assembles a streamed tool call from bindTools chunks', async () => {
    const stream = await chat
      .bindTools([getWeather], { tool_choice: 'get_weather' })
      .stream('Weather in Cairo?');
    let message: AIMessageChunk | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      message = message ? message.concat(chunk) : chunk;
      chunks++;
    }
    expect(chunks).toBeGreaterThan(2);
    expect(message?.tool_calls).toHaveLength(1);
    expect(message?.tool_calls?.[0]?.name).toBe('get_weather');
    expect(WeatherInput.parse(message?.tool_calls?.[0]?.args)).toEqual(message?.tool_calls?.[0]?.args);
  });

  for (const method of ['jsonSchema', 'functionCalling'] as const) {
    it(`returns a typed object from withStructuredOutput (method ${method})`, async () => {
      const structured = chat.withStructuredOutput(Person, { method, name: 'person' });
      const person = await structured.invoke('Describe a polyglot.');
      expect(Person.parse(person)).toEqual(person);
    });
  }

  it('returns the raw message next to the parsed object with includeRaw', async () => {
    const structured = chat.withStructuredOutput(Person, { includeRaw: true });
    const { raw, parsed } = await structured.invoke('Describe a chess player.');
    expect(Person.parse(parsed)).toEqual(parsed);
    expect(JSON.parse(String(raw.content))).toEqual(parsed);
  });
});
