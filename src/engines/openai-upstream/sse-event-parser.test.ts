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

describe('SseEventParser bounds', () => {
  it('parses a line that spans many reads into one event', () => {
    const parser = new SseEventParser();
    const payload = 'x'.repeat(100_000);
    const stream = `data: ${payload}\n\ndata: [DONE]\n\n`;
    const events: string[] = [];
    for (let at = 0; at < stream.length; at += 977)
      events.push(...parser.push(bytes(stream.slice(at, at + 977))));
    expect(events).toEqual([payload, '[DONE]']);
  });

  it('fails the stream with upstream_error once an unended line outgrows the bound', () => {
    const parser = new SseEventParser("upstream 'slow'", 1000);
    expect(parser.push(bytes(`data: ${'x'.repeat(600)}`))).toEqual([]);
    expect(() => parser.push(bytes('y'.repeat(600)))).toThrow(
      expect.objectContaining({ status: 502, code: 'upstream_error' }),
    );
  });

  it('fails the stream once one event of several data lines outgrows the bound', () => {
    const parser = new SseEventParser("upstream 'slow'", 1000);
    expect(() => parser.push(bytes(`data: ${'a'.repeat(600)}\ndata: ${'b'.repeat(600)}\n`))).toThrow(
      /upstream 'slow' sent an event larger than 1000 characters/,
    );
  });

  it('counts each event on its own: many events under the bound pass', () => {
    const parser = new SseEventParser("upstream 'fine'", 1000);
    const event = `data: ${'z'.repeat(900)}\n\n`;
    expect(parser.push(bytes(event.repeat(50)))).toHaveLength(50);
  });
});
