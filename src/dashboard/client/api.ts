/** The dashboard's only way out: Gravity's own HTTP API, with the admin key the operator typed in. */

const keyStorageName = 'gravity.adminKey';

/** Kept for the browser tab only (sessionStorage): closing the tab forgets it. */
export function storedKey(): string | null {
  return sessionStorage.getItem(keyStorageName);
}

export function storeKey(key: string): void {
  sessionStorage.setItem(keyStorageName, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(keyStorageName);
}

/** The API refused the key (401: none or unknown; 403: not an admin key). */
export class KeyRefused extends Error {
  constructor(readonly status: number) {
    super(status === 403 ? 'this key is not an admin key' : 'an admin key is needed');
  }
}

export async function getJson<T>(path: string): Promise<T> {
  const key = storedKey();
  const response = await fetch(path, {
    headers: key ? { authorization: `Bearer ${key}` } : {},
    cache: 'no-store',
  });
  if (response.status === 401 || response.status === 403) throw new KeyRefused(response.status);
  if (!response.ok) {
    let message = `${response.status}`;
    try {
      const body = (await response.json()) as { error?: { message?: string } };
      message = body.error?.message ?? message;
    } catch {
      // Not JSON: the status is all there is to say.
    }
    throw new Error(message);
  }
  return (await response.json()) as T;
}

/** One group of `GET /v1/usage`, as the API writes it. */
export interface UsageGroupJson {
  tenant?: string;
  model?: string;
  tier?: string;
  hour?: string;
  requests: number;
  failed_requests: number;
  prompt_tokens: number;
  cached_prompt_tokens: number;
  completion_tokens: number;
  ttft_p50_ms: number | null;
  ttft_p95_ms: number | null;
  energy_joules: number;
  energy_sources: string[];
  cost_usd: number;
  price_usd: number;
  margin_usd: number;
}

export interface UsageJson {
  data: UsageGroupJson[];
}
