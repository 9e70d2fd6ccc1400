import { type ApiKey, anonymousTenant } from './api-key.js';

/** Who sent a request, as authentication found it. Routes read it with `requestCaller(request)`. */
export interface Caller {
  /** The key's tenant; null for an anonymous caller (open mode), which the ledger records as `anonymous`. */
  readonly tenant: string | null;
  readonly apiKeyId: string | null;
  /** Admin keys read every tenant's data; so does everyone in open mode, where there is no one to protect. */
  readonly admin: boolean;
  readonly key: ApiKey | null;
}

/** Open mode: no keys exist, the server listens on loopback, and everyone is trusted alike. */
export const openModeCaller: Caller = { tenant: null, apiKeyId: null, admin: true, key: null };

/** What a request that never met authentication gets: no tenant's data and no admin rights (fail closed). */
const unauthenticatedCaller: Caller = { tenant: null, apiKeyId: null, admin: false, key: null };

export function keyCaller(key: ApiKey): Caller {
  return { tenant: key.tenant, apiKeyId: key.id, admin: key.admin, key };
}

// Keyed by the framework's request object, so this module needs nothing from the HTTP layer.
const callers = new WeakMap<object, Caller>();

/** Called once per request by the HTTP edge's authentication hook. */
export function setRequestCaller(request: object, caller: Caller): void {
  callers.set(request, caller);
}

/** The caller of an HTTP request (a fastify request object). */
export function requestCaller(request: object): Caller {
  return callers.get(request) ?? unauthenticatedCaller;
}

/** The tenant a request acts for, as the ledger names it: `anonymous` in open mode. */
export function requestTenant(request: object): string {
  return requestCaller(request).tenant ?? anonymousTenant;
}

/** Whether the caller may read data owned by `tenant` (usage, batches, files): its own, or any if admin. */
export function callerMayRead(caller: Caller, tenant: string): boolean {
  return caller.admin || (caller.tenant ?? anonymousTenant) === tenant;
}
