import { describe, expect, it, vi } from 'vitest';
import { Admission, type AdmissionOptions, concurrencyRecheckMs } from '../src/admission/admission.js';
import { parseApiKey, redactKey } from '../src/admission/api-key.js';
import { openModeCaller } from '../src/admission/request-caller.js';
import { SqliteKeyStore } from '../src/admission/sqlite-key-store.js';
import { createKey } from '../src/cli/keys-command.js';
import { GravityError } from '../src/core/errors.js';
import { createRequestContext } from '../src/core/request-context.js';
import { VirtualClock } from '../src/core/virtual-clock.js';

function setup(options: Partial<AdmissionOptions> = {}) {
  const clock = new VirtualClock(Date.UTC(2026, 10, 27, 12));
  const keys = new SqliteKeyStore(':memory:');
  const admission = new Admission({
    keys,
    clock,
    keyCacheMs: 1000,
    required: false,
    tenants: {},
    unboundedCompletionReserveTokens: 1024,
    ...options,
  });
  return { clock, keys, admission };
}

function thrown(action: () => unknown): GravityError {
  try {
    action();
  } catch (error) {
    if (error instanceof GravityError) return error;
    throw error;
  }
  throw new Error('expected an error');
}

function context(clock: VirtualClock) {
  return createRequestContext({
    endpoint: 'chat.completions',
    stream: false,
    model: 'm',
    serviceTier: 'auto',
    nowMs: clock.nowMs(),
    epochMs: clock.epochMs(),
  });
}

const chat = (content: string, maxTokens: number | null = 10) => ({
  input: { kind: 'chat' as const, messages: [{ content }] },
  maxTokens,
});

describe('Admission: keys', () => {
  it('is open while no key exists, and closed for good once one does', () => {
    const { clock, keys, admission } = setup();
    expect(admission.authenticate(undefined)).toBe(openModeCaller);
    const { record } = createKey(keys, { tenant: 'acme' });
    // Still open until the key count is read again.
    expect(admission.authenticate(undefined)).toBe(openModeCaller);
    clock.advanceTo(1000);
    expect(thrown(() => admission.authenticate(undefined)).code).toBe('invalid_api_key');
    keys.revoke(record.id, clock.epochMs());
    clock.advanceTo(5000);
    expect(thrown(() => admission.authenticate(undefined)).status).toBe(401);
  });

  it('honours a key created moments ago at once, and closes open mode with it', () => {
    const { keys, admission } = setup();
    expect(admission.authenticate(undefined)).toBe(openModeCaller);
    const { key } = createKey(keys, { tenant: 'acme' });
    // Within keyCacheMs of the last key count: the presented key is looked up, not ignored.
    expect(admission.authenticate(`Bearer ${key}`).tenant).toBe('acme');
    expect(thrown(() => admission.authenticate(undefined)).code).toBe('invalid_api_key');
  });

  it('demands a key even with none when auth is required', () => {
    const { admission } = setup({ required: true });
    const error = thrown(() => admission.authenticate('Bearer anything'));
    expect(error.toBody().error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key' });
  });

  it('accepts a valid key as a Bearer token and names its tenant', () => {
    const { keys, admission } = setup();
    const { key, record } = createKey(keys, { tenant: 'acme', admin: true });
    const caller = admission.authenticate(`Bearer ${key}`);
    expect(caller).toMatchObject({ tenant: 'acme', apiKeyId: record.id, admin: true });
    expect(admission.authenticate(`bearer   ${key}`).apiKeyId).toBe(record.id);
  });

  it('refuses missing, malformed, unknown and wrong-secret keys with 401 and a redacted key', () => {
    const { keys, admission } = setup();
    const { key } = createKey(keys, { tenant: 'acme' });
    expect(thrown(() => admission.authenticate(undefined)).message).toMatch(/didn't provide an API key/);
    expect(thrown(() => admission.authenticate('Basic abc')).status).toBe(401);
    const malformed = thrown(() => admission.authenticate('Bearer sk-not-a-gravity-key'));
    expect(malformed.message).toBe(
      `Incorrect API key provided: ${redactKey('sk-not-a-gravity-key')}. Ask your Gravity operator for a valid key.`,
    );
    const parsed = parseApiKey(key);
    const wrongSecret = `gk-${parsed?.id}-${'A'.repeat(43)}`;
    const error = thrown(() => admission.authenticate(`Bearer ${wrongSecret}`));
    expect(error.code).toBe('invalid_api_key');
    expect(error.message).not.toContain('A'.repeat(10));
    const unknown = `gk-000000000000-${'B'.repeat(43)}`;
    expect(thrown(() => admission.authenticate(`Bearer ${unknown}`)).status).toBe(401);
  });

  it('sees a revocation once the cached key is older than keyCacheMs', () => {
    const { clock, keys, admission } = setup();
    const { key, record } = createKey(keys, { tenant: 'acme' });
    admission.authenticate(`Bearer ${key}`);
    keys.revoke(record.id, clock.epochMs());
    clock.advanceTo(999);
    expect(admission.authenticate(`Bearer ${key}`).tenant).toBe('acme');
    clock.advanceTo(1000);
    expect(thrown(() => admission.authenticate(`Bearer ${key}`)).message).toMatch(/has been revoked/);
  });

  it('reads a known key from the store once per keyCacheMs', () => {
    const { keys, admission } = setup();
    const { key } = createKey(keys, { tenant: 'acme' });
    const find = vi.spyOn(keys, 'find');
    for (let index = 0; index < 5; index++) admission.authenticate(`Bearer ${key}`);
    expect(find).toHaveBeenCalledTimes(1);
  });
});

describe('Admission: tiers', () => {
  it('resolves auto to the key default and refuses tiers the key was not granted', () => {
    const { keys, admission } = setup();
    const { key } = createKey(keys, { tenant: 'acme', defaultTier: 'flex', tiers: 'flex,default' });
    const caller = admission.authenticate(`Bearer ${key}`);
    expect(admission.resolveTier(caller, 'auto')).toBe('flex');
    expect(admission.resolveTier(caller, 'default')).toBe('default');
    const refused = thrown(() => admission.resolveTier(caller, 'priority'));
    expect(refused.toBody().error).toMatchObject({
      type: 'permission_error',
      code: 'tier_not_allowed',
      param: 'service_tier',
    });
    expect(refused.status).toBe(403);
  });

  it('gives anonymous callers default for auto and any tier they ask for', () => {
    const { admission } = setup();
    expect(admission.resolveTier(openModeCaller, 'auto')).toBe('default');
    expect(admission.resolveTier(openModeCaller, 'priority')).toBe('priority');
  });
});

describe('Admission: limits', () => {
  it('applies the tenant limits from config to every key of the tenant', async () => {
    const { clock, keys, admission } = setup({ tenants: { acme: { rpm: 2, period: 'month' } } });
    const one = admission.authenticate(`Bearer ${createKey(keys, { tenant: 'acme' }).key}`);
    const two = admission.authenticate(`Bearer ${createKey(keys, { tenant: 'acme' }).key}`);
    const headers = await admission.admit(context(clock), one, chat('hi'));
    expect(headers['x-ratelimit-remaining-requests']).toBe('1');
    await admission.admit(context(clock), two, chat('hi'));
    const refused = await admission.admit(context(clock), one, chat('hi')).catch((error) => error);
    expect(refused).toBeInstanceOf(GravityError);
    expect(refused.toBody().error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    expect(refused.message).toMatch(/requests per min \(RPM\) on tenant acme: Limit 2, Used 2, Requested 1/);
    expect(refused.headers).toMatchObject({
      'x-ratelimit-limit-requests': '2',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '1m0s',
      'retry-after': '30',
    });
  });

  it('reserves the estimated prompt plus max_tokens and refunds the difference when the request ends', async () => {
    const { clock, keys, admission } = setup();
    const caller = admission.authenticate(`Bearer ${createKey(keys, { tenant: 'acme', tpm: 1000 }).key}`);
    const request = context(clock);
    // 400 characters ≈ 100 tokens, plus 500 of max_tokens.
    const headers = await admission.admit(request, caller, chat('x'.repeat(400), 500));
    expect(headers['x-ratelimit-remaining-tokens']).toBe('400');
    request.usage = { promptTokens: 90, cachedPromptTokens: 0, completionTokens: 10, source: 'engine' };
    admission.onRequestEnd(request);
    // 1000 - 100 used: 800 more fit now (without the refund only 400 would be left).
    const next = await admission.admit(context(clock), caller, chat('', 800));
    expect(next['x-ratelimit-remaining-tokens']).toBe('100');
    // A request without max_tokens reserves 1024, more than the whole limit: too large.
    await expect(admission.admit(context(clock), caller, chat('', null))).rejects.toThrow(
      /Request too large/,
    );
  });

  it('frees a concurrency slot when the request ends, whatever its outcome', async () => {
    const { clock, keys, admission } = setup();
    const caller = admission.authenticate(
      `Bearer ${createKey(keys, { tenant: 'acme', concurrency: 1 }).key}`,
    );
    const first = context(clock);
    await admission.admit(first, caller, chat('hi'));
    await expect(admission.admit(context(clock), caller, chat('hi'))).rejects.toMatchObject({
      status: 429,
      code: 'rate_limit_exceeded',
    });
    first.status = 499;
    admission.onRequestEnd(first);
    admission.onRequestEnd(first);
    await expect(admission.admit(context(clock), caller, chat('hi'))).resolves.toEqual({});
  });

  it('starts a budget from the ledger once, then counts each finished request’s price', async () => {
    const spentUsd = vi.fn(async () => 0.9);
    const { clock, keys, admission } = setup({ spentUsd });
    const { key, record } = createKey(keys, { tenant: 'acme', spendUsd: 1, period: 'day' });
    const caller = admission.authenticate(`Bearer ${key}`);
    const first = context(clock);
    first.tenant = 'acme';
    first.apiKeyId = record.id;
    await Promise.all([
      admission.admit(first, caller, chat('hi')),
      admission.admit(context(clock), caller, chat('hi')),
    ]);
    expect(spentUsd).toHaveBeenCalledTimes(1);
    expect(spentUsd).toHaveBeenCalledWith({
      tenant: 'acme',
      apiKeyId: record.id,
      fromEpochMs: Date.UTC(2026, 10, 27),
      toEpochMs: Date.UTC(2026, 10, 28),
    });
    first.metered = {
      energyJoules: 0,
      energySource: 'none',
      costUsd: 0,
      costSource: 'none',
      priceUsd: 0.1,
      marginUsd: 0.1,
      carbonGrams: 0,
    };
    admission.onRequestEnd(first);
    const refused = await admission.admit(context(clock), caller, chat('hi')).catch((error) => error);
    expect(refused.toBody().error).toMatchObject({ type: 'insufficient_quota', code: 'insufficient_quota' });
    expect(refused.status).toBe(429);
    expect(refused.message).toMatch(/spent \$1\.00 of its \$1\.00 budget for the day/);
    expect(refused.headers['retry-after']).toBe(String(12 * 3600));
  });

  it('says how long to wait when a rate limit refuses, and that waiting cannot help a budget or a request too large', async () => {
    const spentUsd = async () => 5;
    const { clock, keys, admission } = setup({ spentUsd });
    const limited = admission.authenticate(
      `Bearer ${createKey(keys, { tenant: 'acme', rpm: 2, tpm: 1000, concurrency: 3 }).key}`,
    );
    await admission.admit(context(clock), limited, chat('hi'));
    await admission.admit(context(clock), limited, chat('hi'));
    // rpm 2 refills one request every 30 s.
    expect(await admission.tryAdmit(context(clock), limited, chat('hi'))).toMatchObject({
      admitted: false,
      retryAfterMs: 30_000,
      error: { status: 429, code: 'rate_limit_exceeded' },
    });
    // Too large for the 1,000 tokens per minute: refused with no wait, even while rpm is spent.
    const tooLarge = await admission.tryAdmit(context(clock), limited, chat('hi', 2000));
    expect(tooLarge).toMatchObject({ admitted: false, retryAfterMs: null });
    expect(!tooLarge.admitted && tooLarge.error.message).toMatch(/Request too large for tokens per min/);

    clock.advanceTo(30_000);
    await admission.admit(context(clock), limited, chat('hi'));
    clock.advanceTo(60_000);
    // Three in flight: the fourth waits for a slot, which the limiter cannot time, so it checks again.
    expect(await admission.tryAdmit(context(clock), limited, chat('hi'))).toMatchObject({
      admitted: false,
      retryAfterMs: concurrencyRecheckMs,
    });

    const broke = admission.authenticate(
      `Bearer ${createKey(keys, { tenant: 'acme', spendUsd: 1, period: 'day' }).key}`,
    );
    expect(await admission.tryAdmit(context(clock), broke, chat('hi'))).toMatchObject({
      admitted: false,
      retryAfterMs: null,
      error: { code: 'insufficient_quota' },
    });
  });
});
