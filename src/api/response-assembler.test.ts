import { describe, expect, it } from 'vitest';
import type { UpstreamChunkPart, UpstreamEvent } from '../core/stream-parts.js';
import { ResponseAssembler } from './response-assembler.js';

function chunk(object: Record<string, unknown>): UpstreamChunkPart {
  return {
    type: 'upstream-chunk',
    events: [{ json: JSON.stringify(object), chunk: object as UpstreamEvent['chunk'] }],
    tokens: 1,
  };
}

describe('ResponseAssembler', () => {
  it('joins plain text into choice 0', () => {
    const assembler = new ResponseAssembler('chat.completions');
    assembler.add({ type: 'text-delta', text: 'a ', tokens: 1 });
    assembler.add({ type: 'text-delta', text: 'b', tokens: 1 });
    expect(assembler.build('length')).toEqual([
      {
        index: 0,
        message: { role: 'assistant', content: 'a b', refusal: null },
        logprobs: null,
        finish_reason: 'length',
      },
    ]);
  });

  it('merges streamed tool calls by index, keeps unknown fields and joins logprobs', () => {
    const assembler = new ResponseAssembler('chat.completions');
    assembler.add(
      chunk({
        system_fingerprint: 'fp',
        choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }],
      }),
    );
    assembler.add(
      chunk({ choices: [{ index: 0, delta: { reasoning_content: 'think' }, finish_reason: null }] }),
    );
    assembler.add(
      chunk({
        choices: [
          {
            index: 0,
            delta: { reasoning_content: 'ing' },
            logprobs: { content: [{ token: 'a' }] },
            finish_reason: null,
          },
        ],
      }),
    );
    assembler.add(
      chunk({
        choices: [
          {
            index: 0,
            delta: {
              tool_calls: [
                { index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '' } },
              ],
            },
            logprobs: { content: [{ token: 'b' }] },
            finish_reason: null,
          },
        ],
      }),
    );
    assembler.add(
      chunk({
        choices: [
          {
            index: 0,
            delta: {
              tool_calls: [
                { index: 1, id: 'call_2', type: 'function', function: { name: 'g', arguments: '{}' } },
              ],
            },
            finish_reason: null,
          },
        ],
      }),
    );
    assembler.add(
      chunk({
        choices: [
          {
            index: 0,
            delta: { tool_calls: [{ index: 0, function: { arguments: '{"x":' } }] },
            finish_reason: null,
          },
        ],
      }),
    );
    assembler.add(
      chunk({
        choices: [
          {
            index: 0,
            delta: { tool_calls: [{ index: 0, function: { arguments: '1}' } }] },
            finish_reason: 'tool_calls',
          },
        ],
      }),
    );
    expect(assembler.fingerprint).toBe('fp');
    expect(assembler.build('stop')).toEqual([
      {
        index: 0,
        message: {
          role: 'assistant',
          content: null,
          refusal: null,
          reasoning_content: 'thinking',
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"x":1}' } },
            { id: 'call_2', type: 'function', function: { name: 'g', arguments: '{}' } },
          ],
        },
        logprobs: { content: [{ token: 'a' }, { token: 'b' }] },
        finish_reason: 'tool_calls',
      },
    ]);
  });

  it('keeps several choices apart, in index order, for completions too', () => {
    const assembler = new ResponseAssembler('completions');
    assembler.add({
      type: 'choice-delta',
      choice: { index: 1, text: 'y', finish_reason: 'stop' },
      tokens: 1,
    });
    assembler.add({
      type: 'choice-delta',
      choice: {
        index: 0,
        text: 'x',
        logprobs: { tokens: ['x'], token_logprobs: [-1] },
        finish_reason: 'length',
      },
      tokens: 1,
    });
    expect(assembler.build('length')).toEqual([
      { text: 'x', index: 0, logprobs: { tokens: ['x'], token_logprobs: [-1] }, finish_reason: 'length' },
      { text: 'y', index: 1, logprobs: null, finish_reason: 'stop' },
    ]);
  });
});
