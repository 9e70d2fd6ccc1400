import { describe, expect, it } from 'vitest';
import { GravityError } from '../../core/errors.js';
import { ResponsesEventRelay } from './responses-event-relay.js';

const text = (event: Record<string, unknown>) => JSON.stringify(event);

describe('ResponsesEventRelay', () => {
  it('passes every event on as received and counts a token per output delta, reasoning and arguments included', () => {
    const relay = new ResponsesEventRelay('up');
    const events = [
      text({ type: 'response.created', sequence_number: 0, response: { id: 'resp_1' } }),
      text({ type: 'response.reasoning_summary_text.delta', sequence_number: 1, delta: 'hmm' }),
      text({ type: 'response.reasoning_text.delta', sequence_number: 2, delta: 'so' }),
      text({ type: 'response.output_text.delta', sequence_number: 3, delta: 'Hi', logprobs: [] }),
      text({ type: 'response.refusal.delta', sequence_number: 4, delta: 'No' }),
      text({ type: 'response.function_call_arguments.delta', sequence_number: 5, delta: '{}' }),
      text({ type: 'response.output_text.delta', sequence_number: 6, delta: '' }),
      text({ type: 'response.web_search_call.searching', sequence_number: 7, item_id: 'ws_1' }),
      '{"type":"response.output_text.annotation.added", "annotation" : {"type":"url_citation"}}',
    ];
    const read = events.map((data) => relay.read(data));
    expect(read.map((entry) => entry?.event.json)).toEqual(events);
    expect(read.map((entry) => entry?.tokens)).toEqual([0, 1, 1, 1, 1, 1, 0, 0, 0]);
    expect(read[3]?.event.chunk).toEqual(JSON.parse(events[3] as string));
    expect(relay.outputEvents).toBe(5);
    expect(relay.done).toBe(false);
    // Not an object: nothing to relay.
    expect(relay.read('[DONE]')).toBeNull();
    expect(relay.read('not json')).toBeNull();
  });

  it('takes usage and the finish reason from the terminal event', () => {
    const completed = new ResponsesEventRelay('up');
    completed.read(
      text({
        type: 'response.completed',
        response: {
          output: [{ type: 'reasoning' }, { type: 'function_call' }],
          usage: {
            input_tokens: 12,
            input_tokens_details: { cached_tokens: 4 },
            output_tokens: 30,
            output_tokens_details: { reasoning_tokens: 20 },
          },
        },
      }),
    );
    expect(completed.done).toBe(true);
    expect(completed.finishReason).toBe('tool_calls');
    expect(completed.reportedUsage()).toEqual({
      promptTokens: 12,
      cachedPromptTokens: 4,
      completionTokens: 30,
      reasoningTokens: 20,
      source: 'upstream',
    });

    const incomplete = new ResponsesEventRelay('up');
    incomplete.read(
      text({
        type: 'response.incomplete',
        response: { incomplete_details: { reason: 'max_output_tokens' }, usage: null },
      }),
    );
    expect(incomplete.done).toBe(true);
    expect(incomplete.finishReason).toBe('length');
    expect(incomplete.reportedUsage()).toBeNull();
  });

  it("turns the upstream's response.failed and error events into a 502 naming the upstream", () => {
    const failed = () =>
      new ResponsesEventRelay('up').read(
        text({ type: 'response.failed', response: { error: { code: 'server_error', message: 'boom' } } }),
      );
    expect(failed).toThrow(GravityError);
    expect(failed).toThrow("upstream 'up': boom");
    expect(() =>
      new ResponsesEventRelay('up').read(text({ type: 'error', code: 'x', message: 'overloaded' })),
    ).toThrow("upstream 'up': overloaded");
    // A terminal event without its Response object leaves nothing to answer or store.
    expect(() => new ResponsesEventRelay('up').read(text({ type: 'response.completed' }))).toThrow(
      "upstream 'up' sent response.completed without its response object",
    );
  });
});
