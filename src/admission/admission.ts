import type { Clock } from '../core/clock.js';
import { errors, GravityError } from '../core/errors.js';
import { estimateRequestTokens, type PromptInput } from '../core/prompt-size.js';
import type { RequestContext } from '../core/request-context.js';
import type { RequestObserver } from '../core/request-observer.js';
import type { ServiceTier } from '../core/service-tiers.js';
import { type ApiKey, anonymousTenant, type Limits } from './api-key.js';
import { Authenticator } from './authenticator.js';
import type { KeyStore } from './key-store.js';
import {
  type LimitDecision,
  type LimitDenial,
  Limiter,
  type LimitScope,
  type LimitSnapshot,
  type LimitTicket,
} from './limiter.js';
import { rateLimitHeaders, retryAfterSeconds } from './rate-limit-headers.js';
import type { SharedLimiter, SharedLimitTicket } from './redis-limiter.js';
import type { Caller } from './request-caller.js';

/** What admission needs to know of a request to size its token reservation. */
export interface AdmissionRequest {
  /** Sized with Gravity's prompt estimate; only the reservation depends on it (the real count replaces it). */
  input: PromptInput;
  /** Tool definitions count toward the prompt too (core/prompt-size.ts). */
  options?: { tools: readonly unknown[] } | undefined;
  maxTokens: number | null;
}

/** Admission's answer: in, with the `x-ratelimit-*` headers; or the 429/403 to answer and when to retry. */
export type AdmissionDecision =
  | { admitted: true; rateLimitHeaders: Record<string, string> }
  | {
      admitted: false;
      error: GravityError;
      /**
       * When trying again may succeed (clock ms): a rate limit refilling or a concurrency slot freeing.
       * Null when waiting cannot help within the minutes a caller may wait: a request larger than its
       * tokens-per-minute limit, or a spent budget (it renews at the next period).
       */
      retryAfterMs: number | null;
    };

/**
 * How often a request waiting for a concurrency slot checks again: the limiter cannot know when a
 * running request ends, so waiters poll; a quarter second keeps the slot busy without spinning.
 */
export const concurrencyRecheckMs = 250;

/** Reads what a tenant (or one of its keys) spent in a range from the ledger. */
export type SpendReader = (query: {
  tenant: string;
  apiKeyId?: string | undefined;
  fromEpochMs: number;
  toEpochMs: number;
}) => Promise<number>;

export interface AdmissionOptions {
  keys: KeyStore;
  clock: Clock;
  /** How long a key read from the store is trusted (revocations take effect within this). */
  keyCacheMs: number;
  /** Demand keys even while none exist. */
  required: boolean;
  /** Limits per tenant, from config (`tenants:`). `anonymous` limits open mode. */
  tenants: Readonly<Record<string, Limits>>;
  /** The ledger's spend; without it (metering off) budgets start each run at zero. */
  spentUsd?: SpendReader | undefined;
  /** Completion tokens reserved for a request that sets no `max_tokens`. */
  unboundedCompletionReserveTokens: number;
  /**
   * Limits shared with other replicas (`state.store: redis`); absent: the in-process Limiter, whose path
   * is unchanged by this option.
   */
  shared?: SharedAdmission | undefined;
}

/** The shared limiter and what to do when it cannot answer. */
export interface SharedAdmission {
  limiter: SharedLimiter;
  /** `open`: admit without limits while the store is away; `closed`: refuse with a 503. */
  onUnavailable: 'open' | 'closed';
  /**
   * The most a request reserving this many tokens may cost: reserved against spend budgets until its
   * real price is known, so that replicas together overshoot a budget by at most one request's price.
   */
  reserveUsd: (tokens: number) => number;
  log: (message: string, details: Record<string, unknown>) => void;
}

/** How often an unavailable shared store is logged, at most: once per outage-ish, not once per request. */
const unavailableLogIntervalMs = 10_000;

/**
 * The admission stage: who is calling (keys), which tier they get, and whether their limits and budgets
 * let the request in. It runs before the gateway executes a request, and observes each request's end to
 * free its concurrency slot, true up its tokens and count its price.
 */
export class Admission implements RequestObserver {
  readonly authenticator: Authenticator;
  readonly limiter: Limiter;
  private readonly tickets = new WeakMap<RequestContext, LimitTicket>();
  private readonly tenantScopes = new Map<string, LimitScope | null>();
  private readonly keyScopes = new Map<string, LimitScope>();
  private readonly spendLoads = new Map<string, Promise<void>>();
  private readonly sharedTickets = new WeakMap<RequestContext, SharedLimitTicket>();
  /** Requests admitted (open) or refused (closed) because the shared store did not answer. */
  sharedUnavailableTotal = 0;
  private sharedUnavailableLoggedAtMs = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: AdmissionOptions) {
    this.authenticator = new Authenticator({
      store: options.keys,
      clock: options.clock,
      cacheMs: options.keyCacheMs,
      required: options.required,
    });
    this.limiter = new Limiter(options.clock);
  }

  /** See Authenticator.authenticate. */
  authenticate(authorization: string | undefined): Caller {
    return this.authenticator.authenticate(authorization);
  }

  /**
   * The tier a request runs at: `auto` (or none) is the key's default tier (`default` for anonymous
   * callers); an explicit tier must be one the key may use (403 otherwise).
   */
  resolveTier(caller: Caller, requested: ServiceTier): Exclude<ServiceTier, 'auto'> {
    const key = caller.key;
    if (requested === 'auto') return key?.defaultTier ?? 'default';
    if (key && !(key.allowedTiers as readonly string[]).includes(requested))
      throw errors.tierNotAllowed(requested, key.allowedTiers);
    return requested;
  }

  /**
   * Admits the request against its key's and its tenant's limits, or throws the 429 to answer. Returns
   * the `x-ratelimit-*` headers for the response. See `tryAdmit`.
   */
  async admit(
    context: RequestContext,
    caller: Caller,
    request: AdmissionRequest,
  ): Promise<Record<string, string>> {
    const decision = await this.tryAdmit(context, caller, request);
    if (!decision.admitted) throw decision.error;
    return decision.rateLimitHeaders;
  }

  /**
   * Admits the request against its key's and its tenant's limits, or says why not and whether waiting
   * would help. Every admitted request must reach `gateway.finish` (this object observes it) so its slot
   * and reservation are returned.
   *
   * Tokens per minute are charged before the request runs, when the real count is unknown: the prompt
   * estimated from its length plus `max_tokens` (the most it may generate), as OpenAI does. Charging only
   * at the end would let a burst of long requests through at once; charging the estimate alone would
   * under-count long completions. The reservation is trued up with the real usage when the request ends.
   */
  async tryAdmit(
    context: RequestContext,
    caller: Caller,
    request: AdmissionRequest,
  ): Promise<AdmissionDecision> {
    const scopes = this.scopesOf(caller);
    if (scopes.length === 0) return { admitted: true, rateLimitHeaders: {} };
    if (this.options.shared)
      return this.tryAdmitShared(this.options.shared, context, caller, request, scopes);
    for (const scope of scopes) {
      if (scope.limits.spendUsd !== undefined) await this.loadSpend(scope, caller);
    }
    return admissionDecision(this.limiter.admit(scopes, this.reservedTokens(request)), context, this.tickets);
  }

  /**
   * A key by id, revoked or not, through the authentication cache: for work a key started earlier and
   * Gravity runs later (batch lines run under the key that created the batch).
   */
  keyById(apiKeyId: string): ApiKey | null {
    return this.authenticator.keyById(apiKeyId);
  }

  onRequestStart(): void {}

  onRequestEnd(context: RequestContext): void {
    const sharedTicket = this.options.shared && this.sharedTickets.get(context);
    if (sharedTicket) {
      this.sharedTickets.delete(context);
      const usage = context.usage;
      const usedTokens = usage
        ? usage.promptTokens + usage.completionTokens
        : context.prefillTokens + context.decodeTokens;
      // The price is reconciled in the same script: the reservation goes, the real price stays.
      this.options.shared?.limiter.release(sharedTicket, usedTokens, context.metered?.priceUsd ?? 0);
      return;
    }
    const ticket = this.tickets.get(context);
    if (ticket) {
      this.tickets.delete(context);
      const usage = context.usage;
      // A request cut short has no final usage: count what the engine processed so far.
      const usedTokens = usage
        ? usage.promptTokens + usage.completionTokens
        : context.prefillTokens + context.decodeTokens;
      this.limiter.release(ticket, usedTokens);
    }
    const priceUsd = context.metered?.priceUsd ?? 0;
    if (priceUsd > 0) {
      // Counted for every request with a price, ticket or not: a key without limits of its own still
      // spends its tenant's budget.
      if (context.apiKeyId)
        this.limiter.addSpend(`key:${context.apiKeyId}`, context.receivedAtEpochMs, priceUsd);
      this.limiter.addSpend(
        `tenant:${context.tenant ?? anonymousTenant}`,
        context.receivedAtEpochMs,
        priceUsd,
      );
    }
  }

  /**
   * `tryAdmit` against the limits every replica shares: one script per attempt; a scope whose spend this
   * period nobody has read yet is read from the ledger (by each replica that finds it so; the first to
   * store it wins) and the admission tried again.
   */
  private async tryAdmitShared(
    shared: SharedAdmission,
    context: RequestContext,
    caller: Caller,
    request: AdmissionRequest,
    scopes: readonly LimitScope[],
  ): Promise<AdmissionDecision> {
    const tokens = this.reservedTokens(request);
    const reserveUsd = scopes.some((scope) => scope.limits.spendUsd !== undefined)
      ? shared.reserveUsd(tokens)
      : 0;
    // Two rounds suffice unless the period turns over between them; a third is the odd case.
    for (let attempt = 0; attempt < 3; attempt++) {
      const outcome = await shared.limiter.admit(scopes, tokens, reserveUsd);
      if (outcome.kind === 'unavailable') return this.sharedUnavailable(shared, outcome.error);
      if (outcome.kind === 'load-spend') {
        try {
          for (const load of outcome.scopes) await this.seedSharedSpend(shared, load, caller);
        } catch (error) {
          // A ledger that cannot be read fails the request, as with in-process limits; Redis is an outage.
          if (error instanceof SharedStoreUnavailable) return this.sharedUnavailable(shared, error);
          throw error;
        }
        continue;
      }
      return admissionDecision(outcome.decision, context, this.sharedTickets);
    }
    return this.sharedUnavailable(shared, new Error('the spend period kept changing while it was read'));
  }

  private sharedUnavailable(shared: SharedAdmission, error: Error): AdmissionDecision {
    this.sharedUnavailableTotal += 1;
    const nowMs = this.options.clock.nowMs();
    if (nowMs - this.sharedUnavailableLoggedAtMs >= unavailableLogIntervalMs) {
      this.sharedUnavailableLoggedAtMs = nowMs;
      shared.log(
        `shared limits unavailable: ${shared.onUnavailable === 'open' ? 'admitting without limits' : 'refusing requests'} (state.onUnavailable: ${shared.onUnavailable})`,
        { err: error, total: this.sharedUnavailableTotal },
      );
    }
    if (shared.onUnavailable === 'open') return { admitted: true, rateLimitHeaders: {} };
    return { admitted: false, error: limitsUnavailableError(), retryAfterMs: null };
  }

  /** Reads a scope's spend this period from the ledger into the shared store; concurrent callers share it. */
  private async seedSharedSpend(
    shared: SharedAdmission,
    load: { scope: LimitScope; fromEpochMs: number; toEpochMs: number },
    caller: Caller,
  ): Promise<void> {
    const id = `${load.scope.id}@${load.fromEpochMs}`;
    const pending = this.spendLoads.get(id);
    if (pending) return pending;
    const reader = this.options.spentUsd;
    const seeding = (async () => {
      try {
        const spent = reader
          ? await reader({
              tenant: caller.tenant ?? anonymousTenant,
              apiKeyId: load.scope.id.startsWith('key:') ? (caller.apiKeyId ?? undefined) : undefined,
              fromEpochMs: load.fromEpochMs,
              toEpochMs: load.toEpochMs,
            })
          : 0;
        await shared.limiter.seedSpend(load.scope, load.fromEpochMs, spent).catch((error: Error) => {
          throw new SharedStoreUnavailable(error);
        });
      } finally {
        this.spendLoads.delete(id);
      }
    })();
    this.spendLoads.set(id, seeding);
    return seeding;
  }

  private reservedTokens(request: AdmissionRequest): number {
    return (
      estimateRequestTokens(request) + (request.maxTokens ?? this.options.unboundedCompletionReserveTokens)
    );
  }

  /** The key's scope (when it has limits) and the tenant's (when config gives it any). */
  private scopesOf(caller: Caller): LimitScope[] {
    const scopes: LimitScope[] = [];
    const key = caller.key;
    if (key && hasLimits(key.limits)) {
      let scope = this.keyScopes.get(key.id);
      if (!scope) {
        scope = { id: `key:${key.id}`, description: `key ${key.prefix}***`, limits: key.limits };
        this.keyScopes.set(key.id, scope);
      }
      scopes.push(scope);
    }
    const tenant = caller.tenant ?? anonymousTenant;
    let tenantScope = this.tenantScopes.get(tenant);
    if (tenantScope === undefined) {
      const limits = this.options.tenants[tenant];
      tenantScope =
        limits && hasLimits(limits)
          ? { id: `tenant:${tenant}`, description: `tenant ${tenant}`, limits }
          : null;
      this.tenantScopes.set(tenant, tenantScope);
    }
    if (tenantScope) scopes.push(tenantScope);
    return scopes;
  }

  /** Reads a scope's spend so far this period from the ledger, once per period (concurrent callers share it). */
  private async loadSpend(scope: LimitScope, caller: Caller): Promise<void> {
    const pending = this.spendLoads.get(scope.id);
    if (pending) return pending;
    const range = this.limiter.spendToLoad(scope);
    if (!range) return;
    const reader = this.options.spentUsd;
    const load = (async () => {
      try {
        const spent = reader
          ? await reader({
              tenant: caller.tenant ?? anonymousTenant,
              apiKeyId: scope.id.startsWith('key:') ? (caller.apiKeyId ?? undefined) : undefined,
              ...range,
            })
          : 0;
        this.limiter.spendLoaded(scope, spent);
      } catch (error) {
        this.limiter.spendLoaded(scope, undefined);
        throw error;
      } finally {
        this.spendLoads.delete(scope.id);
      }
    })();
    this.spendLoads.set(scope.id, load);
    return load;
  }
}

/**
 * A limiter's decision as admission answers it: the 429 to send and whether waiting helps, or the
 * headers of an admission, whose ticket is kept (in `tickets`) until the request ends.
 */
function admissionDecision<Ticket>(
  decision: LimitDecision<Ticket>,
  context: RequestContext,
  tickets: WeakMap<RequestContext, Ticket>,
): AdmissionDecision {
  if (!decision.admitted)
    return {
      admitted: false,
      error: denialError(decision.denial, decision.snapshot),
      retryAfterMs: waitThatHelpsMs(decision.denial),
    };
  tickets.set(context, decision.ticket);
  return { admitted: true, rateLimitHeaders: rateLimitHeaders(decision.snapshot) };
}

function hasLimits(limits: Limits): boolean {
  return (
    limits.rpm !== undefined ||
    limits.tpm !== undefined ||
    limits.concurrency !== undefined ||
    limits.spendUsd !== undefined
  );
}

/** See AdmissionDecision.retryAfterMs. Never below 1 ms, so a waiter always lets time pass. */
function waitThatHelpsMs(denial: LimitDenial): number | null {
  switch (denial.kind) {
    case 'requests':
    case 'tokens':
      return Math.max(1, Math.ceil(denial.retryAfterMs));
    case 'concurrency':
      return concurrencyRecheckMs;
    case 'request-too-large':
    case 'spend':
      return null;
  }
}

class SharedStoreUnavailable extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
    this.name = 'SharedStoreUnavailable';
  }
}

/** `state.onUnavailable: closed` while the shared store does not answer: a 503, as for any outage. */
function limitsUnavailableError(): GravityError {
  return new GravityError({
    status: 503,
    type: 'service_unavailable',
    code: 'limits_unavailable',
    message:
      'Rate limits cannot be checked right now (the shared limit store is unavailable), and this gateway is ' +
      'set to refuse requests meanwhile; please try again shortly.',
    headers: { 'retry-after': '1' },
  });
}

function formatUsd(usd: number): string {
  return `$${usd.toFixed(usd >= 1 ? 2 : 6)}`;
}

/** The 429 for a denial, in OpenAI's words where OpenAI has them. */
function denialError(denial: LimitDenial, snapshot: LimitSnapshot): GravityError {
  const headers = rateLimitHeaders(snapshot);
  const on = denial.scope.description;
  switch (denial.kind) {
    case 'spend': {
      const resets = new Date(denial.resetsAtEpochMs).toISOString();
      return errors.insufficientQuota(
        `You exceeded your current quota: ${on} spent ${formatUsd(denial.spentUsd)} of its ` +
          `${formatUsd(denial.limitUsd)} budget for the ${denial.scope.limits.period}. The budget renews at ${resets}.`,
        { ...headers, 'retry-after': retryAfterSeconds(denial.retryAfterMs) },
      );
    }
    case 'requests':
    case 'tokens': {
      const what = denial.kind === 'requests' ? 'requests per min (RPM)' : 'tokens per min (TPM)';
      const seconds = (denial.retryAfterMs / 1000).toFixed(3).replace(/\.?0+$/, '');
      return errors.rateLimited(
        `Rate limit reached for ${what} on ${on}: Limit ${denial.limit}, Used ${denial.used}, ` +
          `Requested ${denial.requested}. Please try again in ${seconds}s.`,
        { ...headers, 'retry-after': retryAfterSeconds(denial.retryAfterMs) },
      );
    }
    case 'request-too-large':
      // Waiting cannot help, so no retry-after.
      return errors.rateLimited(
        `Request too large for tokens per min (TPM) on ${on}: Limit ${denial.limit}, Requested ` +
          `${denial.requested} (the prompt plus max_tokens). Reduce the prompt or max_tokens.`,
        headers,
      );
    case 'concurrency':
      return errors.rateLimited(
        `Too many concurrent requests on ${on}: Limit ${denial.limit}. Wait for a request to finish.`,
        { ...headers, 'retry-after': '1' },
      );
  }
}
