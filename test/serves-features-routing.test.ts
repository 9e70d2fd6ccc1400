import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';

/**
 * Routing by request features across live replicas: two emulated replicas of one model, one restricted
 * to plain text (`servedFeatures: []`). Requests using tools go only to the one that serves them; a
 * feature no replica serves is a 400 naming the parameter and both engines.
 */
const replica = {
  type: 'emulated',
  hardware: 'h200',
  model: 'llama-3.1-8b',
  weightDtype: 'fp8',
  metering: { cost: { hourlyUsd: 3.5 } },
};
let harness: Harness;
beforeAll(async () => {
  harness = await startHarness(undefined, {
    engines: {
      'plain-only': { ...replica, servedFeatures: ['logprobs'] },
      agentic: { ...replica, servedFeatures: ['tools', 'response_format'] },
    },
    models: { 'llama-3.1-8b': { engines: ['plain-only', 'agentic'] } },
  });
});
afterAll(async () => {
  await harness?.close();
});

const url = () => `${harness.url}/v1/chat/completions`;
const plain = { model: 'llama-3.1-8b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 };
const tools = [
  {
    type: 'function',
    function: {
      name: 'lookup',
      parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
    },
  },
];

function routedTo(headers: Headers): string {
  return (JSON.parse(headers.get('x-gravity-route') ?? '{}') as { replica?: string }).replica ?? '';
}

describe('the serves-features filter, live', () => {
  it('sends requests that use tools only to replicas that serve them, and plain ones anywhere', async () => {
    const placements = new Set<string>();
    for (let index = 0; index < 6; index++) {
      const response = await postRaw(
        url(),
        JSON.stringify({ ...plain, tools, tool_choice: 'required', max_tokens: 64 }),
      );
      expect(response.status).toBe(200);
      expect((response.json as { choices: Array<{ finish_reason: string }> }).choices[0]?.finish_reason).toBe(
        'tool_calls',
      );
      placements.add(routedTo(response.headers));
    }
    expect([...placements]).toEqual(['agentic']);
    const logprobs = await postRaw(url(), JSON.stringify({ ...plain, logprobs: true }));
    expect(logprobs.status).toBe(200);
    expect(routedTo(logprobs.headers)).toBe('plain-only');
  });

  it('answers a feature no replica serves with a 400 naming the parameter and the engines', async () => {
    const response = await postRaw(url(), JSON.stringify({ ...plain, n: 2 }));
    expect(response.status).toBe(400);
    expect(response.json.error).toMatchObject({ code: 'unsupported_parameter', param: 'n' });
    expect(String(response.json.error?.message)).toContain("'plain-only' (emulated), 'agentic' (emulated)");
  });
});
