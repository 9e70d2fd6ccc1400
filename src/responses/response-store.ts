import { errors } from '../core/errors.js';

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
 * A response to store. `response` may be JSON text, stored as is: a relayed upstream's Response arrives
 * already encoded (with Gravity's fields rewritten), and encoding its parsed copy again would cost a
 * second pass over the whole output. A Response Gravity built is an object, encoded here.
 */
export interface ResponseToSave extends Omit<StoredResponse, 'response'> {
  response: Record<string, unknown> | string;
}

/** Past this many responses back along `previous_response_id`, a conversation is refused, not cut. */
export const maxConversationResponses = 1000;

/**
 * Responses stored for retrieval and for `previous_response_id`: `SqliteResponseStore` beside one
 * gateway (`responses.sqlite`, the default), or `PostgresResponseStore`, shared by every replica of a
 * fleet, so that a conversation can continue on any of them. Every read and delete names the tenant: a
 * response is visible only to the tenant that created it, and another tenant's id reads as absent (404,
 * never 403, so ids reveal nothing). Responses older than the retention are neither served nor kept.
 */
export interface ResponseStore {
  save(response: ResponseToSave): Promise<void>;
  /** The tenant's response, or null (absent, another tenant's, or past the retention). */
  get(tenant: string, id: string): Promise<StoredResponse | null>;
  /** Deletes the tenant's response; false when it has none by that id. */
  delete(tenant: string, id: string): Promise<boolean>;
  /**
   * The conversation up to and including `id`, as items, oldest first: each response's input items and
   * then its output, back along `previous_response_id`. A link that is gone (deleted, expired, another
   * tenant's) ends the walk there: the conversation starts at the oldest response still stored. Null when
   * `id` itself is not the tenant's. A chain longer than `maxResponses` is refused with a 400 rather than
   * silently cut.
   */
  conversation(tenant: string, id: string, maxResponses?: number): Promise<Record<string, unknown>[] | null>;
  /** Deletes what is past the retention; how many. */
  prune(): Promise<number>;
  close(): Promise<void>;
}

/**
 * A conversation's items from its chain of stored responses, oldest first (each store reads the chain
 * in one recursive query, at most `maxResponses` + 1 links, so that a longer chain is seen, not cut).
 */
export function conversationItems(
  rows: ReadonlyArray<{ input_items: string; output: string | null }>,
  id: string,
  maxResponses: number,
): Record<string, unknown>[] | null {
  if (rows.length === 0) return null;
  if (rows.length > maxResponses)
    throw errors.invalidRequest(
      `The conversation before response '${id}' is longer than ${maxResponses} responses. Start a new ` +
        'conversation, passing the turns to keep as input.',
      'previous_response_id',
      'conversation_too_long',
    );
  const items: Record<string, unknown>[] = [];
  for (const row of rows) {
    items.push(...(JSON.parse(row.input_items) as Record<string, unknown>[]));
    if (row.output !== null) items.push(...(JSON.parse(row.output) as Record<string, unknown>[]));
  }
  return items;
}

/** A stored response's row, alike in both stores: the Response and the input items as JSON text. */
export interface ResponseRow {
  id: string;
  tenant: string;
  created_at: number;
  previous_response_id: string | null;
  response: string;
  input_items: string;
}

export function storedResponseOf(row: ResponseRow): StoredResponse {
  return {
    id: row.id,
    tenant: row.tenant,
    createdAtSeconds: row.created_at,
    previousResponseId: row.previous_response_id,
    response: JSON.parse(row.response) as Record<string, unknown>,
    inputItems: JSON.parse(row.input_items) as Record<string, unknown>[],
  };
}
