import { Ajv } from 'ajv';
import { expect } from 'vitest';
import { type Harness, startHarness } from './gravity-harness.js';

/**
 * A live Gravity for the real-client tests (test/clients/): one emulated replica of fast hardware (an 8B
 * model in FP8 on an H200, a few ms per step), so agent loops of several calls finish in well under a
 * second each. The emulated engine's answers are deterministic rules (src/engines/emulated/README.md):
 * `tool_choice` auto calls the first tool unless the last message is a tool result, which gets text;
 * `required` and a named function call; `response_format` json_schema gives JSON valid against it.
 */
export const agentModel = 'agent-8b';

export function startAgentHarness(): Promise<Harness> {
  return startHarness(undefined, {
    engines: {
      agent: {
        type: 'emulated',
        hardware: 'h200',
        model: 'llama-3.1-8b',
        weightDtype: 'fp8',
        contextTokens: 8192,
      },
    },
    models: { [agentModel]: { engine: 'agent' } },
  });
}

/** The weather tool every client test offers, as OpenAI's wire shape. */
export const weatherParameters: Record<string, unknown> & { required: string[] } = {
  type: 'object',
  properties: {
    city: { type: 'string', description: 'City name' },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
  },
  required: ['city', 'unit'],
  additionalProperties: false,
};

export const weatherTool = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: weatherParameters,
  },
};

const ajv = new Ajv({ strict: false, allErrors: true });

/** Asserts `value` validates against the JSON schema, naming the errors when it does not. */
export function expectValidAgainst(schema: object, value: unknown): void {
  const validate = ajv.compile(schema);
  const valid = validate(value);
  expect(valid ? [] : validate.errors, JSON.stringify(value)).toEqual([]);
}
