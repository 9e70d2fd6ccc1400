import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rewriteOwnedFields, topLevelValueSpan } from './relay-rewrite.js';

const owned = [
  ['id', '"chatcmpl-gravity"'],
  ['model', '"alias"'],
  ['service_tier', '"default"'],
] as const;

function rewrite(json: string): string {
  const parsed = JSON.parse(json) as Record<string, unknown>;
  return rewriteOwnedFields(json, owned, (key) => key in parsed);
}

describe('rewriteOwnedFields', () => {
  it('replaces the owned values and keeps every other byte, spacing included', () => {
    const vllm =
      '{"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1,"model":"meta/llama","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"model\\": \\"x\\"}"}}]},"logprobs":null,"finish_reason":null}]}';
    expect(rewrite(vllm)).toBe(
      '{"service_tier":"default","id":"chatcmpl-gravity","object":"chat.completion.chunk","created":1,"model":"alias","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"model\\": \\"x\\"}"}}]},"logprobs":null,"finish_reason":null}]}',
    );
    const spaced =
      '{ "choices": [ {"delta": {"content": "\\"id\\": 1"}} ], "id" : "x", "model":"m", "service_tier": null }';
    expect(rewrite(spaced)).toBe(
      '{ "choices": [ {"delta": {"content": "\\"id\\": 1"}} ], "id" : "chatcmpl-gravity", "model":"alias", "service_tier": "default" }',
    );
  });

  it('leaves nested fields of the same names alone', () => {
    const json = '{"choices":[{"delta":{"id":"inner","model":"inner"}}],"id":"outer"}';
    const result = JSON.parse(rewrite(json));
    expect(result.choices[0].delta).toEqual({ id: 'inner', model: 'inner' });
    expect(result).toMatchObject({ id: 'chatcmpl-gravity', model: 'alias', service_tier: 'default' });
  });

  it('gives valid JSON with the owned values and everything else equal, for any object', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.boolean(), (object, spaced) => {
        const json = JSON.stringify(object, null, spaced ? 1 : 0);
        const result = JSON.parse(rewrite(json)) as Record<string, unknown>;
        expect(result).toEqual({
          ...JSON.parse(json),
          id: 'chatcmpl-gravity',
          model: 'alias',
          service_tier: 'default',
        });
      }),
    );
  });

  it('returns anything that is not an object unchanged', () => {
    expect(rewriteOwnedFields('[1]', owned, () => false)).toBe('[1]');
    expect(rewriteOwnedFields('{}', owned, () => false)).toBe(
      '{"id":"chatcmpl-gravity","model":"alias","service_tier":"default"}',
    );
  });
});

describe('topLevelValueSpan', () => {
  it("finds a top-level key's value, past strings and nested objects that hold the same key", () => {
    const json =
      '{"type":"response.completed", "note":"\\"response\\":{}","item":{"response":1},"response" : {"id":"r","usage":null} ,"x":2}';
    const span = topLevelValueSpan(json, 'response');
    expect(span && json.slice(span[0], span[1])).toBe('{"id":"r","usage":null}');
    expect(topLevelValueSpan(json, 'missing')).toBeNull();
    expect(topLevelValueSpan('[{"response":1}]', 'response')).toBeNull();
    const escapedKey = '{"res\\u0070onse":[1,2]}';
    const escaped = topLevelValueSpan(escapedKey, 'response');
    expect(escaped && escapedKey.slice(escaped[0], escaped[1])).toBe('[1,2]');
  });
});
