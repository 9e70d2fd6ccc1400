import { describe, expect, it } from 'vitest';
import { ResponseUsageReader } from './response-usage.js';

const sse = (events: unknown[]) =>
  Buffer.from(`${events.map((event) => `data: ${JSON.stringify(event)}\n\n`).join('')}data: [DONE]\n\n`);

describe('ResponseUsageReader', () => {
  it("reads a stream's final usage chunk, split across chunks, past chunks with a null usage", () => {
    const reader = new ResponseUsageReader(() => {});
    reader.contentType('text/event-stream; charset=utf-8');
    const bytes = sse([
      { choices: [{ index: 0, delta: { content: 'a' } }], usage: null },
      { choices: [{ index: 0, delta: { content: 'b' } }], usage: null },
      {
        choices: [],
        usage: { prompt_tokens: 5, completion_tokens: 2, prompt_tokens_details: { cached_tokens: 3 } },
      },
    ]);
    // Cut inside the usage line: it is read whole.
    const cut = bytes.indexOf('prompt_tokens');
    reader.chunk(bytes.subarray(0, cut));
    reader.chunk(bytes.subarray(cut));
    expect(reader.usage(99)).toEqual({
      promptTokens: 5,
      cachedPromptTokens: 3,
      completionTokens: 2,
      source: 'upstream',
    });
  });

  it("counts a stream's content chunks when the server sends no usage, and reads a JSON body's usage", () => {
    const stream = new ResponseUsageReader(() => {});
    stream.contentType('text/event-stream');
    stream.chunk(sse([1, 2, 3].map((n) => ({ choices: [{ index: 0, delta: { content: `${n}` } }] }))));
    expect(stream.usage(40)).toEqual({
      promptTokens: 40,
      cachedPromptTokens: 0,
      completionTokens: 3,
      source: 'counted',
    });
    const json = new ResponseUsageReader(() => {});
    json.contentType('application/json');
    json.chunk(Buffer.from('{"choices":[],"usage":{"prompt_tokens":7,'));
    json.chunk(Buffer.from('"completion_tokens":1}}'));
    expect(json.usage(40)).toMatchObject({ promptTokens: 7, completionTokens: 1, source: 'upstream' });
  });

  it("reads an embeddings answer's usage (no completion tokens), but not a usage that lacks them otherwise", () => {
    const read = (usage: unknown) => {
      const reader = new ResponseUsageReader(() => {});
      reader.contentType('application/json');
      reader.chunk(Buffer.from(JSON.stringify({ object: 'list', data: [], usage })));
      return reader.usage(40);
    };
    expect(read({ prompt_tokens: 6, total_tokens: 6 })).toMatchObject({
      promptTokens: 6,
      completionTokens: 0,
      source: 'upstream',
    });
    // total ≠ prompt: completion tokens were generated but not reported; the estimate stands in.
    expect(read({ prompt_tokens: 6, total_tokens: 9 })).toMatchObject({
      promptTokens: 40,
      source: 'counted',
    });
  });
});
