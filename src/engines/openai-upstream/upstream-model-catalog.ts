/**
 * What an upstream says about its models in its own `GET /models`: when each was created and how long a
 * context it takes. Servers name the window differently — vLLM and SGLang `max_model_len`, OpenRouter and
 * Gravity itself `context_length`, others `context_window` or `max_context_length`; llama.cpp's server
 * gives only the training context (`meta.n_ctx_train`), which is used last because the server may run a
 * smaller one.
 */
export interface UpstreamModelFacts {
  created: number | null;
  contextTokens: number | null;
}

/** Bodies larger than this are not read: a model list is a few kilobytes. */
export const maxModelListBytes = 1 << 20;

const contextFields = ['max_model_len', 'context_length', 'context_window', 'max_context_length'] as const;

function positiveInteger(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : null;
}

function contextOf(entry: Record<string, unknown>): number | null {
  for (const field of contextFields) {
    const value = positiveInteger(entry[field]);
    if (value !== null) return value;
  }
  const meta = entry.meta;
  if (meta !== null && typeof meta === 'object')
    return positiveInteger((meta as Record<string, unknown>).n_ctx_train);
  return null;
}

/**
 * Reads an OpenAI-style model list (`{data: [{id, created, …}]}`) leniently: entries without a string id
 * are skipped, unknown fields ignored. Returns facts by the upstream's model name.
 */
export function parseUpstreamModelList(body: unknown): Map<string, UpstreamModelFacts> {
  const facts = new Map<string, UpstreamModelFacts>();
  const data = body !== null && typeof body === 'object' ? (body as { data?: unknown }).data : undefined;
  if (!Array.isArray(data)) return facts;
  for (const entry of data) {
    if (entry === null || typeof entry !== 'object') continue;
    const record = entry as Record<string, unknown>;
    if (typeof record.id !== 'string') continue;
    facts.set(record.id, { created: positiveInteger(record.created), contextTokens: contextOf(record) });
  }
  return facts;
}
