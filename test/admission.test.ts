import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI, { AuthenticationError, PermissionDeniedError, RateLimitError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteKeyStore } from '../src/admission/sqlite-key-store.js';
import { type CreateKeyOptions, createKey, formatKeyList, revokeKey } from '../src/cli/keys-command.js';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../src/metering/usage-record.js';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';
import { spawnGravity, startGravityProcess } from './support/gravity-process.js';

/**
 * Keys, tiers, limits and budgets end to end: a live Gravity with one fast emulated replica, driven by
 * the official openai SDK with real keys made by the `gravity keys` functions.
 */
const model = 'llama-3.1-8b';
const document = {
  engines: {
    replica: {
      type: 'emulated',
      hardware: 'h200',
      model,
      weightDtype: 'fp8',
      contextTokens: 4096,
      metering: { cost: { hourlyUsd: 3.5 } },
    },
  },
  models: { [model]: { engine: 'replica' } },
  tenants: { capped: { rpm: 1 } },
};

let harness: Harness;
let adminKey: string;

function withKeys<T>(action: (store: SqliteKeyStore) => T): T {
  const store = new SqliteKeyStore(harness.keysPath);
  try {
    return action(store);
  } finally {
    store.close();
  }
}

function newKey(options: CreateKeyOptions) {
  return withKeys((store) => createKey(store, options));
}

function clientFor(apiKey: string): OpenAI {
  return new OpenAI({ baseURL: `${harness.url}/v1`, apiKey, maxRetries: 0, timeout: 30_000 });
}

function ask(client: OpenAI, extra: { max_tokens?: number; service_tier?: string } = {}) {
  return client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'Say something.' }],
    max_tokens: 4,
    ...(extra as { max_tokens?: number; service_tier?: 'default' }),
  });
}

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the request to fail');
}

async function ledgerRecord(requestId: string): Promise<UsageRecord | undefined> {
  const ledger = new SqliteLedgerStore(harness.ledgerPath);
  try {
    return (await ledger.records({})).find((record) => record.requestId === requestId);
  } finally {
    await ledger.close();
  }
}

beforeAll(async () => {
  harness = await startHarness((config) => {
    // Read the store on every request, so revocations show at once (the cache has its own unit test).
    config.auth.keyCacheMs = 0;
    // The server starts with a key: it is never open.
    const store = new SqliteKeyStore(config.auth.keysPath ?? '');
    adminKey = createKey(store, { tenant: 'ops', admin: true }).key;
    store.close();
  }, document);
});
afterAll(async () => {
  await harness?.close();
});

describe('gravity keys', () => {
  it('creates a key shown once, lists keys without secrets, and revokes by id', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'gravity-keys-')), 'keys.sqlite');
    const store = new SqliteKeyStore(file);
    try {
      const { key, record } = createKey(store, {
        tenant: 'acme',
        defaultTier: 'default',
        tiers: 'priority,default,flex,batch',
        rpm: 600,
        tpm: 100_000,
        concurrency: 16,
        spendUsd: 50,
        period: 'month',
      });
      expect(key).toMatch(/^gk-[0-9a-f]{12}-[A-Za-z0-9_-]{43}$/);
      expect(record).toMatchObject({
        tenant: 'acme',
        allowedTiers: ['priority', 'default', 'flex', 'batch'],
        limits: { rpm: 600, tpm: 100_000, concurrency: 16, spendUsd: 50, period: 'month' },
        admin: false,
      });
      const secret = key.slice(-43);
      const table = formatKeyList(store.list(), 'table');
      const json = formatKeyList(store.list(), 'json');
      expect(table).toContain(record.id);
      expect(table).not.toContain(secret);
      expect(json).not.toContain(secret);
      expect(JSON.parse(json).data[0]).toMatchObject({ id: record.id, tenant: 'acme', revoked_at: null });
      expect(revokeKey(store, record.id).revokedAtMs).not.toBeNull();
      expect(store.find(record.id)?.revokedAtMs).not.toBeNull();
      expect(() => revokeKey(store, 'nope')).toThrow(/no key with id/);
      expect(() => createKey(store, { tenant: 'acme', defaultTier: 'priority', tiers: 'default' })).toThrow(
        /must include the default tier/,
      );
      expect(() => createKey(store, { tenant: 'anonymous' })).toThrow(/reserved/);
    } finally {
      store.close();
    }
  });

  it('works from the command line against a key file', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'gravity-keys-')), 'keys.sqlite');
    const created = spawnGravity(['keys', 'create', '--tenant', 'acme', '--rpm', '60', '--keys', file]);
    expect((await created.exited).code).toBe(0);
    const key = created.stdout().trim();
    expect(key).toMatch(/^gk-[0-9a-f]{12}-/);
    expect(created.stderr()).toMatch(/shown only this once/);
    const listed = spawnGravity(['keys', 'list', '--format', 'json', '--keys', file]);
    expect((await listed.exited).code).toBe(0);
    const [entry] = JSON.parse(listed.stdout()).data;
    expect(entry).toMatchObject({ tenant: 'acme', rpm: 60, revoked_at: null });
    expect(listed.stdout()).not.toContain(key.slice(-43));
    const revoked = spawnGravity(['keys', 'revoke', entry.id, '--keys', file]);
    expect((await revoked.exited).code).toBe(0);
    const bad = spawnGravity(['keys', 'create', '--tenant', 'acme', '--tiers', 'gold', '--keys', file]);
    expect((await bad.exited).code).toBe(2);
    expect(bad.stderr()).toMatch(/unknown tier 'gold'/);
  });
});

describe('authentication', () => {
  it('refuses a request without a key, with a wrong key and with a revoked key (401 invalid_api_key)', async () => {
    const missing = await postRaw(
      `${harness.url}/v1/chat/completions`,
      JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(missing.status).toBe(401);
    expect(missing.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key' });

    const wrong = await caught(ask(clientFor('sk-wrong-key-0123456789')));
    expect(wrong).toBeInstanceOf(AuthenticationError);
    expect((wrong as AuthenticationError).code).toBe('invalid_api_key');
    expect((wrong as AuthenticationError).message).toMatch(/Incorrect API key provided: sk-wron\*\*\*6789/);

    const { key, record } = newKey({ tenant: 'acme' });
    await ask(clientFor(key));
    withKeys((store) => revokeKey(store, record.id));
    const revoked = await caught(ask(clientFor(key)));
    expect(revoked).toBeInstanceOf(AuthenticationError);
    expect((revoked as AuthenticationError).message).toMatch(/has been revoked/);
  });

  it('writes no ledger row for a request refused for its key, and counts it in gravity_auth_failures_total', async () => {
    const failures = async (reason: string) => {
      const text = await (await fetch(`${harness.url}/metrics`)).text();
      return Number(
        text.match(new RegExp(`^gravity_auth_failures_total\\{reason="${reason}"\\} (\\d+)`, 'm'))?.[1] ?? 0,
      );
    };
    const ledgerRows = async () => {
      const ledger = new SqliteLedgerStore(harness.ledgerPath);
      try {
        return (await ledger.records({})).length;
      } finally {
        await ledger.close();
      }
    };
    const [rowsBefore, missingBefore, invalidBefore] = [
      await ledgerRows(),
      await failures('missing_key'),
      await failures('invalid_key'),
    ];
    const invalid = await postRaw(
      `${harness.url}/v1/completions`,
      JSON.stringify({ model, prompt: 'a b c' }),
      {
        authorization: 'Bearer gk-000000000000-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      },
    );
    expect(invalid.status).toBe(401);
    expect(invalid.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key' });
    const missing = await postRaw(`${harness.url}/v1/chat/completions`, '{"model":');
    expect(missing.status).toBe(401);
    expect(await ledgerRows()).toBe(rowsBefore);
    expect(await failures('invalid_key')).toBe(invalidBefore + 1);
    expect(await failures('missing_key')).toBe(missingBefore + 1);
  });

  it('records a request refused before its handler (bad JSON) under the tenant of its valid key', async () => {
    const { key, record } = newKey({ tenant: 'acme' });
    const response = await postRaw(`${harness.url}/v1/chat/completions`, '{"model":', {
      authorization: `Bearer ${key}`,
    });
    expect(response.status).toBe(400);
    const recorded = await ledgerRecord(response.headers.get('x-request-id') ?? '');
    expect(recorded).toMatchObject({ tenant: 'acme', apiKeyId: record.id, status: 400 });
  });

  it('keeps the probes and, for loopback clients, /metrics open; /v1/models needs a key', async () => {
    expect((await fetch(`${harness.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${harness.url}/readyz`)).status).toBe(200);
    expect((await fetch(`${harness.url}/metrics`)).status).toBe(200);
    expect((await fetch(`${harness.url}/v1/models`)).status).toBe(401);
    const models = await clientFor(adminKey).models.list();
    expect(models.data.map((entry) => entry.id)).toEqual([model]);
  });
});

describe('service tiers', () => {
  it('answers auto (or no tier) with the key default tier, and echoes an explicit one', async () => {
    const client = clientFor(newKey({ tenant: 'acme', defaultTier: 'flex', tiers: 'default,flex' }).key);
    expect((await ask(client)).service_tier).toBe('flex');
    expect((await ask(client, { service_tier: 'auto' })).service_tier).toBe('flex');
    const { data: completion, response } = await client.chat.completions
      .create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, service_tier: 'default' })
      .withResponse();
    expect(completion.service_tier).toBe('default');
    const record = await ledgerRecord(response.headers.get('x-request-id') ?? '');
    expect(record).toMatchObject({ tier: 'default', tenant: 'acme' });
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 2,
      stream: true,
    });
    for await (const chunk of stream) expect(chunk.service_tier).toBe('flex');
  });

  it('accepts the batch tier for a key allowed it', async () => {
    const client = clientFor(newKey({ tenant: 'acme', tiers: 'default,batch' }).key);
    expect((await ask(client, { service_tier: 'batch' })).service_tier).toBe('batch');
  });

  it('refuses a tier the key may not use with 403 permission_error', async () => {
    const client = clientFor(newKey({ tenant: 'acme', tiers: 'default,flex' }).key);
    const error = await caught(ask(client, { service_tier: 'priority' }));
    expect(error).toBeInstanceOf(PermissionDeniedError);
    expect(error).toMatchObject({ status: 403, type: 'permission_error', code: 'tier_not_allowed' });
  });
});

describe('limits', () => {
  it('sends x-ratelimit headers on answers, and a 429 with them past the requests-per-minute limit', async () => {
    const { key, record } = newKey({ tenant: 'acme', rpm: 2, tpm: 10_000 });
    const client = clientFor(key);
    const { response } = await ask(client).withResponse();
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('2');
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('1');
    expect(response.headers.get('x-ratelimit-reset-requests')).toMatch(/^\d+(\.\d+)?s$/);
    expect(response.headers.get('x-ratelimit-limit-tokens')).toBe('10000');
    expect(Number(response.headers.get('x-ratelimit-remaining-tokens'))).toBeLessThan(10_000);
    expect(response.headers.get('x-ratelimit-reset-tokens')).toMatch(/^\d+(ms|(\.\d+)?s)$/);

    const { data: stream, response: streamed } = await client.chat.completions
      .create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, stream: true })
      .withResponse();
    for await (const _chunk of stream);
    expect(streamed.headers.get('x-ratelimit-remaining-requests')).toBe('0');

    const error = await caught(ask(client));
    expect(error).toBeInstanceOf(RateLimitError);
    const limited = error as RateLimitError;
    expect(limited).toMatchObject({ status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    expect(limited.message).toMatch(/requests per min \(RPM\).*Limit 2, Used 2, Requested 1/);
    expect(limited.headers?.get('x-ratelimit-limit-requests')).toBe('2');
    expect(limited.headers?.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(Number(limited.headers?.get('retry-after'))).toBeGreaterThanOrEqual(29);
    const rejected = await ledgerRecord(limited.headers?.get('x-request-id') ?? '');
    expect(rejected).toMatchObject({ status: 429, errorCode: 'rate_limit_exceeded', apiKeyId: record.id });
  });

  it('applies a tenant limit from config across its keys', async () => {
    await ask(clientFor(newKey({ tenant: 'capped' }).key));
    const error = await caught(ask(clientFor(newKey({ tenant: 'capped' }).key)));
    expect(error).toBeInstanceOf(RateLimitError);
    expect((error as RateLimitError).message).toMatch(/on tenant capped/);
  });

  it('reserves prompt plus max_tokens against tokens per minute', async () => {
    const client = clientFor(newKey({ tenant: 'acme', tpm: 100 }).key);
    const { response } = await ask(client, { max_tokens: 50 }).withResponse();
    expect(Number(response.headers.get('x-ratelimit-remaining-tokens'))).toBeLessThanOrEqual(50);
    const error = await caught(ask(client, { max_tokens: 90 }));
    expect(error).toBeInstanceOf(RateLimitError);
    expect((error as RateLimitError).message).toMatch(/tokens per min \(TPM\)/);
    expect((error as RateLimitError).headers?.get('x-ratelimit-limit-tokens')).toBe('100');
    const tooLarge = await caught(ask(client, { max_tokens: 500 }));
    expect((tooLarge as RateLimitError).message).toMatch(/Request too large/);
  });

  it('limits concurrent requests and frees the slot when a stream is cancelled', async () => {
    const client = clientFor(newKey({ tenant: 'acme', concurrency: 1 }).key);
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Write at length.' }],
      max_tokens: 2000,
      stream: true,
    });
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    const error = await caught(ask(client));
    expect(error).toBeInstanceOf(RateLimitError);
    expect((error as RateLimitError).message).toMatch(/Too many concurrent requests.*Limit 1/);
    stream.controller.abort();
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        await ask(client);
        break;
      } catch (retry) {
        if (!(retry instanceof RateLimitError) || Date.now() > deadline) throw retry;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  });

  it('refuses requests past the spend budget with insufficient_quota', async () => {
    // Default pricing charges a few millionths of a dollar for this request: one fits under the budget.
    const client = clientFor(newKey({ tenant: 'acme', spendUsd: 0.000001, period: 'day' }).key);
    const first = await ask(client);
    expect(first.usage?.completion_tokens).toBeGreaterThan(0);
    const error = await caught(ask(client));
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error).toMatchObject({ status: 429, type: 'insufficient_quota', code: 'insufficient_quota' });
    expect((error as RateLimitError).message).toMatch(/exceeded your current quota/);
    expect(Number((error as RateLimitError).headers?.get('retry-after'))).toBeGreaterThan(0);
  });
});

describe('usage isolation', () => {
  it('shows a tenant only its own usage, and an admin everyone’s', async () => {
    const acme = newKey({ tenant: 'iso-acme' }).key;
    const globex = newKey({ tenant: 'iso-globex' }).key;
    await ask(clientFor(acme));
    await ask(clientFor(globex));
    const usage = async (key: string, query: string) => {
      const response = await fetch(`${harness.url}/v1/usage?${query}`, {
        headers: { authorization: `Bearer ${key}` },
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    const own = await usage(acme, 'group_by=tenant');
    expect(own.status).toBe(200);
    expect((own.body.data as Array<{ tenant: string }>).map((group) => group.tenant)).toEqual(['iso-acme']);
    expect(own.body.replicas).toEqual([]);

    const other = await usage(acme, 'tenant=iso-globex');
    expect(other.status).toBe(403);
    expect(other.body.error).toMatchObject({ type: 'permission_error' });

    const all = await usage(adminKey, 'group_by=tenant');
    const tenants = (all.body.data as Array<{ tenant: string }>).map((group) => group.tenant);
    expect(tenants).toEqual(expect.arrayContaining(['iso-acme', 'iso-globex']));
    // Requests refused for their key leave no rows: no `anonymous` tenant on a server with keys.
    expect(tenants).not.toContain('anonymous');
    expect(Array.isArray(all.body.replicas)).toBe(true);
    const filtered = await usage(adminKey, 'tenant=iso-globex&group_by=tenant');
    expect((filtered.body.data as Array<{ tenant: string }>).map((group) => group.tenant)).toEqual([
      'iso-globex',
    ]);
  });
});

describe('open mode', () => {
  it('refuses to start without keys on a host other machines can reach (exit 2, before listening)', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'gravity-open-'));
    const started = spawnGravity(['serve', '--host', '0.0.0.0', '--port', '0', '--data-dir', dataDir]);
    const { code } = await started.exited;
    expect(code).toBe(2);
    expect(started.stderr()).toMatch(/server\.host is 0\.0\.0\.0.*no API keys/s);
    expect(started.stderr()).toMatch(/auth\.allowOpen/);
    expect(started.stdout()).not.toMatch(/listening/);
  });

  it('serves openly on loopback with no keys, and says so at start', async () => {
    const gravity = await startGravityProcess(['--emulate', 'h200:llama-3.1-8b:1']);
    try {
      // The logger may flush its line after the listening line.
      const deadline = Date.now() + 5000;
      while (!/the server is open/.test(gravity.stdout()) && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 20));
      expect(gravity.stdout()).toMatch(/no API keys in .*the server is open/);
      const response = await postRaw(
        `${gravity.url}/v1/chat/completions`,
        JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
      );
      expect(response.status).toBe(200);
    } finally {
      gravity.child.kill('SIGTERM');
      await gravity.exited;
    }
  });
});
