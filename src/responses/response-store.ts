import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

/** One stored response: the Response object as returned, and the input items it was created from. */
export interface StoredResponse {
  id: string;
  tenant: string;
  createdAtSeconds: number;
  response: Record<string, unknown>;
  inputItems: Record<string, unknown>[];
  previousResponseId: string | null;
}

/**
 * Responses stored for retrieval and for `previous_response_id`, in SQLite (`responses.sqlite` in the
 * data directory). Every read and delete names the tenant: a response is visible only to the tenant that
 * created it, and another tenant's id reads as absent (404, never 403, so ids reveal nothing). Responses
 * older than the retention are neither served nor kept (pruned at open and hourly).
 *
 * Synchronous (better-sqlite3): a lookup is a primary-key read, cheaper than an await, and the request
 * parser that expands `previous_response_id` is synchronous.
 */
export class ResponseStore {
  private readonly db: Database.Database;
  private readonly retentionSeconds: number;
  private readonly pruneTimer: NodeJS.Timeout;
  private readonly nowSeconds: () => number;

  constructor(options: { path: string; retentionDays: number; nowSeconds?: () => number }) {
    mkdirSync(path.dirname(options.path), { recursive: true });
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
    this.retentionSeconds = options.retentionDays * 86_400;
    this.nowSeconds = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
    this.prune();
    this.pruneTimer = setInterval(() => this.prune(), 3_600_000);
    this.pruneTimer.unref();
  }

  save(response: StoredResponse): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO responses (id, tenant, created_at, previous_response_id, response, input_items)
         VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .run(
        response.id,
        response.tenant,
        response.createdAtSeconds,
        response.previousResponseId,
        JSON.stringify(response.response),
        JSON.stringify(response.inputItems),
      );
  }

  /** The tenant's response, or null (absent, another tenant's, or past the retention). */
  get(tenant: string, id: string): StoredResponse | null {
    const row = this.db
      .prepare(
        `SELECT id, tenant, created_at, previous_response_id, response, input_items FROM responses
         WHERE id = ? AND tenant = ? AND created_at >= ?`,
      )
      .get(id, tenant, this.oldestKeptSeconds()) as
      | {
          id: string;
          tenant: string;
          created_at: number;
          previous_response_id: string | null;
          response: string;
          input_items: string;
        }
      | undefined;
    if (!row) return null;
    return {
      id: row.id,
      tenant: row.tenant,
      createdAtSeconds: row.created_at,
      previousResponseId: row.previous_response_id,
      response: JSON.parse(row.response) as Record<string, unknown>,
      inputItems: JSON.parse(row.input_items) as Record<string, unknown>[],
    };
  }

  /** Deletes the tenant's response; false when it has none by that id. */
  delete(tenant: string, id: string): boolean {
    return this.db.prepare('DELETE FROM responses WHERE id = ? AND tenant = ?').run(id, tenant).changes > 0;
  }

  /**
   * The conversation up to and including `id`, as items, oldest first: each response's input items and
   * then its output, back along `previous_response_id`. A link that is gone (deleted, expired) ends the
   * walk there: the conversation starts at the oldest response still stored. Null when `id` itself is not
   * the tenant's.
   */
  conversation(tenant: string, id: string, maxResponses = 1000): Record<string, unknown>[] | null {
    const chain: StoredResponse[] = [];
    let next: string | null = id;
    while (next !== null && chain.length < maxResponses) {
      const stored = this.get(tenant, next);
      if (!stored) break;
      chain.push(stored);
      next = stored.previousResponseId;
    }
    if (chain.length === 0) return null;
    const items: Record<string, unknown>[] = [];
    for (const stored of chain.reverse())
      items.push(...stored.inputItems, ...((stored.response.output as Record<string, unknown>[]) ?? []));
    return items;
  }

  prune(): number {
    return this.db.prepare('DELETE FROM responses WHERE created_at < ?').run(this.oldestKeptSeconds())
      .changes;
  }

  close(): void {
    clearInterval(this.pruneTimer);
    this.db.close();
  }

  private oldestKeptSeconds(): number {
    return this.nowSeconds() - this.retentionSeconds;
  }
}
