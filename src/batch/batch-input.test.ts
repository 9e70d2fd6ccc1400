import { describe, expect, it } from 'vitest';
import { parseBatchInput } from './batch-input.js';

const line = (customId: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    custom_id: customId,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'm', messages: [{ role: 'user', content: 'hi' }] },
    ...extra,
  });

const parse = (text: string, maxLines = 100) => parseBatchInput(text, '/v1/chat/completions', { maxLines });

describe('parseBatchInput', () => {
  it('reads well-formed lines with their line numbers, skipping blank lines and CRLF endings', () => {
    const parsed = parse(`${line('a')}\r\n\n${line('b')}\n`);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.lines.map((entry) => [entry.lineNumber, entry.customId])).toEqual([
      [1, 'a'],
      [3, 'b'],
    ]);
    expect(parsed.malformed).toEqual([]);
  });

  it('reports each malformed line on its own and keeps the others', () => {
    const parsed = parse(
      [
        line('ok'),
        '{not json',
        '[1, 2]',
        JSON.stringify({ method: 'POST', url: '/v1/chat/completions', body: {} }),
        line('get', { method: 'GET' }),
        line('wrong-url', { url: '/v1/completions' }),
        line('no-body', { body: 'text' }),
        line('extra', { model: 'm' }),
      ].join('\n'),
    );
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.lines.map((entry) => entry.customId)).toEqual(['ok']);
    expect(parsed.malformed.map((entry) => [entry.lineNumber, entry.customId, entry.code])).toEqual([
      [2, null, 'invalid_json_line'],
      [3, null, 'invalid_request'],
      [4, null, 'missing_required_parameter'],
      [5, 'get', 'invalid_method'],
      [6, 'wrong-url', 'invalid_url'],
      [7, 'no-body', 'invalid_body'],
      [8, 'extra', 'unrecognized_argument'],
    ]);
  });

  it('fails the whole file when a custom_id repeats, naming each repeat and its first line', () => {
    const parsed = parse([line('a'), line('b'), line('a'), line('a', { method: 'GET' })].join('\n'));
    expect(parsed).toEqual({
      ok: false,
      errors: [
        expect.objectContaining({ code: 'duplicate_custom_id', line: 3, param: 'custom_id' }),
        expect.objectContaining({ code: 'duplicate_custom_id', line: 4 }),
      ],
    });
    if (parsed.ok) return;
    expect(parsed.errors[0]?.message).toContain('already used on line 1');
  });

  it('fails an empty file and one with too many requests', () => {
    expect(parse('\n\n')).toMatchObject({ ok: false, errors: [{ code: 'empty_file' }] });
    expect(parse([line('a'), line('b'), line('c')].join('\n'), 2)).toMatchObject({
      ok: false,
      errors: [{ code: 'too_many_requests' }],
    });
  });
});
