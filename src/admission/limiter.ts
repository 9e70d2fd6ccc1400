import type { Clock } from '../core/clock.js';
import type { Limits } from './api-key.js';
import { spendPeriodRange } from './spend-period.js';
import { msUntilAvailable, msUntilFull, newBucket, refill, type TokenBucket } from './token-bucket.js';

/** Something limits apply to: a key (`key:<id>`) or a tenant (`tenant:<name>`). */
export interface LimitScope {
  readonly id: string;
  /** How messages name it: `key gk-3f9a…` or `tenant acme`. */
  readonly description: string;
  readonly limits: Limits;
}

interface SpendState {
  periodStartEpochMs: number;
  spentUsd: number;
  /** False while the period's earlier spend is being read from the ledger. */
  loaded: boolean;
}

interface ScopeState {
  requests: TokenBucket | null;
  tokens: TokenBucket | null;
  inFlight: number;
  spend: SpendState | null;
}

/** One admitted request's hold on its scopes, returned to `release` when it ends. */
export interface LimitTicket {
  readonly entries: ReadonlyArray<{ state: ScopeState; limits: Limits }>;
  readonly reservedTokens: number;
}

/** What the `x-ratelimit-*` headers report: the scope closest to its limit, per kind. */
export interface LimitSnapshot {
  requests: { limit: number; remaining: number; resetMs: number } | null;
  tokens: { limit: number; remaining: number; resetMs: number } | null;
}

export type LimitDenial =
  | {
      kind: 'requests' | 'tokens';
      scope: LimitScope;
      limit: number;
      used: number;
      requested: number;
      retryAfterMs: number;
    }
  | { kind: 'request-too-large'; scope: LimitScope; limit: number; requested: number }
  | { kind: 'concurrency'; scope: LimitScope; limit: number }
  | {
      kind: 'spend';
      scope: LimitScope;
      limitUsd: number;
      spentUsd: number;
      resetsAtEpochMs: number;
      retryAfterMs: number;
    };

/** `Ticket`: what `release` takes back; the shared limiter (redis-limiter.ts) has its own. */
export type LimitDecision<Ticket = LimitTicket> =
  | { admitted: true; ticket: Ticket; snapshot: LimitSnapshot }
  | { admitted: false; denial: LimitDenial; snapshot: LimitSnapshot };

/**
 * Requests per minute, tokens per minute, concurrent requests and spend per period, for any number of
 * scopes. Plain state in Maps and a Clock: no wall time is read, so tests (and the simulator) drive it
 * with a fake clock. Everything per request is a few Map lookups and arithmetic.
 */
export class Limiter {
  private readonly states = new Map<string, ScopeState>();

  constructor(private readonly clock: Clock) {}

  /**
   * Admits a request against every scope at once, or none: a request refused by its tenant's limit
   * consumes nothing from its key's. `tokens` is the reservation (see Admission for how it is sized).
   */
  admit(scopes: readonly LimitScope[], tokens: number): LimitDecision {
    const nowMs = this.clock.nowMs();
    const epochMs = this.clock.epochMs();
    const states = scopes.map((scope) => this.stateOf(scope, nowMs, epochMs));
    const denial = this.firstDenial(scopes, states, tokens, epochMs);
    if (denial) return { admitted: false, denial, snapshot: this.snapshotOf(scopes, states) };
    for (const state of states) {
      if (state.requests) state.requests.level -= 1;
      if (state.tokens) state.tokens.level -= tokens;
      state.inFlight += 1;
    }
    return {
      admitted: true,
      ticket: {
        entries: states.map((state, index) => ({ state, limits: (scopes[index] as LimitScope).limits })),
        reservedTokens: tokens,
      },
      snapshot: this.snapshotOf(scopes, states),
    };
  }

  /**
   * Ends an admitted request: frees its concurrency slot and trues up its token reservation with what it
   * actually used (a refund when it used less, a debt that delays the next request when it used more).
   * Must be called once per admitted request.
   */
  release(ticket: LimitTicket, usedTokens: number): void {
    const nowMs = this.clock.nowMs();
    for (const { state, limits } of ticket.entries) {
      state.inFlight = Math.max(0, state.inFlight - 1);
      if (state.tokens && limits.tpm !== undefined) {
        refill(state.tokens, limits.tpm, nowMs);
        state.tokens.level = Math.min(limits.tpm, state.tokens.level + ticket.reservedTokens - usedTokens);
      }
    }
  }

  /**
   * The range whose earlier spend must be read from the ledger before `admit` can judge this scope's
   * budget, or null when it is known. A non-null answer opens the period with zero spend, so what
   * finishes while the ledger is read is still counted; `spendLoaded` then adds the ledger's sum.
   */
  spendToLoad(scope: LimitScope): { fromEpochMs: number; toEpochMs: number } | null {
    if (scope.limits.spendUsd === undefined) return null;
    const nowMs = this.clock.nowMs();
    const epochMs = this.clock.epochMs();
    const state = this.stateOf(scope, nowMs, epochMs);
    if (state.spend) return null;
    const range = spendPeriodRange(scope.limits.period, epochMs);
    state.spend = { periodStartEpochMs: range.startEpochMs, spentUsd: 0, loaded: false };
    return { fromEpochMs: range.startEpochMs, toEpochMs: range.endEpochMs };
  }

  /** Completes `spendToLoad`; `spentUsd` undefined means the read failed and will be retried. */
  spendLoaded(scope: LimitScope, spentUsd: number | undefined): void {
    const state = this.states.get(scope.id);
    if (!state?.spend) return;
    if (spentUsd === undefined) {
      state.spend = null;
      return;
    }
    state.spend.spentUsd += spentUsd;
    state.spend.loaded = true;
  }

  /**
   * Counts a finished request's price against a scope, in the period the request was received in (as
   * the ledger sums it). Scopes without a spend figure yet are skipped: their first admission reads the
   * ledger, which holds this request by then.
   */
  addSpend(scopeId: string, receivedAtEpochMs: number, priceUsd: number): void {
    const spend = this.states.get(scopeId)?.spend;
    if (!spend || priceUsd === 0 || receivedAtEpochMs < spend.periodStartEpochMs) return;
    spend.spentUsd += priceUsd;
  }

  /** Requests in flight for a scope (for tests and metrics). */
  inFlight(scopeId: string): number {
    return this.states.get(scopeId)?.inFlight ?? 0;
  }

  private stateOf(scope: LimitScope, nowMs: number, epochMs: number): ScopeState {
    let state = this.states.get(scope.id);
    if (!state) {
      state = { requests: null, tokens: null, inFlight: 0, spend: null };
      this.states.set(scope.id, state);
    }
    const { rpm, tpm, spendUsd, period } = scope.limits;
    if (rpm !== undefined) {
      if (state.requests) refill(state.requests, rpm, nowMs);
      else state.requests = newBucket(rpm, nowMs);
    }
    if (tpm !== undefined) {
      if (state.tokens) refill(state.tokens, tpm, nowMs);
      else state.tokens = newBucket(tpm, nowMs);
    }
    // A new period starts from zero: the server has counted every request since the ledger was read.
    if (spendUsd !== undefined && state.spend?.loaded) {
      const range = spendPeriodRange(period, epochMs);
      if (state.spend.periodStartEpochMs < range.startEpochMs)
        state.spend = { periodStartEpochMs: range.startEpochMs, spentUsd: 0, loaded: true };
    }
    return state;
  }

  /**
   * Budget first (nothing helps but waiting for the next period), then requests too large for a limit
   * (nothing helps), then rates, then concurrency.
   */
  private firstDenial(
    scopes: readonly LimitScope[],
    states: readonly ScopeState[],
    tokens: number,
    epochMs: number,
  ): LimitDenial | null {
    for (const [index, scope] of scopes.entries()) {
      const { spendUsd, period } = scope.limits;
      const spend = (states[index] as ScopeState).spend;
      if (spendUsd !== undefined && spend && spend.spentUsd >= spendUsd) {
        const { endEpochMs } = spendPeriodRange(period, epochMs);
        return {
          kind: 'spend',
          scope,
          limitUsd: spendUsd,
          spentUsd: spend.spentUsd,
          resetsAtEpochMs: endEpochMs,
          retryAfterMs: endEpochMs - epochMs,
        };
      }
    }
    // A request larger than a tokens-per-minute limit never fits: said at once, not after a wait for rpm.
    for (const scope of scopes) {
      const { tpm } = scope.limits;
      if (tpm !== undefined && tokens > tpm)
        return { kind: 'request-too-large', scope, limit: tpm, requested: tokens };
    }
    for (const [index, scope] of scopes.entries()) {
      const state = states[index] as ScopeState;
      const { rpm, tpm, concurrency } = scope.limits;
      if (rpm !== undefined && state.requests && state.requests.level < 1) {
        return {
          kind: 'requests',
          scope,
          limit: rpm,
          used: Math.ceil(rpm - state.requests.level),
          requested: 1,
          retryAfterMs: msUntilAvailable(state.requests, rpm, 1),
        };
      }
      if (tpm !== undefined && state.tokens) {
        if (state.tokens.level < tokens) {
          return {
            kind: 'tokens',
            scope,
            limit: tpm,
            used: Math.ceil(tpm - state.tokens.level),
            requested: tokens,
            retryAfterMs: msUntilAvailable(state.tokens, tpm, tokens),
          };
        }
      }
      if (concurrency !== undefined && state.inFlight >= concurrency)
        return { kind: 'concurrency', scope, limit: concurrency };
    }
    return null;
  }

  /** Call right after the buckets were refilled: the resets are relative to that moment. */
  private snapshotOf(scopes: readonly LimitScope[], states: readonly ScopeState[]): LimitSnapshot {
    const snapshot: LimitSnapshot = { requests: null, tokens: null };
    for (const [index, scope] of scopes.entries()) {
      const state = states[index] as ScopeState;
      const { rpm, tpm } = scope.limits;
      if (rpm !== undefined && state.requests) {
        const remaining = Math.max(0, Math.floor(state.requests.level));
        if (!snapshot.requests || remaining < snapshot.requests.remaining)
          snapshot.requests = { limit: rpm, remaining, resetMs: msUntilFull(state.requests, rpm) };
      }
      if (tpm !== undefined && state.tokens) {
        const remaining = Math.max(0, Math.floor(state.tokens.level));
        if (!snapshot.tokens || remaining < snapshot.tokens.remaining)
          snapshot.tokens = { limit: tpm, remaining, resetMs: msUntilFull(state.tokens, tpm) };
      }
    }
    return snapshot;
  }
}
