import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  agentModel,
  expectValidAgainst,
  startAgentHarness,
  weatherParameters,
} from '../support/agent-harness.js';
import type { Harness } from '../support/gravity-harness.js';

/**
 * The openai SDK's `responses` resource against a live Gravity with an emulated replica: create (whole
 * and streamed), a function-tool round trip continued with `previous_response_id`, structured output by
 * `text.format`, retrieve, delete, input items, `store: false`, and the named 400s for what is not served.
 */

let harness: Harness;
beforeAll(async () => {
  harness = await startAgentHarness();
});
afterAll(async () => {
  await harness?.close();
});

const weatherFunction = {
  type: 'function' as const,
  name: 'get_weather',
  description: 'Current weather for a city',
  parameters: weatherParameters,
  strict: true,
};

describe('responses.create through the openai SDK', () => {
  it('answers a Response object with a message, usage and the echoed settings', async () => {
    const response = await harness.client.responses.create({
      model: agentModel,
      instructions: 'Be brief.',
      input: 'Say hello.',
      max_output_tokens: 16,
      metadata: { purpose: 'test' },
    });
    expect(response.id).toMatch(/^resp_/);
    expect(response.object).toBe('response');
    expect(response.model).toBe(agentModel);
    expect(response.instructions).toBe('Be brief.');
    expect(response.metadata).toEqual({ purpose: 'test' });
    expect(response.output[0]?.type).toBe('message');
    expect(response.output_text).toMatch(/\S/);
    expect(response.usage?.output_tokens).toBeGreaterThan(0);
    expect(response.usage?.input_tokens_details.cached_tokens).toBeGreaterThanOrEqual(0);
    expect(response.usage?.total_tokens).toBe(
      (response.usage?.input_tokens ?? 0) + (response.usage?.output_tokens ?? 0),
    );
    expect(response.status === 'completed' || response.status === 'incomplete').toBe(true);
    if (response.status === 'incomplete')
      expect(response.incomplete_details?.reason).toBe('max_output_tokens');
  });

  it('ends incomplete with reason max_output_tokens when the bound cuts the answer', async () => {
    const response = await harness.client.responses.create({
      model: agentModel,
      input: 'Tell me a long story.',
      max_output_tokens: 3,
    });
    expect(response.status).toBe('incomplete');
    expect(response.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(response.usage?.output_tokens).toBe(3);
  });

  it('streams the Responses event sequence, ending in response.completed with usage', async () => {
    const stream = await harness.client.responses.create({
      model: agentModel,
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'Stream a greeting.' }] }],
      stream: true,
    });
    const types: string[] = [];
    const sequence: number[] = [];
    let deltas = '';
    let completed: { output_text?: string; usage?: { output_tokens: number } } | null = null;
    for await (const event of stream) {
      types.push(event.type);
      sequence.push(event.sequence_number);
      if (event.type === 'response.output_text.delta') deltas += event.delta;
      if (event.type === 'response.completed' || event.type === 'response.incomplete')
        completed = event.response;
    }
    expect(types.slice(0, 4)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
    ]);
    expect(types).toContain('response.output_text.delta');
    expect(types.slice(-4, -1)).toEqual([
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
    ]);
    expect(sequence).toEqual(sequence.map((_, index) => index));
    expect(completed?.usage?.output_tokens).toBeGreaterThan(0);
    expect(deltas).toMatch(/\S/);
  });

  it('assembles a streamed response with responses.stream and finalResponse', async () => {
    const stream = harness.client.responses.stream({ model: agentModel, input: 'Hello there.' });
    const final = await stream.finalResponse();
    expect(final.output_text).toMatch(/\S/);
  });

  it('calls a function tool, takes its output with previous_response_id, and answers in text', async () => {
    const first = await harness.client.responses.create({
      model: agentModel,
      input: 'What is the weather in Paris?',
      tools: [weatherFunction],
    });
    const call = first.output.find((item) => item.type === 'function_call');
    expect(call?.type).toBe('function_call');
    if (call?.type !== 'function_call') return;
    expect(call.name).toBe('get_weather');
    expect(call.call_id).toMatch(/\S/);
    expectValidAgainst(weatherParameters, JSON.parse(call.arguments));

    const second = await harness.client.responses.create({
      model: agentModel,
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temperature":18}' }],
      tools: [weatherFunction],
    });
    expect(second.previous_response_id).toBe(first.id);
    // The emulated engine answers a tool result with text: the earlier call and its output reached it.
    expect(second.output.map((item) => item.type)).toEqual(['message']);
    expect(second.output_text).toMatch(/\S/);
    // The continuation's prompt holds the first turn: more input tokens than the second input alone.
    expect(second.usage?.input_tokens).toBeGreaterThan(first.usage?.input_tokens ?? 0);
  });

  it('streams a function call as output_item and function_call_arguments events', async () => {
    const stream = await harness.client.responses.create({
      model: agentModel,
      input: 'Weather in Rome?',
      tools: [weatherFunction],
      tool_choice: { type: 'function', name: 'get_weather' },
      stream: true,
    });
    let argumentsDelta = '';
    let done: { arguments: string; name: string } | null = null;
    for await (const event of stream) {
      if (event.type === 'response.function_call_arguments.delta') argumentsDelta += event.delta;
      if (event.type === 'response.function_call_arguments.done') done = event;
    }
    expect(done?.name).toBe('get_weather');
    expect(done?.arguments).toBe(argumentsDelta);
    expectValidAgainst(weatherParameters, JSON.parse(argumentsDelta));
  });

  it('answers JSON valid against text.format json_schema', async () => {
    const schema = {
      type: 'object',
      properties: { name: { type: 'string' }, servings: { type: 'integer' } },
      required: ['name', 'servings'],
      additionalProperties: false,
    };
    const response = await harness.client.responses.create({
      model: agentModel,
      input: 'A pancake recipe.',
      text: { format: { type: 'json_schema', name: 'recipe', schema, strict: true } },
    });
    expectValidAgainst(schema, JSON.parse(response.output_text));
    expect(response.text?.format?.type).toBe('json_schema');
  });

  it('returns token logprobs on output_text when include asks for them, whole and streamed', async () => {
    const request = {
      model: agentModel,
      input: 'Say something.',
      max_output_tokens: 6,
      include: ['message.output_text.logprobs' as const],
      top_logprobs: 2,
    };
    const whole = await harness.client.responses.create(request);
    const message = whole.output[0];
    if (message?.type !== 'message') throw new Error('expected a message');
    const part = message.content[0];
    if (part?.type !== 'output_text') throw new Error('expected output_text');
    expect(part.logprobs).toHaveLength(6);
    expect(part.logprobs?.map((entry) => entry.token).join('')).toBe(part.text);
    expect(part.logprobs?.[0]?.top_logprobs).toHaveLength(2);

    const stream = await harness.client.responses.create({ ...request, stream: true });
    let streamed = 0;
    for await (const event of stream)
      if (event.type === 'response.output_text.delta') streamed += event.logprobs.length;
    expect(streamed).toBe(6);
  });

  it('retrieves, lists the input items of, and deletes a stored response', async () => {
    const created = await harness.client.responses.create({
      model: agentModel,
      input: [
        { role: 'developer', content: 'Answer in one word.' },
        { role: 'user', content: 'Colour of the sky?' },
      ],
    });
    const retrieved = await harness.client.responses.retrieve(created.id);
    expect(retrieved.id).toBe(created.id);
    expect(retrieved.output_text).toBe(created.output_text);

    const items = await harness.client.responses.inputItems.list(created.id, { order: 'asc' });
    expect(items.data.map((item) => (item as { role?: string }).role)).toEqual(['developer', 'user']);
    const firstPage = await harness.client.responses.inputItems.list(created.id, { limit: 1 });
    expect(firstPage.data).toHaveLength(1);
    expect(firstPage.has_more).toBe(true);
    expect((firstPage.data[0] as { role?: string }).role).toBe('user');

    // The SDK types delete as void; the body is OpenAI's deletion object.
    const deleted: unknown = await harness.client.responses.delete(created.id);
    expect(deleted).toEqual({ id: created.id, object: 'response', deleted: true });
    await expect(harness.client.responses.retrieve(created.id)).rejects.toMatchObject({ status: 404 });
  });

  it('does not store a response created with store: false, and cannot continue it', async () => {
    const created = await harness.client.responses.create({ model: agentModel, input: 'Hi.', store: false });
    expect((created as { store?: boolean }).store).toBe(false);
    await expect(harness.client.responses.retrieve(created.id)).rejects.toMatchObject({ status: 404 });
    await expect(
      harness.client.responses.create({
        model: agentModel,
        input: 'Again.',
        previous_response_id: created.id,
      }),
    ).rejects.toMatchObject({ status: 404, code: 'previous_response_not_found' });
  });

  it('refuses what it does not serve with a 400 naming the parameter', async () => {
    await expect(
      harness.client.responses.create({ model: agentModel, input: 'x', background: true }),
    ).rejects.toMatchObject({ status: 400, code: 'unsupported_parameter', param: 'background' });
    await expect(
      harness.client.responses.create({ model: agentModel, input: 'x', tools: [{ type: 'web_search' }] }),
    ).rejects.toMatchObject({
      status: 400,
      code: 'unsupported_parameter',
      param: 'tools',
      message: expect.stringContaining("'tools' (built-in tool 'web_search') is not served by"),
    });
    await expect(
      harness.client.responses.create({
        model: agentModel,
        input: 'x',
        include: ['file_search_call.results'],
      }),
    ).rejects.toMatchObject({ status: 400, code: 'unsupported_parameter', param: 'include' });
    await expect(
      harness.client.responses.create({ model: agentModel, input: 'x', temperature: 3 }),
    ).rejects.toMatchObject({ status: 400, param: 'temperature' });
  });
});
