import { describe, expect, it } from 'vitest';
import { requestCorrelation, validTraceparent } from './request-correlation.js';

const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('requestCorrelation', () => {
  it('is null for a request without correlation headers', () => {
    expect(requestCorrelation({ 'content-type': 'application/json' })).toBeNull();
  });

  it('keeps a valid x-request-id and a well-formed traceparent with its tracestate', () => {
    expect(
      requestCorrelation({ 'x-request-id': 'req_01HZX.5:a+b/c=', traceparent, tracestate: ['a=1', 'b=2'] }),
    ).toEqual({ clientRequestId: 'req_01HZX.5:a+b/c=', traceparent, tracestate: 'a=1,b=2' });
  });

  it('drops an x-request-id that is too long, empty, repeated or has odd characters', () => {
    for (const header of ['x'.repeat(129), '', 'with space', 'quote"', 'new\nline', 'ünï', ['a', 'b']])
      expect(requestCorrelation({ 'x-request-id': header, traceparent })?.clientRequestId).toBeNull();
    expect(requestCorrelation({ 'x-request-id': 'x'.repeat(128) })?.clientRequestId).toBe('x'.repeat(128));
  });

  it('drops a tracestate without a valid traceparent, and one that is not printable ASCII', () => {
    expect(requestCorrelation({ 'x-request-id': 'id', tracestate: 'a=1' })?.tracestate).toBeNull();
    expect(requestCorrelation({ traceparent, tracestate: 'a=\u0001' })?.tracestate).toBeNull();
  });
});

describe('validTraceparent', () => {
  it('accepts version 00 as specified and later versions with extra fields', () => {
    expect(validTraceparent(traceparent)).toBe(traceparent);
    expect(validTraceparent(`01${traceparent.slice(2)}-extra`)).toBe(`01${traceparent.slice(2)}-extra`);
  });

  it('refuses version ff, all-zero ids, upper case, a version 00 with extra fields and wrong lengths', () => {
    for (const value of [
      `ff${traceparent.slice(2)}`,
      `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
      `00-4bf92f3577b34da6a3ce929d0e0e4736-${'0'.repeat(16)}-01`,
      traceparent.toUpperCase(),
      `${traceparent}-extra`,
      traceparent.slice(0, -1),
      '',
    ])
      expect(validTraceparent(value)).toBeNull();
  });
});
