import type { Sql } from 'postgres';
import {
  conversationItems,
  maxConversationResponses,
  type ResponseRow,
  type ResponseStore,
  type ResponseToSave,
  type StoredResponse,
  storedResponseOf,
} from './response-store.js';

/**
 * Stored responses in the fleet's PostgreSQL (the ledger's database; migration 0003), so that a client
 * continues a conversation with `previous_response_id` on whichever replica its next request reaches.
 * The Response is kept as the JSON text it was sent as (a relayed upstream's bytes, not re-encoded); the
 * conversation query reads each link's `output` out of it.
 */
export class PostgresResponseStore implements ResponseStore {
  private readonly retentionSeconds: number;
  private readonly nowSeconds: () => number;
  private readonly pruneTimer: NodeJS.Timeout;

  constructor(
    private readonly sql: Sql,
    options: { retentionDays: number; nowSeconds?: () => number },
  ) {
    this.retentionSeconds = options.retentionDays * 86_400;
    this.nowSeconds = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
    // Every replica prunes; the DELETE is idempotent, and cheap on the created_at index.
    this.pruneTimer = setInterval(() => void this.prune().catch(() => {}), 3_600_000);
    this.pruneTimer.unref();
  }

  async save(response: ResponseToSave): Promise<void> {
    const text =
      typeof response.response === 'string' ? response.response : JSON.stringify(response.response);
    await this.sql`
      INSERT INTO stored_responses (id, tenant, created_at, previous_response_id, response, input_items)
      VALUES (${response.id}, ${response.tenant}, ${response.createdAtSeconds}, ${response.previousResponseId},
        ${text}, ${JSON.stringify(response.inputItems)})
      ON CONFLICT (id) DO UPDATE SET tenant = EXCLUDED.tenant, created_at = EXCLUDED.created_at,
        previous_response_id = EXCLUDED.previous_response_id, response = EXCLUDED.response,
        input_items = EXCLUDED.input_items`;
  }

  async get(tenant: string, id: string): Promise<StoredResponse | null> {
    const [row] = await this.sql<ResponseRow[]>`
      SELECT id, tenant, created_at, previous_response_id, response, input_items FROM stored_responses
      WHERE id = ${id} AND tenant = ${tenant} AND created_at >= ${this.oldestKeptSeconds()}`;
    if (!row) return null;
    return storedResponseOf(row);
  }

  async delete(tenant: string, id: string): Promise<boolean> {
    const deleted = await this.sql`DELETE FROM stored_responses WHERE id = ${id} AND tenant = ${tenant}`;
    return deleted.count > 0;
  }

  async conversation(
    tenant: string,
    id: string,
    maxResponses = maxConversationResponses,
  ): Promise<Record<string, unknown>[] | null> {
    const oldest = this.oldestKeptSeconds();
    // The chain back from one response, newest first, in one query: every link the tenant's and within
    // the retention (a link that is not ends the chain), at most `maxResponses` + 1 links.
    const rows = await this.sql<Array<{ input_items: string; output: string | null }>>`
      WITH RECURSIVE chain (depth, previous_response_id, input_items, output) AS (
        SELECT 0, previous_response_id, input_items, (response::jsonb -> 'output')::text
        FROM stored_responses WHERE id = ${id} AND tenant = ${tenant} AND created_at >= ${oldest}
        UNION ALL
        SELECT chain.depth + 1, stored.previous_response_id, stored.input_items,
               (stored.response::jsonb -> 'output')::text
        FROM chain JOIN stored_responses stored ON stored.id = chain.previous_response_id
        WHERE stored.tenant = ${tenant} AND stored.created_at >= ${oldest} AND chain.depth < ${maxResponses}
      )
      SELECT input_items, output FROM chain ORDER BY depth DESC`;
    return conversationItems(rows, id, maxResponses);
  }

  async prune(): Promise<number> {
    const deleted = await this
      .sql`DELETE FROM stored_responses WHERE created_at < ${this.oldestKeptSeconds()}`;
    return deleted.count;
  }

  async close(): Promise<void> {
    clearInterval(this.pruneTimer);
    await this.sql.end({ timeout: 5 });
  }

  private oldestKeptSeconds(): number {
    return this.nowSeconds() - this.retentionSeconds;
  }
}
