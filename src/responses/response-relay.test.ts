import { describe, expect, it } from 'vitest';
import { createRequestContext, type MeteredFigures } from '../core/request-context.js';
import type { FinishPart, UpstreamChunkPart } from '../core/stream-parts.js';
import { ResponseRelay } from './response-relay.js';
import type { ResponseEcho } from './responses-request.js';

const context = createRequestContext({
  endpoint: 'responses',
  stream: true,
  model: 'gravity-name',
  serviceTier: 'flex',
  nowMs: 0,
  epochMs: 0,
  requestId: 'abc',
});
const echo = { previousResponseId: 'resp_before', store: true } as ResponseEcho;

const part = (...events: string[]): UpstreamChunkPart => ({
  type: 'upstream-chunk',
  protocol: 'responses',
  events: events.map((json) => ({ json, chunk: JSON.parse(json) as Record<string, unknown> })),
  tokens: 0,
});

const created =
  '{"type":"response.created","sequence_number":0,"response":{"id":"resp_up","object":"response","model":"up-model","output":[],"store":false,"usage":null}}';
const delta =
  '{"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_up","delta":"Caf\\u00e9 ","logprobs":[{"token":"Caf","logprob":-0.5}],"obfuscation":"x"}';
const itemDone =
  '{"type":"response.output_item.done","sequence_number":2,"output_index":0,"item":{"id":"msg_up","type":"message","content":[]}}';
const completed = (usage: string) =>
  `{"type":"response.completed","sequence_number":3,"response":{"id":"resp_up","model":"up-model","service_tier":"default","previous_response_id":null,"store":false,"output":[{"id":"msg_up","type":"message"}],"usage":${usage}}}`;

const finishWith = (source: 'upstream' | 'counted'): FinishPart => ({
  type: 'finish',
  finishReason: 'stop',
  usage: { promptTokens: 7, cachedPromptTokens: 0, completionTokens: 2, source },
});
const metered = {
  energyJoules: 1,
  energySource: 'modelled',
  costUsd: 0.5,
  costSource: 'price-book',
  priceUsd: 0.75,
  marginUsd: 0.25,
  carbonGrams: 0.1,
} as MeteredFigures;

describe('ResponseRelay', () => {
  it('writes deltas as received and rewrites only the owned fields of lifecycle events, adding those missing', () => {
    const relay = new ResponseRelay(context, echo);
    const out = relay.encode(part(created, delta, itemDone));
    expect(out).toBe(
      'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{' +
        '"service_tier":"flex","previous_response_id":"resp_before",' +
        '"id":"resp_abc","object":"response","model":"gravity-name","output":[],"store":true,"usage":null}}\n\n' +
        `event: response.output_text.delta\ndata: ${delta}\n\n` +
        `event: response.output_item.done\ndata: ${itemDone}\n\n`,
    );
    expect(relay.items()).toEqual([{ id: 'msg_up', type: 'message', content: [] }]);
    expect(relay.nextSequenceNumber()).toBe(3);
  });

  it("holds the terminal event, then adds Gravity's figures to the upstream's usage", () => {
    const relay = new ResponseRelay(context, echo);
    const usage = '{"input_tokens":7,"output_tokens":2,"total_tokens":9}';
    expect(relay.encode(part(completed(usage)))).toBe('');
    const relayed = relay.finish(finishWith('upstream'), metered);
    expect(relayed?.type).toBe('response.completed');
    expect(relayed?.responseJson).toBe(
      '{"id":"resp_abc","model":"gravity-name","service_tier":"flex","previous_response_id":"resp_before","store":true,' +
        '"output":[{"id":"msg_up","type":"message"}],"usage":{"gravity":{"usage_source":"upstream","energy_joules":1,' +
        '"energy_source":"modelled","cost_usd":0.5,"cost_source":"price-book","price_usd":0.75,"margin_usd":0.25,' +
        '"carbon_grams":0.1},"input_tokens":7,"output_tokens":2,"total_tokens":9}}',
    );
    expect(relayed?.eventJson).toBe(
      `{"type":"response.completed","sequence_number":3,"response":${relayed?.responseJson}}`,
    );
    expect(relayed?.response).toEqual(JSON.parse(relayed?.responseJson ?? ''));
    // The object is built from the engine's parsed one, with the text's edits, keys in the text's order.
    expect(JSON.stringify(relayed?.response)).toBe(relayed?.responseJson);
    // Without metered figures (a failed commit) the upstream's usage stays as it was.
    const unmetered = new ResponseRelay(context, echo);
    unmetered.add(part(completed(usage)));
    expect(unmetered.finish(finishWith('upstream'), null)?.responseJson).toContain(`"usage":${usage}`);
  });

  it("puts Gravity's counts in place of a usage the upstream did not send", () => {
    const relay = new ResponseRelay(context, echo);
    relay.add(part(completed('null')));
    const relayed = relay.finish(finishWith('counted'), null);
    expect(JSON.stringify(relayed?.response)).toBe(relayed?.responseJson);
    const response = relayed?.response;
    expect(response?.usage).toEqual({
      input_tokens: 7,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 2,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 9,
    });
  });

  it('has nothing to finish when the upstream sent no terminal event', () => {
    const relay = new ResponseRelay(context, echo);
    relay.add(part(created));
    expect(relay.finish(finishWith('counted'), null)).toBeNull();
  });
});
