import { describe, expect, it } from 'vitest';
import { ResponsesEventReader } from './responses-event-reader.js';

const read = (reader: ResponsesEventReader, event: Record<string, unknown>) =>
  reader.read(JSON.stringify(event));

describe('ResponsesEventReader', () => {
  it('reads text deltas, function calls and the final usage of an upstream Responses stream', () => {
    const reader = new ResponsesEventReader('up');
    expect(read(reader, { type: 'response.created', response: {} })).toBeNull();
    expect(read(reader, { type: 'response.output_text.delta', item_id: 'm', delta: 'Hi' })).toEqual({
      type: 'text-delta',
      text: 'Hi',
      tokens: 1,
    });
    expect(
      read(reader, {
        type: 'response.output_item.added',
        item: { type: 'function_call', id: 'fc_1', call_id: 'call_1', name: 'w', arguments: '' },
      }),
    ).toEqual({
      type: 'choice-delta',
      choice: {
        index: 0,
        delta: {
          tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'w', arguments: '' } }],
        },
        finish_reason: null,
      },
      tokens: 0,
    });
    expect(
      read(reader, { type: 'response.function_call_arguments.delta', item_id: 'fc_1', delta: '{}' }),
    ).toMatchObject({
      choice: { delta: { tool_calls: [{ index: 0, function: { arguments: '{}' } }] } },
      tokens: 1,
    });
    expect(read(reader, { type: 'response.reasoning_summary_text.delta', delta: 'hmm' })).toBeNull();
    read(reader, {
      type: 'response.completed',
      response: {
        usage: {
          input_tokens: 12,
          input_tokens_details: { cached_tokens: 4 },
          output_tokens: 7,
          output_tokens_details: { reasoning_tokens: 2 },
        },
      },
    });
    expect(reader.done).toBe(true);
    expect(reader.finishReason).toBe('tool_calls');
    expect(reader.reportedUsage()).toEqual({
      promptTokens: 12,
      cachedPromptTokens: 4,
      completionTokens: 7,
      reasoningTokens: 2,
      source: 'upstream',
    });
  });

  it('maps an incomplete response to the length finish, and a failed one to an upstream error', () => {
    const reader = new ResponsesEventReader('up');
    read(reader, {
      type: 'response.incomplete',
      response: { incomplete_details: { reason: 'max_output_tokens' } },
    });
    expect(reader.finishReason).toBe('length');
    expect(() =>
      read(new ResponsesEventReader('up'), {
        type: 'response.failed',
        response: { error: { message: 'overloaded' } },
      }),
    ).toThrow(/upstream 'up': overloaded/);
  });
});
