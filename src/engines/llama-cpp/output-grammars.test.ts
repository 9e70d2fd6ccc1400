import { getLlama, type Llama, LlamaLogLevel } from 'node-llama-cpp';
import { beforeAll, describe, expect, it } from 'vitest';
import { jsonValueGrammarText, toolCallGrammar, toolCallsSchema } from './output-grammars.js';

let llama: Llama;
beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false });
});

const tools = [
  { name: 'a', parameters: { type: 'object', properties: { x: { type: 'integer' } } } },
  { name: 'b' },
];

describe('output grammars', () => {
  it('end the root with the value and write numbers without exponents, within ±10^15', async () => {
    const text = await jsonValueGrammarText(llama, {
      type: 'object',
      properties: {
        count: { type: 'integer' },
        ratio: { type: 'number' },
        any: { type: 'object', additionalProperties: true },
      },
    });
    const root = text.split('\n')[0] ?? '';
    expect(root.endsWith('"}"')).toBe(true);
    const numberRules = text
      .split('\n')
      .filter((line) => /^(integer|fractional)-number-rule ::= /.test(line));
    expect(numberRules).toHaveLength(2);
    for (const rule of numberRules) {
      expect(rule).not.toContain('[eE]');
      expect(rule).toContain('[1-9] [0-9]{0,14}');
    }
    expect(text).not.toContain('[eE]');
  });

  it('allow one call when parallel calls are off or a tool is named, several otherwise', () => {
    expect(toolCallsSchema(tools, 'required', false)).toMatchObject({ minItems: 1, maxItems: 1 });
    expect(toolCallsSchema(tools, 'required', true).maxItems).toBeUndefined();
    const named = toolCallsSchema(tools, { name: 'b' }, true);
    expect(named).toMatchObject({ maxItems: 1, items: { properties: { name: { const: 'b' } } } });
  });

  it('compile for every tool choice, auto included', async () => {
    for (const choice of ['auto', 'required', { name: 'a' }] as const)
      await expect(toolCallGrammar(llama, tools, choice, true)).resolves.toBeDefined();
  });

  it('refuse a tool whose parameters the grammar cannot enforce, naming tools', async () => {
    const bad = [
      { name: 'c', parameters: { type: 'object', properties: { x: { type: 'string', pattern: 'a' } } } },
    ];
    await expect(toolCallGrammar(llama, bad, 'required', true)).rejects.toMatchObject({ status: 400 });
    try {
      await toolCallGrammar(llama, bad, 'required', true);
    } catch (error) {
      expect((error as { toBody(): { error: { param: string } } }).toBody().error.param).toBe('tools');
    }
  });
});
