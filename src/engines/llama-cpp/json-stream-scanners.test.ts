import { describe, expect, it } from 'vitest';
import { JsonValueEndScanner, type ToolCallEvent, ToolCallScanner } from './json-stream-scanners.js';

/** Feeds text in pieces of `size` characters and joins what the scanner reports per call. */
function scanCalls(text: string, size: number) {
  const scanner = new ToolCallScanner();
  const events: ToolCallEvent[] = [];
  for (let at = 0; at < text.length; at += size) events.push(...scanner.push(text.slice(at, at + size)));
  const calls: Array<{ name: string; arguments: string }> = [];
  for (const event of events) {
    if (event.kind === 'call') calls[event.index] = { name: event.name, arguments: '' };
    else {
      const call = calls[event.index];
      if (!call) throw new Error('arguments before the name');
      call.arguments += event.text;
    }
  }
  return { calls, complete: scanner.complete, events };
}

describe('ToolCallScanner', () => {
  const array =
    '[{"name": "get_weather", "arguments": {\n    "city": "Os}lo \\"x\\"",\n    "tags": [1, {"a": "]"}]\n}},' +
    ' {"name":"n\\u00e9","arguments":42}]';

  it('reports each name when complete and the arguments’ JSON text as written, whatever the chunking', () => {
    for (const size of [1, 2, 3, 7, array.length]) {
      const { calls, complete } = scanCalls(array, size);
      expect(complete).toBe(true);
      expect(calls.map((call) => call.name)).toEqual(['get_weather', 'né']);
      expect(JSON.parse(calls[0]?.arguments ?? '')).toEqual({ city: 'Os}lo "x"', tags: [1, { a: ']' }] });
      expect(calls[1]?.arguments).toBe('42');
    }
  });

  it('sends at most one arguments event per call per chunk, after the call event', () => {
    const { events } = scanCalls(array, array.length);
    expect(events.map((event) => `${event.kind}${event.index}`)).toEqual([
      'call0',
      'arguments0',
      'call1',
      'arguments1',
    ]);
  });

  it('ignores what follows the closed array', () => {
    const scanner = new ToolCallScanner();
    scanner.push('[{"name":"a","arguments":{}}]');
    expect(scanner.complete).toBe(true);
    expect(scanner.push('[{"name":"b","arguments":{}}]')).toEqual([]);
    expect(scanner.calls).toBe(1);
  });
});

describe('JsonValueEndScanner', () => {
  it('finds the end of an object across chunks, past braces and quotes inside strings', () => {
    const scanner = new JsonValueEndScanner();
    expect(scanner.push('{"a": "}\\"{", ')).toBe(14);
    expect(scanner.complete).toBe(false);
    expect(scanner.push('"b": [1, {}]}\n\n')).toBe(13);
    expect(scanner.complete).toBe(true);
  });

  it('ends a top-level string at its closing quote', () => {
    const scanner = new JsonValueEndScanner();
    expect(scanner.push('"a\\"b" ')).toBe(6);
    expect(scanner.complete).toBe(true);
  });
});
