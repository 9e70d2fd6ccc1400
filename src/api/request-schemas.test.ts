import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GravityError } from '../core/errors.js';
import { estimateInputTokens, estimateRequestTokens } from '../core/prompt-size.js';
import {
  chatCompletionRequestSchema,
  completionRequestSchema,
  parseChatCompletionRequest,
  parseCompletionRequest,
  quickChecks,
} from './request-schemas.js';

const base = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };

function refusal(action: () => unknown): GravityError {
  try {
    action();
  } catch (error) {
    if (error instanceof GravityError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('parseChatCompletionRequest', () => {
  it('lists the features a request uses and carries the body less the fields Gravity owns', () => {
    const body = {
      ...base,
      stream: true,
      stream_options: { include_usage: true, include_obfuscation: false },
      service_tier: 'flex',
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
      tool_choice: { type: 'function', function: { name: 'f' } },
      response_format: {
        type: 'json_schema',
        json_schema: { name: 'x', schema: { type: 'object' }, strict: true },
      },
      logprobs: true,
      top_logprobs: 2,
      n: 2,
      logit_bias: { '42': -100 },
      top_k: 20,
      chat_template_kwargs: { enable_thinking: false },
    };
    const parsed = parseChatCompletionRequest(body);
    expect(new Set(parsed.generation.features)).toEqual(
      new Set(['tools', 'response_format', 'logprobs', 'n', 'logit_bias', 'top_k', 'chat_template_kwargs']),
    );
    const { model: _m, stream: _s, service_tier: _t, ...carried } = body;
    expect(parsed.generation.carried).toEqual(carried);
    expect(parsed.generation.options).toMatchObject({
      toolChoice: { name: 'f' },
      responseFormat: { type: 'json_schema', name: 'x', strict: true },
      logprobs: true,
      topLogprobs: 2,
      n: 2,
      topK: 20,
    });
    expect(parsed).toMatchObject({ stream: true, includeUsage: true, serviceTier: 'flex' });
  });

  it('keeps tool calls and tool results in the normalised messages', () => {
    const parsed = parseChatCompletionRequest({
      ...base,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'a' },
            { type: 'image_url', image_url: { url: 'u' } },
          ],
        },
        {
          role: 'assistant',
          content: null,
          refusal: null,
          tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{"x":1}' } }],
        },
        { role: 'tool', tool_call_id: 'c', content: [{ type: 'text', text: '2' }] },
      ],
    });
    if (parsed.generation.input.kind !== 'chat') throw new Error('not chat');
    expect(parsed.generation.input.messages).toEqual([
      { role: 'user', content: 'a', name: undefined },
      {
        role: 'assistant',
        content: '',
        name: undefined,
        toolCalls: [{ id: 'c', name: 'f', arguments: '{"x":1}' }],
      },
      { role: 'tool', content: '2', toolCallId: 'c' },
    ]);
    expect(parsed.generation.features).toEqual(['image_url']);
  });

  it('accepts parameters at their defaults without features, and any integer seed', () => {
    const parsed = parseChatCompletionRequest({
      ...base,
      tools: [{ type: 'function', function: { name: 'f' } }],
      tool_choice: 'none',
      n: 1,
      presence_penalty: 0,
      logprobs: false,
      seed: -(2 ** 60),
      user: 'u',
      prompt_cache_key: 'k',
    });
    expect(parsed.generation.features).toEqual([]);
    expect(parsed.generation.seed).toBe(-(2 ** 60));
  });

  it('refuses what the API refuses, naming the parameter', () => {
    expect(refusal(() => parseChatCompletionRequest({ ...base, tool_choice: 'auto' }))).toMatchObject({
      param: 'tool_choice',
    });
    expect(
      refusal(() =>
        parseChatCompletionRequest({
          ...base,
          tools: [{ type: 'function', function: { name: 'f' } }],
          tool_choice: { type: 'function', function: { name: 'g' } },
        }),
      ),
    ).toMatchObject({ param: 'tool_choice', code: 'invalid_value' });
    expect(refusal(() => parseChatCompletionRequest({ ...base, top_logprobs: 3 }))).toMatchObject({
      param: 'top_logprobs',
    });
    expect(refusal(() => parseChatCompletionRequest({ ...base, logit_bias: { abc: 1 } }))).toMatchObject({
      param: 'logit_bias',
    });
    expect(refusal(() => parseChatCompletionRequest({ ...base, n: 0 }))).toMatchObject({
      param: 'n',
      code: 'integer_below_min_value',
    });
    expect(
      refusal(() => parseChatCompletionRequest({ ...base, messages: [{ role: 'tool', content: 'x' }] })),
    ).toMatchObject({ param: 'messages[0].tool_call_id', code: 'missing_required_parameter' });
    expect(
      refusal(() => parseChatCompletionRequest({ ...base, response_format: { type: 'yaml' } })),
    ).toMatchObject({
      param: 'response_format.type',
      code: 'invalid_value',
    });
  });
});

describe('the prompt-size estimate of a parsed request', () => {
  it('counts tool definitions and earlier tool calls, which a chat template puts in the prompt', () => {
    const plain = parseChatCompletionRequest(base).generation;
    const tools = [{ type: 'function', function: { name: 'lookup', description: 'x'.repeat(400) } }];
    const withTools = parseChatCompletionRequest({
      ...base,
      tools,
      messages: [
        ...base.messages,
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'c', type: 'function', function: { name: 'lookup', arguments: 'y'.repeat(200) } },
          ],
        },
        { role: 'tool', tool_call_id: 'c', content: 'ok' },
      ],
    }).generation;
    expect(estimateRequestTokens(plain)).toBe(estimateInputTokens(plain.input));
    // ~100 tokens of tool definition and ~50 of arguments beyond the messages' text.
    expect(estimateRequestTokens(withTools) - estimateInputTokens(withTools.input)).toBeGreaterThan(150);
  });
});

describe('parseCompletionRequest', () => {
  it('takes a string, strings, token ids or arrays of token ids', () => {
    expect(parseCompletionRequest({ model: 'm', prompt: 'a' }).generation.input).toEqual({
      kind: 'completion',
      prompt: 'a',
    });
    expect(parseCompletionRequest({ model: 'm', prompt: ['a'] }).generation.features).toEqual([]);
    const several = parseCompletionRequest({ model: 'm', prompt: ['a', 'b'] }).generation;
    expect(several.features).toEqual(['prompt.array']);
    expect(several.input).toMatchObject({ prompts: ['a', 'b'] });
    const tokens = parseCompletionRequest({ model: 'm', prompt: [1, 2, 3] }).generation;
    expect(tokens.features).toEqual(['prompt.tokens']);
    expect(tokens.input).toMatchObject({ prompts: [[1, 2, 3]] });
    const arrays = parseCompletionRequest({ model: 'm', prompt: [[1], [2, 3]], logprobs: 2, echo: true });
    expect(new Set(arrays.generation.features)).toEqual(
      new Set(['prompt.tokens', 'prompt.array', 'logprobs', 'echo']),
    );
    expect(arrays.generation.options).toMatchObject({ logprobs: true, topLogprobs: 2 });
    expect(refusal(() => parseCompletionRequest({ model: 'm', prompt: [] }))).toMatchObject({
      param: 'prompt',
    });
  });
});

describe('the plain checks that spare hot fields a zod call', () => {
  it("never accept a value the field's schema refuses", () => {
    const shapes = { ...completionRequestSchema.shape, ...chatCompletionRequestSchema.shape } as Record<
      string,
      { safeParse(value: unknown): { success: boolean } }
    >;
    const edges = [0, 1, -1, 0.5, 2, 2.5, 1.5, Number.NaN, Infinity, 2 ** 60, '', 'm', null, true, []];
    const values = fc.oneof(
      fc.constantFrom(...edges),
      fc.anything(),
      fc.array(fc.record({ role: fc.string(), content: fc.anything() })),
    );
    for (const [key, quick] of Object.entries(quickChecks)) {
      const schema = shapes[key];
      if (!schema || !quick) throw new Error(`no schema for the quick check of '${key}'`);
      fc.assert(
        fc.property(values, (value) => {
          if (quick(value)) expect(schema.safeParse(value).success).toBe(true);
        }),
      );
    }
  });
});
