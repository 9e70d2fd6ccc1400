import { describe, expect, it } from 'vitest';
import type { ContentPart } from '../core/stream-parts.js';
import { type OutputEvents, ResponseOutputBuilder } from './response-output.js';

/** Records the events a builder emits, text deltas as events of their own. */
function recorder(): OutputEvents & { events: Array<Record<string, unknown>> } {
  const events: Array<Record<string, unknown>> = [];
  return {
    events,
    textDelta: (itemId, outputIndex, delta) =>
      events.push({ type: 'response.output_text.delta', item_id: itemId, output_index: outputIndex, delta }),
    event: (event) => events.push(structuredClone(event)),
  };
}

const text = (value: string): ContentPart => ({ type: 'text-delta', text: value, tokens: 1 });
const toolDelta = (call: Record<string, unknown>): ContentPart => ({
  type: 'choice-delta',
  choice: { index: 0, delta: { tool_calls: [call] }, finish_reason: null },
  tokens: 1,
});

describe('ResponseOutputBuilder', () => {
  it('builds one message item from text deltas, with its streamed events in OpenAI’s order', () => {
    const events = recorder();
    const builder = new ResponseOutputBuilder('resp_abc', events);
    builder.add(text('Hel'));
    builder.add(text('lo'));
    const output = builder.finish(true);
    expect(output).toEqual([
      {
        id: 'msg_abc',
        type: 'message',
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text: 'Hello', annotations: [], logprobs: [] }],
      },
    ]);
    expect(events.events.map((event) => event.type)).toEqual([
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
    ]);
    expect(events.events[0]).toMatchObject({ item: { status: 'in_progress', content: [] } });
  });

  it('builds function_call items from chat tool-call deltas, arguments streamed and assembled', () => {
    const events = recorder();
    const builder = new ResponseOutputBuilder('resp_abc', events);
    builder.add(
      toolDelta({ index: 0, id: 'call_1', type: 'function', function: { name: 'w', arguments: '' } }),
    );
    builder.add(toolDelta({ index: 0, function: { arguments: '{"city":' } }));
    builder.add(toolDelta({ index: 0, function: { arguments: '"Oslo"}' } }));
    builder.add(
      toolDelta({ index: 1, id: 'call_2', type: 'function', function: { name: 'w', arguments: '{}' } }),
    );
    const output = builder.finish(true);
    expect(output).toEqual([
      {
        id: 'fc_abc_0',
        type: 'function_call',
        status: 'completed',
        call_id: 'call_1',
        name: 'w',
        arguments: '{"city":"Oslo"}',
      },
      {
        id: 'fc_abc_1',
        type: 'function_call',
        status: 'completed',
        call_id: 'call_2',
        name: 'w',
        arguments: '{}',
      },
    ]);
    const types = events.events.map((event) => event.type);
    expect(types).toEqual([
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
    ]);
    expect(events.events[3]).toMatchObject({ name: 'w', arguments: '{"city":"Oslo"}', output_index: 0 });
  });

  it('reads relayed upstream chat chunks: plain text and tool calls alike', () => {
    const builder = new ResponseOutputBuilder('resp_abc', null);
    builder.add({
      type: 'upstream-chunk',
      tokens: 3,
      events: [
        { json: '', chunk: {}, plainText: 'Checking. ' },
        {
          json: '',
          chunk: {
            choices: [
              {
                index: 0,
                delta: { tool_calls: [{ index: 0, id: 'call_9', function: { name: 'w', arguments: '{}' } }] },
                finish_reason: null,
              },
            ],
          },
        },
        { json: '', chunk: { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] } },
      ],
    });
    const output = builder.finish(true);
    expect(output.map((item) => item.type)).toEqual(['message', 'function_call']);
    expect(output[0]).toMatchObject({ content: [{ text: 'Checking. ' }] });
    expect(output[1]).toMatchObject({ call_id: 'call_9', name: 'w', arguments: '{}' });
  });

  it('shows the open message with the text streamed so far when the response fails mid-stream', () => {
    const builder = new ResponseOutputBuilder('resp_abc', recorder());
    const logprob = { token: 'lo', logprob: -0.5, bytes: [108, 111], top_logprobs: [] };
    builder.add(text('Hel'));
    builder.add({
      type: 'choice-delta',
      choice: { index: 0, delta: { content: 'lo' }, logprobs: { content: [logprob] }, finish_reason: null },
      tokens: 1,
    });
    expect(builder.items()).toEqual([
      {
        id: 'msg_abc',
        type: 'message',
        status: 'incomplete',
        role: 'assistant',
        content: [{ type: 'output_text', text: 'Hello', annotations: [], logprobs: [logprob] }],
      },
    ]);
    // A snapshot: the builder goes on as before, and the item closes with the whole text.
    builder.add(text('!'));
    expect(builder.finish(true)[0]).toMatchObject({ status: 'completed', content: [{ text: 'Hello!' }] });
  });

  it('marks the last item incomplete when the answer was cut, and always answers with a message', () => {
    const cut = new ResponseOutputBuilder('resp_abc', null);
    cut.add(text('Once upon'));
    expect(cut.finish(false)[0]?.status).toBe('incomplete');
    const empty = new ResponseOutputBuilder('resp_abc', null);
    expect(empty.finish(true)).toMatchObject([{ type: 'message', content: [{ text: '' }] }]);
  });
});
