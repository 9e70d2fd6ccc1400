import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Clock } from '../core/clock.js';
import type { LimitDecision, LimitDenial, LimitScope, LimitSnapshot } from './limiter.js';
import { spendPeriodRange } from './spend-period.js';
import { msUntilAvailable, msUntilFull } from './token-bucket.js';

/**
 * Limits shared by every gateway replica through one Redis: the same rpm/tpm token buckets, concurrency
 * and spend budgets as `Limiter`, with the same decisions and denials (so 429 bodies and `x-ratelimit-*`
 * headers do not change), but held in Redis so that N replicas enforce one limit, not N.
 *
 * - An admission is one Lua script (EVALSHA) over all the request's scopes: it admits against every
 *   scope or none, atomically, whatever the other replicas do at the same moment.
 * - Buckets refill from Redis's own clock (`TIME` inside the script): replicas' clocks may disagree.
 * - A concurrency slot is a lease (a member of a sorted set scored by its expiry), renewed while the
 *   request runs: a replica killed mid-request leaves slots that expire by themselves.
 * - A spend budget is a per-period figure seeded once from the ledger (the first replica to load it
 *   wins), plus one reservation per request in flight, reconciled with the real price at the end: a
 *   request is admitted only while spent + reserved is under the budget.
 */

/** One admitted request's hold on its scopes in Redis, given back by `release`. */
export interface SharedLimitTicket {
  readonly id: string;
  readonly scopes: readonly LimitScope[];
  readonly keys: readonly string[];
  readonly reservedTokens: number;
}

export type SharedAdmitOutcome =
  | { kind: 'decided'; decision: LimitDecision<SharedLimitTicket> }
  /** These scopes' spend this period is not known yet: read it from the ledger (`seedSpend`), then retry. */
  | {
      kind: 'load-spend';
      scopes: ReadonlyArray<{ scope: LimitScope; fromEpochMs: number; toEpochMs: number }>;
    }
  /** Redis did not answer in time (or at all): `state.onUnavailable` decides. */
  | { kind: 'unavailable'; error: Error };

/** What admission needs of a shared limiter; `RedisLimiter` is the one there is. */
export interface SharedLimiter {
  admit(scopes: readonly LimitScope[], tokens: number, reserveUsd: number): Promise<SharedAdmitOutcome>;
  /** Fire and forget: frees the slots, trues up tokens, reconciles spend. Errors go to the log. */
  release(ticket: SharedLimitTicket, usedTokens: number, priceUsd: number): void;
  /** Sets a scope's spend for the period from the ledger, unless another replica already did. */
  seedSpend(scope: LimitScope, fromEpochMs: number, spentUsd: number): Promise<void>;
  close(): void;
}

const keyPrefix = 'gravity:';
const keysPerScope = 4;
const argsPerScope = 5;

// Shared by the scripts: a bucket refilled as token-bucket.ts does, written back with full precision
// (Lua's tostring keeps 14 digits; the in-process Limiter keeps doubles).
const luaPrelude = `
local function fmt(x) return string.format('%.17g', x) end
local function nowMs(override)
  if override ~= '' then return tonumber(override) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function refill(level, updated, cap, now)
  local elapsed = now - updated
  if elapsed <= 0 then return level, updated end
  return math.min(cap, level + (elapsed * cap) / 60000), now
end
local function purgeLeases(leases, reserved, now)
  local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
    redis.call('HDEL', reserved, unpack(expired))
  end
end
`;

/**
 * KEYS per scope: bucket hash, lease zset, spend hash (this period), reservation hash.
 * ARGV: now override ('' = Redis TIME), tokens, ticket, leaseMs, reserveUsd, scope count, then per
 * scope: rpm, tpm, concurrency, spendUsd (-1 for an absent limit), how long the period's spend is kept.
 * Returns {status, denial kind, denial scope, per scope: requests level, tokens level, in flight, spend}.
 * The order of the checks is Limiter.firstDenial's.
 */
const admitScript = `${luaPrelude}
local now = nowMs(ARGV[1])
local tokens = tonumber(ARGV[2])
local ticket = ARGV[3]
local leaseMs = tonumber(ARGV[4])
local reserveUsd = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local s = {}
local toLoad = {}
for i = 1, n do
  local a = 6 + (i - 1) * ${argsPerScope}
  local k = (i - 1) * ${keysPerScope}
  local st = { rpm = tonumber(ARGV[a + 1]), tpm = tonumber(ARGV[a + 2]), conc = tonumber(ARGV[a + 3]),
    spendLimit = tonumber(ARGV[a + 4]), spendTtlMs = tonumber(ARGV[a + 5]),
    bucket = KEYS[k + 1], leases = KEYS[k + 2], spend = KEYS[k + 3], reserved = KEYS[k + 4],
    inFlight = 0, spent = 0 }
  local b = redis.call('HMGET', st.bucket, 'r', 'ru', 't', 'tu')
  if st.rpm >= 0 then
    if b[1] then st.r, st.ru = refill(tonumber(b[1]), tonumber(b[2]), st.rpm, now) else st.r, st.ru = st.rpm, now end
  end
  if st.tpm >= 0 then
    if b[3] then st.t, st.tu = refill(tonumber(b[3]), tonumber(b[4]), st.tpm, now) else st.t, st.tu = st.tpm, now end
  end
  if st.conc >= 0 or st.spendLimit >= 0 then
    purgeLeases(st.leases, st.reserved, now)
    st.inFlight = redis.call('ZCARD', st.leases)
  end
  if st.spendLimit >= 0 then
    local sp = redis.call('HMGET', st.spend, 'spent', 'loaded')
    if not sp[1] then
      -- Opened at zero, so what finishes while the ledger is read still counts (as Limiter does).
      redis.call('HSET', st.spend, 'spent', '0', 'loaded', '0')
      redis.call('PEXPIRE', st.spend, math.floor(st.spendTtlMs))
      toLoad[#toLoad + 1] = i
    elseif sp[2] ~= '1' then
      toLoad[#toLoad + 1] = i
    else
      local total = tonumber(sp[1])
      local held = redis.call('HVALS', st.reserved)
      for _, v in ipairs(held) do total = total + tonumber(v) end
      st.spent = total
    end
  end
  s[i] = st
end
if #toLoad > 0 then return { 'load', unpack(toLoad) } end

local function save(st)
  if st.rpm < 0 and st.tpm < 0 then return end
  local fields = {}
  local untilFullMs = 0
  if st.rpm >= 0 then
    fields[#fields + 1] = 'r'; fields[#fields + 1] = fmt(st.r)
    fields[#fields + 1] = 'ru'; fields[#fields + 1] = fmt(st.ru)
    untilFullMs = math.max(untilFullMs, (st.rpm - st.r) * 60000 / st.rpm)
  end
  if st.tpm >= 0 then
    fields[#fields + 1] = 't'; fields[#fields + 1] = fmt(st.t)
    fields[#fields + 1] = 'tu'; fields[#fields + 1] = fmt(st.tu)
    untilFullMs = math.max(untilFullMs, (st.tpm - st.t) * 60000 / st.tpm)
  end
  redis.call('HSET', st.bucket, unpack(fields))
  -- A bucket left alone until full is the same as no bucket: let Redis forget it then.
  redis.call('PEXPIRE', st.bucket, math.ceil(untilFullMs) + 1000)
end

local function reply(status, kind, index)
  local out = { status, kind, tostring(index) }
  for i = 1, n do
    local st = s[i]
    out[#out + 1] = st.r and fmt(st.r) or ''
    out[#out + 1] = st.t and fmt(st.t) or ''
    out[#out + 1] = tostring(st.inFlight)
    out[#out + 1] = fmt(st.spent)
  end
  return out
end

local function deny(kind, index)
  for i = 1, n do save(s[i]) end
  return reply('deny', kind, index)
end

for i = 1, n do
  local st = s[i]
  if st.spendLimit >= 0 and st.spent >= st.spendLimit then return deny('spend', i) end
end
for i = 1, n do
  local st = s[i]
  if st.tpm >= 0 and tokens > st.tpm then return deny('request-too-large', i) end
end
for i = 1, n do
  local st = s[i]
  if st.rpm >= 0 and st.r < 1 then return deny('requests', i) end
  if st.tpm >= 0 and st.t < tokens then return deny('tokens', i) end
  if st.conc >= 0 and st.inFlight >= st.conc then return deny('concurrency', i) end
end
for i = 1, n do
  local st = s[i]
  if st.rpm >= 0 then st.r = st.r - 1 end
  if st.tpm >= 0 then st.t = st.t - tokens end
  save(st)
  if st.conc >= 0 or st.spendLimit >= 0 then
    redis.call('ZADD', st.leases, now + leaseMs, ticket)
    redis.call('PEXPIRE', st.leases, leaseMs * 2)
    st.inFlight = st.inFlight + 1
  end
  if st.spendLimit >= 0 and reserveUsd > 0 then
    redis.call('HSET', st.reserved, ticket, fmt(reserveUsd))
    redis.call('PEXPIRE', st.reserved, leaseMs * 2)
    st.spent = st.spent + reserveUsd
  end
end
return reply('admit', '', 0)
`;

/**
 * KEYS per scope as for admit. ARGV: now override, ticket, reserved tokens, used tokens, price, scope
 * count, then per scope: tpm (-1 if none). Frees the lease and reservation, trues up the tokens bucket
 * (Limiter.release), and adds the price to the period's spend if the period is open.
 */
const releaseScript = `${luaPrelude}
local now = nowMs(ARGV[1])
local ticket = ARGV[2]
local reservedTokens = tonumber(ARGV[3])
local usedTokens = tonumber(ARGV[4])
local price = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
for i = 1, n do
  local k = (i - 1) * ${keysPerScope}
  local tpm = tonumber(ARGV[6 + i])
  redis.call('ZREM', KEYS[k + 2], ticket)
  redis.call('HDEL', KEYS[k + 4], ticket)
  if tpm >= 0 then
    local b = redis.call('HMGET', KEYS[k + 1], 't', 'tu')
    local level, updated = tpm, now
    if b[1] then level, updated = refill(tonumber(b[1]), tonumber(b[2]), tpm, now) end
    level = math.min(tpm, level + reservedTokens - usedTokens)
    redis.call('HSET', KEYS[k + 1], 't', fmt(level), 'tu', fmt(updated))
    redis.call('PEXPIRE', KEYS[k + 1], math.ceil((tpm - level) * 60000 / tpm) + 1000)
  end
  -- Added as doubles, as Limiter adds (HINCRBYFLOAT's long doubles round differently).
  local spent = redis.call('HGET', KEYS[k + 3], 'spent')
  if price > 0 and spent then
    redis.call('HSET', KEYS[k + 3], 'spent', fmt(tonumber(spent) + price))
  end
end
return 1
`;

/** KEYS: lease zsets. ARGV: now override, ticket, leaseMs. Extends the ticket's leases that still exist. */
const renewScript = `${luaPrelude}
local expiry = nowMs(ARGV[1]) + tonumber(ARGV[3])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', expiry, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3]) * 2)
end
return 1
`;

/** KEYS: spend hash. ARGV: spent, how long to keep it (ms). The first ledger read of the period wins; later ones are dropped. */
const seedScript = `
local current = redis.call('HMGET', KEYS[1], 'spent', 'loaded')
if current[2] == '1' then return 0 end
local spent = tonumber(current[1] or '0') + tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'spent', string.format('%.17g', spent), 'loaded', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`;

type ScriptRunner = (numberOfKeys: number, ...args: Array<string | number>) => Promise<unknown>;

export interface RedisLimiterOptions {
  redis: Redis;
  clock: Clock;
  /** How long a slot outlives a replica that stopped renewing it. */
  leaseMs: number;
  log: (message: string, details: Record<string, unknown>) => void;
  /**
   * Tests only: the script's time from this clock instead of Redis's `TIME`, so a sequence of admits
   * can be compared with the in-process Limiter on the same virtual clock.
   */
  scriptTimeFromClock?: boolean;
}

export class RedisLimiter implements SharedLimiter {
  private readonly redis: Redis;
  private readonly admitCommand: ScriptRunner;
  private readonly releaseCommand: ScriptRunner;
  private readonly renewCommand: ScriptRunner;
  private readonly seedCommand: ScriptRunner;
  /** Tickets this replica holds, renewed every third of a lease. */
  private readonly held = new Map<string, SharedLimitTicket>();
  private readonly renewTimer: NodeJS.Timeout;

  constructor(private readonly options: RedisLimiterOptions) {
    const redis = options.redis;
    this.redis = redis;
    // defineCommand runs EVALSHA and falls back to EVAL when Redis lost its script cache (a restart).
    redis.defineCommand('gravityAdmit', { lua: admitScript });
    redis.defineCommand('gravityRelease', { lua: releaseScript });
    redis.defineCommand('gravityRenew', { lua: renewScript });
    redis.defineCommand('gravitySeed', { lua: seedScript });
    const commands = redis as unknown as Record<string, ScriptRunner>;
    this.admitCommand = (commands.gravityAdmit as ScriptRunner).bind(redis);
    this.releaseCommand = (commands.gravityRelease as ScriptRunner).bind(redis);
    this.renewCommand = (commands.gravityRenew as ScriptRunner).bind(redis);
    this.seedCommand = (commands.gravitySeed as ScriptRunner).bind(redis);
    this.renewTimer = setInterval(() => this.renewAll(), Math.max(50, options.leaseMs / 3));
    this.renewTimer.unref();
  }

  async admit(
    scopes: readonly LimitScope[],
    tokens: number,
    reserveUsd: number,
  ): Promise<SharedAdmitOutcome> {
    const epochMs = this.options.clock.epochMs();
    const keys: string[] = [];
    const args: Array<string | number> = [];
    const periods = scopes.map((scope) => spendPeriodRange(scope.limits.period, epochMs));
    for (const [index, scope] of scopes.entries()) {
      const { rpm, tpm, concurrency, spendUsd } = scope.limits;
      const period = periods[index] as { startEpochMs: number; endEpochMs: number };
      keys.push(...scopeKeys(scope.id, period.startEpochMs));
      args.push(rpm ?? -1, tpm ?? -1, concurrency ?? -1, spendUsd ?? -1, spendTtlMs(period, epochMs));
    }
    const ticketId = randomUUID();
    let reply: string[];
    try {
      reply = (await this.admitCommand(
        keys.length,
        ...keys,
        this.scriptNow(),
        tokens,
        ticketId,
        this.options.leaseMs,
        reserveUsd,
        scopes.length,
        ...args,
      )) as string[];
    } catch (error) {
      return { kind: 'unavailable', error: error as Error };
    }
    if (reply[0] === 'load') {
      return {
        kind: 'load-spend',
        scopes: reply.slice(1).map((position) => {
          const index = Number(position) - 1;
          const period = periods[index] as { startEpochMs: number; endEpochMs: number };
          return {
            scope: scopes[index] as LimitScope,
            fromEpochMs: period.startEpochMs,
            toEpochMs: period.endEpochMs,
          };
        }),
      };
    }
    const states = scopes.map((_, index) => {
      const at = 3 + index * 4;
      return {
        requests: reply[at] === '' ? null : Number(reply[at]),
        tokens: reply[at + 1] === '' ? null : Number(reply[at + 1]),
        inFlight: Number(reply[at + 2]),
        spentUsd: Number(reply[at + 3]),
      };
    });
    const snapshot = snapshotOf(scopes, states);
    if (reply[0] === 'deny') {
      const index = Number(reply[2]) - 1;
      const denial = denialOf(
        reply[1] as LimitDenial['kind'],
        scopes[index] as LimitScope,
        states[index] as ScopeLevels,
        tokens,
        epochMs,
      );
      return { kind: 'decided', decision: { admitted: false, denial, snapshot } };
    }
    const ticket: SharedLimitTicket = { id: ticketId, scopes, keys, reservedTokens: tokens };
    if (scopes.some((scope) => scope.limits.concurrency !== undefined || scope.limits.spendUsd !== undefined))
      this.held.set(ticketId, ticket);
    return { kind: 'decided', decision: { admitted: true, ticket, snapshot } };
  }

  release(ticket: SharedLimitTicket, usedTokens: number, priceUsd: number): void {
    this.held.delete(ticket.id);
    this.releaseCommand(
      ticket.keys.length,
      ...ticket.keys,
      this.scriptNow(),
      ticket.id,
      ticket.reservedTokens,
      usedTokens,
      priceUsd,
      ticket.scopes.length,
      ...ticket.scopes.map((scope) => scope.limits.tpm ?? -1),
    ).catch((error: Error) =>
      // Its lease expires by itself; a lost tokens true-up or price is the cost of the outage.
      this.options.log('shared limits: release failed', { err: error, ticket: ticket.id }),
    );
  }

  async seedSpend(scope: LimitScope, fromEpochMs: number, spentUsd: number): Promise<void> {
    const period = spendPeriodRange(scope.limits.period, fromEpochMs);
    await this.seedCommand(
      1,
      spendKey(scope.id, fromEpochMs),
      spentUsd,
      spendTtlMs(period, this.options.clock.epochMs()),
    );
  }

  /** Requests in flight for a scope across every replica (for tests). */
  async inFlight(scopeId: string): Promise<number> {
    return this.redis.zcount(`${keyPrefix}leases:${scopeId}`, '(0', '+inf');
  }

  close(): void {
    clearInterval(this.renewTimer);
  }

  private renewAll(): void {
    for (const ticket of this.held.values()) {
      const leaseKeys = ticket.keys.filter((_, index) => index % keysPerScope === 1);
      this.renewCommand(
        leaseKeys.length,
        ...leaseKeys,
        this.scriptNow(),
        ticket.id,
        this.options.leaseMs,
      ).catch(() => {
        // Redis away: the admissions fail too and say so; a lease that lapses meanwhile frees a slot early.
      });
    }
  }

  private scriptNow(): string {
    return this.options.scriptTimeFromClock ? String(this.options.clock.nowMs()) : '';
  }
}

/**
 * A period's spend is kept a day past its end (a request received before midnight may finish after it),
 * counted from this replica's clock: a relative expiry, so a replica's skew shifts it by the skew only.
 */
function spendTtlMs(period: { endEpochMs: number }, epochMs: number): number {
  return Math.max(1000, Math.ceil(period.endEpochMs - epochMs) + 86_400_000);
}

function spendKey(scopeId: string, periodStartEpochMs: number): string {
  return `${keyPrefix}spend:${scopeId}:${periodStartEpochMs}`;
}

function scopeKeys(scopeId: string, periodStartEpochMs: number): string[] {
  return [
    `${keyPrefix}bucket:${scopeId}`,
    `${keyPrefix}leases:${scopeId}`,
    spendKey(scopeId, periodStartEpochMs),
    `${keyPrefix}reserved:${scopeId}`,
  ];
}

interface ScopeLevels {
  requests: number | null;
  tokens: number | null;
  inFlight: number;
  spentUsd: number;
}

/** Limiter.snapshotOf, from the levels the script returned. */
function snapshotOf(scopes: readonly LimitScope[], states: readonly ScopeLevels[]): LimitSnapshot {
  const snapshot: LimitSnapshot = { requests: null, tokens: null };
  for (const [index, scope] of scopes.entries()) {
    const state = states[index] as ScopeLevels;
    const { rpm, tpm } = scope.limits;
    if (rpm !== undefined && state.requests !== null) {
      const remaining = Math.max(0, Math.floor(state.requests));
      if (!snapshot.requests || remaining < snapshot.requests.remaining)
        snapshot.requests = { limit: rpm, remaining, resetMs: msUntilFull(bucket(state.requests), rpm) };
    }
    if (tpm !== undefined && state.tokens !== null) {
      const remaining = Math.max(0, Math.floor(state.tokens));
      if (!snapshot.tokens || remaining < snapshot.tokens.remaining)
        snapshot.tokens = { limit: tpm, remaining, resetMs: msUntilFull(bucket(state.tokens), tpm) };
    }
  }
  return snapshot;
}

function bucket(level: number) {
  return { level, updatedAtMs: 0 };
}

/** Limiter.firstDenial's denial, for the scope and kind the script chose. */
function denialOf(
  kind: LimitDenial['kind'],
  scope: LimitScope,
  state: ScopeLevels,
  tokens: number,
  epochMs: number,
): LimitDenial {
  const { rpm = 0, tpm = 0, concurrency = 0, spendUsd = 0, period } = scope.limits;
  switch (kind) {
    case 'spend': {
      const { endEpochMs } = spendPeriodRange(period, epochMs);
      return {
        kind,
        scope,
        limitUsd: spendUsd,
        spentUsd: state.spentUsd,
        resetsAtEpochMs: endEpochMs,
        retryAfterMs: endEpochMs - epochMs,
      };
    }
    case 'request-too-large':
      return { kind, scope, limit: tpm, requested: tokens };
    case 'requests': {
      const level = state.requests ?? 0;
      return {
        kind,
        scope,
        limit: rpm,
        used: Math.ceil(rpm - level),
        requested: 1,
        retryAfterMs: msUntilAvailable(bucket(level), rpm, 1),
      };
    }
    case 'tokens': {
      const level = state.tokens ?? 0;
      return {
        kind,
        scope,
        limit: tpm,
        used: Math.ceil(tpm - level),
        requested: tokens,
        retryAfterMs: msUntilAvailable(bucket(level), tpm, tokens),
      };
    }
    case 'concurrency':
      return { kind, scope, limit: concurrency };
  }
}
