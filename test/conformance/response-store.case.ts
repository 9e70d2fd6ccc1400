import { afterEach, describe, expect, it } from 'vitest';
import type { ResponseStore, StoredResponse } from '../../src/responses/response-store.js';

/**
 * What every response store promises (`src/responses/response-store.ts`), run against SQLite and
 * PostgreSQL alike. `open` gives a fresh, empty store whose clock reads `now()`.
 */
export type OpenResponseStore = (options: {
  retentionDays: number;
  now: () => number;
}) => Promise<ResponseStore>;

export function describeResponseStoreConformance(name: string, open: OpenResponseStore): void {
  describe(name, () => {
    let store: ResponseStore | undefined;
    afterEach(async () => {
      await store?.close();
      store = undefined;
    });

    let nowSeconds = 1_000_000;
    async function openStore(retentionDays = 30): Promise<ResponseStore> {
      store = await open({ retentionDays, now: () => nowSeconds });
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

    const ids = (items: Record<string, unknown>[] | null) => items?.map((item) => item.id);

    it('shows a response only to its tenant, for reading and deleting', async () => {
      const responses = await openStore();
      await responses.save(response('resp_a', 'alpha'));
      expect((await responses.get('alpha', 'resp_a'))?.response).toMatchObject({ id: 'resp_a' });
      expect(await responses.get('beta', 'resp_a')).toBeNull();
      expect(await responses.conversation('beta', 'resp_a')).toBeNull();
      expect(await responses.delete('beta', 'resp_a')).toBe(false);
      expect(await responses.delete('alpha', 'resp_a')).toBe(true);
      expect(await responses.get('alpha', 'resp_a')).toBeNull();
    });

    it('expands a conversation oldest first: each response’s input items, then its output', async () => {
      const responses = await openStore();
      await responses.save(response('resp_1', 'alpha'));
      await responses.save(response('resp_2', 'alpha', 'resp_1'));
      await responses.save(response('resp_3', 'alpha', 'resp_2'));
      expect(ids(await responses.conversation('alpha', 'resp_3'))).toEqual([
        'in_resp_1',
        'out_resp_1',
        'in_resp_2',
        'out_resp_2',
        'in_resp_3',
        'out_resp_3',
      ]);
      // A deleted link ends the walk: the conversation starts after it.
      await responses.delete('alpha', 'resp_1');
      expect((await responses.conversation('alpha', 'resp_3'))?.[0]?.id).toBe('in_resp_2');
    });

    it('stores a relayed Response given as JSON text as it is, and expands it like any other', async () => {
      const responses = await openStore();
      const json = '{"id":"resp_r","output":[{"type":"message","id":"out_resp_r"}],"extra":{"kept":true}}';
      await responses.save({ ...response('resp_r', 'alpha'), response: json });
      expect((await responses.get('alpha', 'resp_r'))?.response).toEqual(JSON.parse(json));
      expect(ids(await responses.conversation('alpha', 'resp_r'))).toEqual(['in_resp_r', 'out_resp_r']);
    });

    it('expands a conversation only along the tenant’s own responses', async () => {
      const responses = await openStore();
      await responses.save(response('resp_1', 'beta'));
      await responses.save(response('resp_2', 'alpha', 'resp_1'));
      // Beta's response is absent to alpha: alpha's conversation starts after it.
      expect(ids(await responses.conversation('alpha', 'resp_2'))).toEqual(['in_resp_2', 'out_resp_2']);
    });

    it('refuses a conversation longer than the limit with a 400 instead of cutting it', async () => {
      const responses = await openStore();
      for (let index = 1; index <= 4; index++)
        await responses.save(response(`resp_${index}`, 'alpha', index === 1 ? null : `resp_${index - 1}`));
      expect(await responses.conversation('alpha', 'resp_4', 4)).toHaveLength(8);
      await expect(responses.conversation('alpha', 'resp_4', 3)).rejects.toMatchObject({
        status: 400,
        param: 'previous_response_id',
        code: 'conversation_too_long',
      });
    });

    it('neither serves nor keeps responses older than the retention', async () => {
      const responses = await openStore(1);
      await responses.save(response('resp_old', 'alpha'));
      nowSeconds += 86_400 + 1;
      expect(await responses.get('alpha', 'resp_old')).toBeNull();
      expect(await responses.conversation('alpha', 'resp_old')).toBeNull();
      expect(await responses.prune()).toBe(1);
    });
  });
}
