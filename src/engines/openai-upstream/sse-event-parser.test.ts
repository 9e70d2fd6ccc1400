import { describe, expect, it } from 'vitest';
import { SseEventParser } from './sse-event-parser.js';

const bytes = (text: string) => new TextEncoder().encode(text);

describe('SseEventParser', () => {
  it('returns events split across arbitrary byte boundaries', () => {
    const parser = new SseEventParser();
    const stream = 'data: {"a":1}\n\ndata: {"b":2}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n';
    const events: string[] = [];
    for (let at = 0; at < stream.length; at += 3)
      events.push(...parser.push(bytes(stream.slice(at, at + 3))));
    expect(events).toEqual(['{"a":1}', '{"b":2}', '[DONE]']);
  });

  it('keeps a multi-byte character intact when its bytes arrive in two chunks', () => {
    const parser = new SseEventParser();
    const encoded = bytes('data: "héllo"\n\n');
    const split = 8; // inside the two bytes of "é"
    expect(parser.push(encoded.slice(0, split))).toEqual([]);
    expect(parser.push(encoded.slice(split))).toEqual(['"héllo"']);
  });

  it('joins multi-line data and yields an unterminated last event at the end', () => {
    const parser = new SseEventParser();
    expect(parser.push(bytes('data: one\ndata: two\n\nevent: x\ndata: tail'))).toEqual(['one\ntwo']);
    expect(parser.end()).toEqual(['tail']);
  });
});
