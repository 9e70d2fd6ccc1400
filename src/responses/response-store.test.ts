import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ResponseStore, type StoredResponse } from './response-store.js';

let store: ResponseStore | undefined;
afterEach(() => store?.close());

let nowSeconds = 1_000_000;
function openStore(retentionDays = 30): ResponseStore {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'gravity-responses-')), 'responses.sqlite');
  store = new ResponseStore({ path: file, retentionDays, nowSeconds: () => nowSeconds });
  return store;
}

function response(id: string, tenant: string, previousResponseId: string | null = null): StoredResponse {
  return {
    id,
    tenant,
    createdAtSeconds: nowSeconds,
    previousResponseId,
    response: { id, output: [{ type: 'message', id: `out_${id}` }] },
    inputItems: [{ type: 'message', id: `in_${id}` }],
  };
}

describe('ResponseStore', () => {
  it('shows a response only to its tenant, for reading and deleting', () => {
    const responses = openStore();
    responses.save(response('resp_a', 'alpha'));
    expect(responses.get('alpha', 'resp_a')?.response).toMatchObject({ id: 'resp_a' });
    expect(responses.get('beta', 'resp_a')).toBeNull();
    expect(responses.conversation('beta', 'resp_a')).toBeNull();
    expect(responses.delete('beta', 'resp_a')).toBe(false);
    expect(responses.delete('alpha', 'resp_a')).toBe(true);
    expect(responses.get('alpha', 'resp_a')).toBeNull();
  });

  it('expands a conversation oldest first: each response’s input items, then its output', () => {
    const responses = openStore();
    responses.save(response('resp_1', 'alpha'));
    responses.save(response('resp_2', 'alpha', 'resp_1'));
    responses.save(response('resp_3', 'alpha', 'resp_2'));
    expect(responses.conversation('alpha', 'resp_3')?.map((item) => item.id)).toEqual([
      'in_resp_1',
      'out_resp_1',
      'in_resp_2',
      'out_resp_2',
      'in_resp_3',
      'out_resp_3',
    ]);
    // A deleted link ends the walk: the conversation starts after it.
    responses.delete('alpha', 'resp_1');
    expect(responses.conversation('alpha', 'resp_3')?.[0]?.id).toBe('in_resp_2');
  });

  it('stores a relayed Response given as JSON text as it is, and expands it like any other', () => {
    const responses = openStore();
    const json = '{"id":"resp_r","output":[{"type":"message","id":"out_resp_r"}],"extra":{"kept":true}}';
    responses.save({ ...response('resp_r', 'alpha'), response: json });
    expect(responses.get('alpha', 'resp_r')?.response).toEqual(JSON.parse(json));
    expect(responses.conversation('alpha', 'resp_r')?.map((item) => item.id)).toEqual([
      'in_resp_r',
      'out_resp_r',
    ]);
  });

  it('expands a conversation only along the tenant’s own responses', () => {
    const responses = openStore();
    responses.save(response('resp_1', 'beta'));
    responses.save(response('resp_2', 'alpha', 'resp_1'));
    // Beta's response is absent to alpha: alpha's conversation starts after it.
    expect(responses.conversation('alpha', 'resp_2')?.map((item) => item.id)).toEqual([
      'in_resp_2',
      'out_resp_2',
    ]);
  });

  it('refuses a conversation longer than the limit with a 400 instead of cutting it', () => {
    const responses = openStore();
    for (let index = 1; index <= 4; index++)
      responses.save(response(`resp_${index}`, 'alpha', index === 1 ? null : `resp_${index - 1}`));
    expect(responses.conversation('alpha', 'resp_4', 4)).toHaveLength(8);
    expect(() => responses.conversation('alpha', 'resp_4', 3)).toThrow(
      expect.objectContaining({ status: 400, param: 'previous_response_id', code: 'conversation_too_long' }),
    );
  });

  it('neither serves nor keeps responses older than the retention', () => {
    const responses = openStore(1);
    responses.save(response('resp_old', 'alpha'));
    nowSeconds += 86_400 + 1;
    expect(responses.get('alpha', 'resp_old')).toBeNull();
    expect(responses.prune()).toBe(1);
  });
});
