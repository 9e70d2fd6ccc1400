import Database from 'better-sqlite3';
import { preparePrivateDatabaseFile } from '../core/private-files.js';
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
 * Responses stored for retrieval and for `previous_response_id`, in SQLite (`responses.sqlite` in the
 * data directory). Every read and delete names the tenant: a response is visible only to the tenant that
 * created it, and another tenant's id reads as absent (404, never 403, so ids reveal nothing). Responses
 * older than the retention are neither served nor kept (pruned at open and hourly).
 *
 * better-sqlite3 answers synchronously; the methods are async only to share `ResponseStore` with the
 * PostgreSQL store.
 */

export class SqliteResponseStore implements ResponseStore {
  private readonly db: Database.Database;
  private readonly retentionSeconds: number;
  private readonly pruneTimer: NodeJS.Timeout;
  private readonly nowSeconds: () => number;
  // Prepared once: a conversation read is on every request that names `previous_response_id`.
  private readonly insertStatement: Database.Statement;
  private readonly getStatement: Database.Statement;
  private readonly deleteStatement: Database.Statement;
  private readonly pruneStatement: Database.Statement;
  private readonly chainStatement: Database.Statement;

  constructor(options: { path: string; retentionDays: number; nowSeconds?: () => number }) {
    // Stored conversations: readable by Gravity's user only.
    preparePrivateDatabaseFile(options.path);
    this.db = new Database(options.path);
    this.db.pragma('journal_mode = WAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS responses (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        previous_response_id TEXT,
        response TEXT NOT NULL,
        input_items TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS responses_created_at ON responses (created_at);
    `);
    this.insertStatement = this.db.prepare(
      `INSERT OR REPLACE INTO responses (id, tenant, created_at, previous_response_id, response, input_items)
       VALUES (?, ?, ?, ?, ?, ?)`,
    );
    this.getStatement = this.db.prepare(
      `SELECT id, tenant, created_at, previous_response_id, response, input_items FROM responses
       WHERE id = ? AND tenant = ? AND created_at >= ?`,
    );
    this.deleteStatement = this.db.prepare('DELETE FROM responses WHERE id = ? AND tenant = ?');
    this.pruneStatement = this.db.prepare('DELETE FROM responses WHERE created_at < ?');
    // The chain back from one response, newest first, in one query: every link the tenant's and within
    // the retention (a link that is not ends the chain), only the columns the expansion reads (the
    // output, not the whole stored Response), and at most `limit` + 1 links, so that a chain longer than
    // the limit is seen, not cut.
    this.chainStatement = this.db.prepare(`
      WITH RECURSIVE chain (depth, previous_response_id, input_items, output) AS (
        SELECT 0, previous_response_id, input_items, json_extract(response, '$.output')
        FROM responses WHERE id = @id AND tenant = @tenant AND created_at >= @oldest
        UNION ALL
        SELECT chain.depth + 1, responses.previous_response_id, responses.input_items,
               json_extract(responses.response, '$.output')
        FROM chain JOIN responses ON responses.id = chain.previous_response_id
        WHERE responses.tenant = @tenant AND responses.created_at >= @oldest AND chain.depth < @limit
      )
      SELECT input_items, output FROM chain ORDER BY depth DESC`);
    this.retentionSeconds = options.retentionDays * 86_400;
    this.nowSeconds = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
    void this.prune();
    this.pruneTimer = setInterval(() => void this.prune(), 3_600_000);
    this.pruneTimer.unref();
  }

  async save(response: ResponseToSave): Promise<void> {
    this.insertStatement.run(
      response.id,
      response.tenant,
      response.createdAtSeconds,
      response.previousResponseId,
      typeof response.response === 'string' ? response.response : JSON.stringify(response.response),
      JSON.stringify(response.inputItems),
    );
  }

  async get(tenant: string, id: string): Promise<StoredResponse | null> {
    const row = this.getStatement.get(id, tenant, this.oldestKeptSeconds()) as ResponseRow | undefined;
    if (!row) return null;
    return storedResponseOf(row);
  }

  async delete(tenant: string, id: string): Promise<boolean> {
    return this.deleteStatement.run(id, tenant).changes > 0;
  }

  async conversation(
    tenant: string,
    id: string,
    maxResponses = maxConversationResponses,
  ): Promise<Record<string, unknown>[] | null> {
    const rows = this.chainStatement.all({
      id,
      tenant,
      oldest: this.oldestKeptSeconds(),
      limit: maxResponses,
    }) as Array<{ input_items: string; output: string | null }>;
    return conversationItems(rows, id, maxResponses);
  }

  async prune(): Promise<number> {
    return this.pruneStatement.run(this.oldestKeptSeconds()).changes;
  }

  async close(): Promise<void> {
    clearInterval(this.pruneTimer);
    this.db.close();
  }

  private oldestKeptSeconds(): number {
    return this.nowSeconds() - this.retentionSeconds;
  }
}
