import { describe, expect, it } from 'vitest';
import { GravityError } from '../core/errors.js';
import { parseResponsesRequest } from './responses-request.js';

const parse = (body: Record<string, unknown>, earlier: Record<string, unknown>[] = []) =>
  parseResponsesRequest(body, { itemIdSuffix: 'test', earlierItems: () => earlier });

function refusal(body: Record<string, unknown>): {
  status: number;
  code: string | null;
  param: string | null;
} {
  try {
    parse(body);
  } catch (error) {
    if (error instanceof GravityError) return { status: error.status, code: error.code, param: error.param };
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('parseResponsesRequest', () => {
  it('reads a string input as one user message, after the instructions as a system message', () => {
    const parsed = parse({ model: 'm', input: 'Hi.', instructions: 'Be brief.', max_output_tokens: 20 });
    expect(parsed.generation.input).toEqual({
      kind: 'chat',
      messages: [
        { role: 'system', content: 'Be brief.', name: undefined },
        { role: 'user', content: 'Hi.', name: undefined },
      ],
    });
    expect(parsed.generation.maxTokens).toBe(20);
    expect(parsed.inputItems).toEqual([
      { type: 'message', role: 'user', id: 'msg_test_0', content: [{ type: 'input_text', text: 'Hi.' }] },
    ]);
    expect(parsed.echo).toMatchObject({ instructions: 'Be brief.', store: true, maxOutputTokens: 20 });
  });

  it('turns function_call items into one assistant message with tool calls, and outputs into tool messages', () => {
    const parsed = parse({
      model: 'm',
      input: [
        { role: 'user', content: 'Weather in Oslo and Rome?' },
        { type: 'function_call', call_id: 'c1', name: 'w', arguments: '{"city":"Oslo"}' },
        { type: 'function_call', call_id: 'c2', name: 'w', arguments: '{"city":"Rome"}' },
        { type: 'function_call_output', call_id: 'c1', output: 'Sunny' },
        { type: 'function_call_output', call_id: 'c2', output: [{ type: 'input_text', text: 'Rain' }] },
      ],
    });
    const carried = parsed.generation.carried as { messages: unknown[] };
    expect(carried.messages).toEqual([
      { role: 'user', content: 'Weather in Oslo and Rome?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'w', arguments: '{"city":"Oslo"}' } },
          { id: 'c2', type: 'function', function: { name: 'w', arguments: '{"city":"Rome"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'Sunny' },
      { role: 'tool', tool_call_id: 'c2', content: 'Rain' },
    ]);
  });

  it('translates flat function tools, tool_choice, text.format and images onto their chat shapes', () => {
    const parsed = parse({
      model: 'm',
      input: [
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'What is this?' },
            { type: 'input_image', image_url: 'data:image/png;base64,AAAA', detail: 'low' },
          ],
        },
      ],
      tools: [{ type: 'function', name: 'w', parameters: { type: 'object' }, strict: true }],
      tool_choice: { type: 'function', name: 'w' },
      parallel_tool_calls: false,
      text: { format: { type: 'json_schema', name: 'out', schema: { type: 'object' }, strict: true } },
    });
    const carried = parsed.generation.carried as Record<string, unknown>;
    expect(carried.tools).toEqual([
      { type: 'function', function: { name: 'w', parameters: { type: 'object' }, strict: true } },
    ]);
    expect(carried.tool_choice).toEqual({ type: 'function', function: { name: 'w' } });
    expect(carried.response_format).toEqual({
      type: 'json_schema',
      json_schema: { name: 'out', schema: { type: 'object' }, strict: true },
    });
    expect((carried.messages as Array<{ content: unknown }>)[0]?.content).toEqual([
      { type: 'text', text: 'What is this?' },
      { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA', detail: 'low' } },
    ]);
    expect(parsed.generation.options?.toolChoice).toEqual({ name: 'w' });
    expect(parsed.generation.options?.parallelToolCalls).toBe(false);
    expect(parsed.generation.features).toEqual(
      expect.arrayContaining(['tools', 'response_format', 'image_url']),
    );
  });

  it('puts the earlier turns of previous_response_id after the instructions and before the input', () => {
    const earlier = [
      { type: 'message', id: 'msg_1', role: 'user', content: [{ type: 'input_text', text: 'Hi.' }] },
      {
        type: 'message',
        id: 'msg_2',
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text: 'Hello.', annotations: [] }],
      },
    ];
    const parsed = parse(
      { model: 'm', instructions: 'Be kind.', input: 'Again.', previous_response_id: 'resp_1', store: false },
      earlier,
    );
    const carried = parsed.generation.carried as { messages: unknown[] };
    expect(carried.messages).toEqual([
      { role: 'system', content: 'Be kind.' },
      { role: 'user', content: 'Hi.' },
      { role: 'assistant', content: 'Hello.' },
      { role: 'user', content: 'Again.' },
    ]);
    // An upstream serving /v1/responses gets the whole conversation and stores nothing.
    expect(parsed.generation.responsesBody?.()).toEqual({
      instructions: 'Be kind.',
      input: [
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hi.' }] },
        {
          type: 'message',
          role: 'assistant',
          content: [{ type: 'output_text', text: 'Hello.', annotations: [] }],
        },
        { role: 'user', content: 'Again.' },
      ],
      store: false,
    });
    expect(parsed.echo).toMatchObject({ previousResponseId: 'resp_1', store: false });
  });

  it("expands an upstream's own output for it: reasoning only with its encrypted content, built-in tool items as issued", () => {
    const reasoning = { id: 'rs_1', type: 'reasoning', summary: [], status: 'completed' };
    const sealed = { id: 'rs_2', type: 'reasoning', encrypted_content: 'gAAA', summary: [] };
    const search = {
      id: 'ws_1',
      type: 'web_search_call',
      status: 'completed',
      action: { type: 'search', query: 'q' },
    };
    const answer = {
      id: 'msg_up',
      type: 'message',
      status: 'completed',
      role: 'assistant',
      content: [
        { type: 'output_text', text: 'Sunny.', annotations: [{ type: 'url_citation' }], logprobs: [] },
      ],
    };
    const parsed = parse({ model: 'm', input: 'And tomorrow?', previous_response_id: 'resp_1' }, [
      reasoning,
      sealed,
      search,
      answer,
    ]);
    expect((parsed.generation.responsesBody?.() as { input: unknown[] } | undefined)?.input).toEqual([
      sealed,
      search,
      {
        type: 'message',
        role: 'assistant',
        content: [
          { type: 'output_text', text: 'Sunny.', annotations: [{ type: 'url_citation' }], logprobs: [] },
        ],
      },
      { role: 'user', content: 'And tomorrow?' },
    ]);
    // Translated onto chat, only the message remains: chat has no shape for the others.
    expect((parsed.generation.carried as { messages: unknown[] }).messages).toEqual([
      { role: 'assistant', content: 'Sunny.' },
      { role: 'user', content: 'And tomorrow?' },
    ]);
  });

  it('carries vendor extras to the chat body, where they are features like a chat request’s', () => {
    const parsed = parse({ model: 'm', input: 'x', top_k: 5, seed: 3 });
    expect(parsed.generation.carried).toMatchObject({ top_k: 5, seed: 3 });
    expect(parsed.generation.seed).toBe(3);
    expect(parsed.generation.features).toContain('top_k');
  });

  it('refuses what it does not serve with a 400 naming the parameter', () => {
    const unsupported = (param: string) => ({ status: 400, code: 'unsupported_parameter', param });
    expect(refusal({ model: 'm', input: 'x', background: true })).toEqual(unsupported('background'));
    expect(refusal({ model: 'm', input: 'x', conversation: 'conv_1' })).toEqual(unsupported('conversation'));
    expect(refusal({ model: 'm', input: 'x', prompt: { id: 'p' } })).toEqual(unsupported('prompt'));
    expect(refusal({ model: 'm', input: 'x', truncation: 'auto' })).toEqual(unsupported('truncation'));
    expect(
      refusal({
        model: 'm',
        input: [{ role: 'user', content: [{ type: 'input_image', file_id: 'file_1' }] }],
      }),
    ).toEqual(unsupported('input[0].content[0].file_id'));
  });

  it('lists what only a native /v1/responses serves as features, leaves it out of chat and sends it as written', () => {
    const body = {
      model: 'm',
      input: [
        { role: 'user', content: 'Look it up.' },
        { type: 'item_reference', id: 'ws_1' },
      ],
      tools: [{ type: 'web_search' }, { type: 'function', name: 'f', parameters: { type: 'object' } }],
      tool_choice: { type: 'file_search' },
      max_tool_calls: 2,
      include: ['web_search_call.action.sources', 'reasoning.encrypted_content'],
    };
    const parsed = parse(body);
    expect(parsed.generation.features).toEqual([
      'tools',
      'tools.web_search',
      'tool_choice.file_search',
      'max_tool_calls',
      'input.item_reference',
      'include.web_search_call.action.sources',
    ]);
    // The chat translation keeps the function tool only, and no built-in tool choice.
    expect(parsed.generation.options?.tools.map((tool) => tool.name)).toEqual(['f']);
    expect(parsed.generation.options?.toolChoice).toBe('auto');
    expect(parsed.generation.input).toEqual({
      kind: 'chat',
      messages: [{ role: 'user', content: 'Look it up.', name: undefined }],
    });
    const { model: _model, ...sent } = body;
    expect(parsed.generation.responsesBody?.()).toEqual({ ...sent, store: false });
    // Built once, on the first call: an engine's retries send the same body.
    expect(parsed.generation.responsesBody?.()).toBe(parsed.generation.responsesBody?.());
  });

  it('parses an input made only of items chat has no shape for, for a native /v1/responses', () => {
    const parsed = parse({
      model: 'm',
      input: [{ type: 'computer_call_output', call_id: 'c', output: { type: 'computer_screenshot' } }],
    });
    expect(parsed.generation.features).toEqual(['input.computer_call_output']);
    expect(parsed.inputItems[0]).toMatchObject({ type: 'computer_call_output', call_id: 'c' });
  });

  it('validates what it reads, in OpenAI’s words', () => {
    expect(refusal({ input: 'x' })).toEqual({
      status: 400,
      code: 'missing_required_parameter',
      param: 'model',
    });
    expect(refusal({ model: 'm' })).toEqual({
      status: 400,
      code: 'missing_required_parameter',
      param: 'input',
    });
    expect(refusal({ model: 'm', input: 'x', temperature: 3 })).toMatchObject({
      status: 400,
      param: 'temperature',
    });
    expect(refusal({ model: 'm', input: 'x', max_output_tokens: 1.5 })).toMatchObject({
      status: 400,
      code: 'invalid_type',
      param: 'max_output_tokens',
    });
    expect(
      refusal({ model: 'm', input: [{ type: 'function_call', name: 'w', arguments: '{}' }] }),
    ).toMatchObject({
      status: 400,
      param: 'input[0].call_id',
    });
    const metadata = Object.fromEntries(Array.from({ length: 17 }, (_, index) => [`k${index}`, 'v']));
    expect(refusal({ model: 'm', input: 'x', metadata })).toMatchObject({ status: 400, param: 'metadata' });
    expect(refusal({ model: 'm', input: 'x', tool_choice: 'required' })).toMatchObject({
      status: 400,
      param: 'tool_choice',
    });
  });
});
