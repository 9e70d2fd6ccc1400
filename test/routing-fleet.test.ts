import OpenAI, { APIConnectionError, APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteKeyStore } from '../src/admission/sqlite-key-store.js';
import { createKey } from '../src/cli/keys-command.js';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../src/metering/usage-record.js';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';
import { type GravityProcess, startGravityProcess } from './support/gravity-process.js';

/**
 * Routing across live replicas: emulated engines labelled by region and provider behind one Gravity, and
 * Gravity processes as OpenAI-compatible upstreams of another Gravity for failover.
 */
const fastReplica = {
  type: 'emulated',
  hardware: 'h200',
  model: 'llama-3.1-8b',
  weightDtype: 'fp8',
  contextTokens: 8192,
};
const euReplicas = ['eu-0', 'eu-1'];
const usReplicas = ['us-0', 'us-1'];

async function ledgerRecords(ledgerPath: string): Promise<UsageRecord[]> {
  const ledger = new SqliteLedgerStore(ledgerPath);
  try {
    return await ledger.records({});
  } finally {
    await ledger.close();
  }
}

async function recordsOf(
  ledgerPath: string,
  ids: readonly string[],
  timeoutMs = 5000,
): Promise<UsageRecord[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const records = (await ledgerRecords(ledgerPath)).filter((record) => ids.includes(record.requestId));
    if (records.length === ids.length || Date.now() > deadline) return records;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('a labelled fleet of emulated replicas', () => {
  let harness: Harness;
  /** Tenant acme may use eu-west only; globex has no residency policy. */
  let acme: OpenAI;
  let globex: OpenAI;
  let adminKey: string;

  beforeAll(async () => {
    const keys: Record<string, string> = {};
    harness = await startHarness(
      (config) => {
        // Keys exist before the server starts, so it is never open and every request has a tenant.
        const store = new SqliteKeyStore(config.auth.keysPath ?? '');
        for (const tenant of ['acme', 'globex']) keys[tenant] = createKey(store, { tenant }).key;
        keys.admin = createKey(store, { tenant: 'ops', admin: true }).key;
        store.close();
      },
      {
        metering: { intervalMs: 20 },
        engines: Object.fromEntries([...euReplicas, ...usReplicas, 'us-only'].map((id) => [id, fastReplica])),
        models: {
          'llama-3.1-8b': { engines: [...euReplicas, ...usReplicas] },
          'llama-us': { engine: 'us-only' },
        },
        routing: {
          policy: 'prefix-load',
          replicas: {
            'eu-0': { region: 'eu-west', provider: 'own' },
            'eu-1': { region: 'eu-west', provider: 'own' },
            'us-0': { region: 'us-east', provider: 'own' },
            'us-1': { region: 'us-east', provider: 'cloud' },
            'us-only': { region: 'us-east', provider: 'own' },
          },
          residency: { acme: { regions: ['eu-west'] } },
          aliases: { 'gravity-default': 'llama-3.1-8b' },
        },
      },
    );
    const client = (tenant: string) =>
      new OpenAI({ baseURL: `${harness.url}/v1`, apiKey: keys[tenant], maxRetries: 0 });
    acme = client('acme');
    globex = client('globex');
    adminKey = keys.admin ?? '';
  });
  afterAll(async () => {
    await harness?.close();
  });

  it('never sends a residency-restricted tenant to a disallowed replica (from the ledger)', async () => {
    const ids = await Promise.all(
      Array.from({ length: 16 }, async (_, index) => {
        const { response } = await acme.chat.completions
          .create({
            model: 'llama-3.1-8b',
            messages: [{ role: 'user', content: `Residency question ${index}` }],
            max_tokens: 30,
          })
          .withResponse();
        return response.headers.get('x-request-id') ?? '';
      }),
    );
    const records = await recordsOf(harness.ledgerPath, ids);
    expect(records).toHaveLength(16);
    for (const record of records) {
      expect(record.tenant).toBe('acme');
      expect(euReplicas).toContain(record.engine);
    }
    // Both allowed replicas took a share: the filter narrows the fleet, load still spreads within it.
    expect(new Set(records.map((record) => record.engine)).size).toBe(2);
  });

  it('answers 403 naming the policy when no allowed replica serves the model', async () => {
    const error = await acme.chat.completions
      .create({ model: 'llama-us', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).status).toBe(403);
    expect((error as APIError).code).toBe('data_residency_denied');
    expect((error as APIError).message).toContain('routing.residency.acme (regions: eu-west)');
  });

  it('explains each decision in x-gravity-route and the ledger', async () => {
    const { response } = await globex.chat.completions
      .create({
        model: 'gravity-default',
        messages: [{ role: 'user', content: 'Explain yourself' }],
        max_tokens: 3,
      })
      .withResponse();
    const route = JSON.parse(response.headers.get('x-gravity-route') ?? 'null');
    expect(route).toMatchObject({ profile: 'prefix-load', attempt: 1 });
    expect([...euReplicas, ...usReplicas]).toContain(route.replica);
    expect(route.top[0].replica).toBe(route.replica);
    expect(Object.keys(route.top[0].scorers).sort()).toEqual(['prefix-affinity', 'queue-depth']);
    const [record] = await recordsOf(harness.ledgerPath, [response.headers.get('x-request-id') ?? '']);
    expect(JSON.parse(record?.route ?? 'null')).toEqual(route);
    expect(record).toMatchObject({ model: 'llama-3.1-8b', partial: false });
  });

  it('sends requests sharing a long system prompt to the replica that has it cached', async () => {
    const system = 'You are the support assistant of a company that sells telescopes and star maps. '.repeat(
      40,
    );
    const ask = async (question: string) => {
      const { data, response } = await globex.chat.completions
        .create({
          model: 'llama-3.1-8b',
          messages: [
            { role: 'system', content: system },
            { role: 'user', content: question },
          ],
          max_tokens: 2,
        })
        .withResponse();
      return {
        replica: JSON.parse(response.headers.get('x-gravity-route') ?? '{}').replica,
        usage: data.usage,
      };
    };
    const first = await ask('Which telescope for a beginner?');
    for (const question of ['Do you ship to Norway?', 'What is a Dobsonian?', 'Can I return a star map?']) {
      const next = await ask(question);
      expect(next.replica).toBe(first.replica);
      expect(next.usage?.prompt_tokens_details?.cached_tokens).toBeGreaterThan(500);
    }
  });

  it('leaves embeddings out of prefix affinity: no engine caches their inputs', async () => {
    const input = 'The same long passage to embed, about telescopes and star maps. '.repeat(40);
    const routes = [];
    for (let attempt = 0; attempt < 2; attempt++) {
      const { response } = await globex.embeddings
        .create({ model: 'llama-3.1-8b', input, encoding_format: 'float' })
        .withResponse();
      routes.push(JSON.parse(response.headers.get('x-gravity-route') ?? '{}'));
    }
    // The second request's text is the first's, yet no replica scores a prefix hit for it.
    for (const route of routes) {
      expect(route.profile).toBe('prefix-load');
      for (const candidate of route.top) expect(candidate.scorers['prefix-affinity']).toBe(0);
    }
  });

  it('explains a dry run on the debug endpoint without running it, to admin keys only', async () => {
    const request = JSON.stringify({ model: 'llama-3.1-8b', prompt: 'hello', tenant: 'acme' });
    const refused = await postRaw(`${harness.url}/v1/routing/explain`, request, {
      authorization: `Bearer ${acme.apiKey}`,
    });
    expect(refused.status).toBe(403);
    expect(refused.json.error).toMatchObject({ type: 'permission_error', code: 'admin_key_required' });
    const replicas = await fetch(`${harness.url}/v1/routing/replicas`, {
      headers: { authorization: `Bearer ${acme.apiKey}` },
    });
    expect(replicas.status).toBe(403);
    expect(((await replicas.json()) as { error: { code: string } }).error.code).toBe('admin_key_required');
    expect(
      (
        await fetch(`${harness.url}/v1/routing/replicas`, {
          headers: { authorization: `Bearer ${adminKey}` },
        })
      ).status,
    ).toBe(200);

    const response = await postRaw(`${harness.url}/v1/routing/explain`, request, {
      authorization: `Bearer ${adminKey}`,
    });
    expect(response.status).toBe(200);
    const body = JSON.parse(response.text);
    expect(body.candidates).toEqual([...euReplicas, ...usReplicas]);
    expect(euReplicas).toContain(body.decision.top[0].replica);
    expect(body.decision.filtered).toEqual(usReplicas.map((replica) => ({ replica, filter: 'residency' })));
  });
});

describe('failover across Gravity upstreams', () => {
  let upstreams: GravityProcess[] = [];
  let front: Harness;

  beforeAll(async () => {
    upstreams = await Promise.all(
      [0, 1, 2].map(() => startGravityProcess(['--emulate', 'h200:llama-3.1-8b:1'])),
    );
    front = await startHarness(undefined, {
      metering: { intervalMs: 20 },
      engines: Object.fromEntries(
        upstreams.map((upstream, index) => [
          `up-${index}`,
          { type: 'openai-upstream', baseUrl: `${upstream.url}/v1`, connectTimeoutMs: 5000 },
        ]),
      ),
      models: { 'llama-3.1-8b': { engines: ['up-0', 'up-1', 'up-2'] } },
      routing: {
        policy: 'least-loaded',
        health: { consecutiveFailures: 2, ejectionMs: 60_000, intervalMs: 200, timeoutMs: 500 },
        retries: { maxAttempts: 3, minRetriesPerSecond: 50 },
      },
    });
  }, 90_000);
  afterAll(async () => {
    await front?.close();
    for (const upstream of upstreams) {
      if (upstream.child.exitCode === null && upstream.child.signalCode === null)
        upstream.child.kill('SIGTERM');
      await upstream.exited;
    }
  });

  it('loses nothing when a replica is killed under load', async () => {
    type Outcome = {
      id: string;
      kind: 'complete' | 'stream-error' | 'http-error' | 'connection-error';
      tokens: number;
    };
    const send = async (index: number): Promise<Outcome> => {
      let id = '';
      let tokens = 0;
      try {
        const { data: stream, response } = await front.client.chat.completions
          .create({
            model: 'llama-3.1-8b',
            messages: [{ role: 'user', content: `Load request ${index}` }],
            max_tokens: 120,
            stream: true,
          })
          .withResponse();
        id = response.headers.get('x-request-id') ?? '';
        for await (const chunk of stream) if (chunk.choices[0]?.delta.content) tokens++;
        return { id, kind: 'complete', tokens };
      } catch (error) {
        if (error instanceof APIConnectionError) return { id, kind: 'connection-error', tokens };
        return { id, kind: tokens > 0 ? 'stream-error' : 'http-error', tokens };
      }
    };
    const victim = upstreams[1] as GravityProcess;
    const outcomes: Array<Promise<Outcome>> = [];
    let killedAt = -1;
    for (let index = 0; index < 40; index++) {
      outcomes.push(send(index));
      if (index === 15) {
        victim.child.kill('SIGKILL');
        killedAt = index;
      }
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
    const results = await Promise.all(outcomes);
    // No client saw a bare connection error or an HTTP error: two replicas could still serve everyone.
    expect(
      results.filter((result) => result.kind === 'connection-error' || result.kind === 'http-error'),
    ).toEqual([]);
    for (const result of results) {
      if (result.kind === 'complete') expect(result.tokens).toBe(120);
    }
    // Requests sent after the kill all completed, on the survivors (retried before their first token).
    for (const result of results.slice(killedAt + 1)) expect(result.kind).toBe('complete');

    const records = await recordsOf(
      front.ledgerPath,
      results.map((result) => result.id),
    );
    expect(records).toHaveLength(results.length);
    const byId = new Map(records.map((record) => [record.requestId, record]));
    for (const result of results) {
      const record = byId.get(result.id) as UsageRecord;
      expect(record.status).toBe(200);
      if (result.kind === 'complete') expect(record).toMatchObject({ errorCode: null, partial: false });
      // Cut off mid-stream by the kill: an SSE error event reached the client, the ledger says partial.
      else expect(record).toMatchObject({ engine: 'up-1', partial: true });
    }
    for (const result of results.slice(killedAt + 1)) expect(byId.get(result.id)?.engine).not.toBe('up-1');
    const retried = records.filter((record) => JSON.parse(record.route ?? '{}').attempt > 1);
    const health = (await (await fetch(`${front.url}/v1/routing/replicas`)).json()) as {
      replicas: Array<{ id: string; health: { state: string } | null }>;
    };
    expect(health.replicas.find((replica) => replica.id === 'up-1')?.health?.state).toBe('open');
    // Either some request hit the dead replica and was retried, or health checks ejected it first.
    expect(retried.every((record) => JSON.parse(record.route ?? '{}').failed[0].startsWith('up-1'))).toBe(
      true,
    );
  }, 60_000);
});
