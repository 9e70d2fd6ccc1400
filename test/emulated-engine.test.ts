import { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../src/metering/usage-record.js';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { spawnGravity, startGravityProcess } from './support/gravity-process.js';

/**
 * Emulated replicas behind a live Gravity, driven by the official openai SDK. The replicas model fast
 * hardware (8B-class models in FP8 on H200s: a few ms per step) so the whole file runs in seconds.
 */
const replicaIds = ['emulated-0', 'emulated-1', 'emulated-2', 'emulated-3'];
const fastReplica = {
  type: 'emulated',
  hardware: 'h200',
  model: 'llama-3.1-8b',
  weightDtype: 'fp8',
  contextTokens: 2048,
  metering: { cost: { hourlyUsd: 3.5 } },
};

function fleetDocument(policy: string) {
  return {
    metering: { intervalMs: 20 },
    routing: { policy },
    engines: {
      ...Object.fromEntries(replicaIds.map((id) => [id, fastReplica])),
      solo: { ...fastReplica, model: 'qwen2.5-7b' },
    },
    models: { 'llama-3.1-8b': { engines: replicaIds }, 'qwen2.5-7b': { engine: 'solo' } },
  };
}

let harness: Harness;
beforeAll(async () => {
  harness = await startHarness(undefined, fleetDocument('least-loaded'));
});
afterAll(async () => {
  await harness?.close();
});

function engine(id: string) {
  const found = harness.server.gateway.engines.find((candidate) => candidate.id === id);
  if (!found) throw new Error(`no engine ${id}`);
  return found;
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function ledgerRecords(ledgerPath: string): Promise<UsageRecord[]> {
  const ledger = new SqliteLedgerStore(ledgerPath);
  try {
    return await ledger.records({});
  } finally {
    await ledger.close();
  }
}

async function recordOf(requestId: string): Promise<UsageRecord> {
  let record: UsageRecord | undefined;
  await waitFor(`the ledger record of ${requestId}`, async () => {
    record = (await ledgerRecords(harness.ledgerPath)).find((candidate) => candidate.requestId === requestId);
    return record !== undefined;
  });
  return record as UsageRecord;
}

describe('emulated replicas through the openai SDK', () => {
  it('lists a model served by four replicas once', async () => {
    const models = await harness.client.models.list();
    expect(models.data.map((model) => model.id).sort()).toEqual(['llama-3.1-8b', 'qwen2.5-7b']);
  });

  it('answers a chat with synthetic text, usage from the engine and a modelled energy figure', async () => {
    const { data: completion, response } = await harness.client.chat.completions
      .create({
        model: 'llama-3.1-8b',
        messages: [{ role: 'user', content: 'Explain continuous batching in one paragraph.' }],
        max_tokens: 24,
      })
      .withResponse();
    const text = completion.choices[0]?.message.content ?? '';
    expect(text.trim().split(' ')).toHaveLength(24);
    expect(text).toMatch(/^( [A-Za-z]+\.?)+$/);
    expect(completion.choices[0]?.finish_reason).toBe('length');
    expect(completion.usage).toMatchObject({
      prompt_tokens: Math.ceil('Explain continuous batching in one paragraph.'.length / 4),
      completion_tokens: 24,
      prompt_tokens_details: { cached_tokens: 0 },
    });
    expect(response.headers.get('x-gravity-energy-source')).toBe('estimated:performance-model');
    const record = await recordOf(response.headers.get('x-request-id') ?? '');
    expect(record).toMatchObject({
      status: 200,
      usageSource: 'engine',
      energySource: 'estimated:performance-model',
      costSource: 'amortized-hourly',
    });
    expect(replicaIds).toContain(record.engine);
    expect(record.energyJoules).toBeGreaterThan(0);
  });

  it('streams one chunk per token and ends with the usage chunk', async () => {
    const stream = await harness.client.chat.completions.create({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'Stream me some words.' }],
      max_tokens: 16,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const contentChunks = chunks.filter((chunk) => (chunk.choices[0]?.delta.content ?? '') !== '');
    expect(contentChunks).toHaveLength(16);
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe('length');
    expect(chunks.at(-1)?.usage).toMatchObject({ completion_tokens: 16, prompt_tokens: 6 });
  });

  it('stops on its own with finish_reason stop when max_tokens is absent', async () => {
    const completion = await harness.client.chat.completions.create({
      model: 'qwen2.5-7b',
      messages: [{ role: 'user', content: 'Say something short.' }],
      seed: 8, // draws a short answer
    });
    expect(completion.choices[0]?.finish_reason).toBe('stop');
    const completionTokens = completion.usage?.completion_tokens ?? 0;
    expect(completionTokens).toBeGreaterThan(0);
    expect(completion.choices[0]?.message.content?.trim().split(' ')).toHaveLength(completionTokens);
  });

  it('reports cached_tokens when a long prompt is repeated on the same replica', async () => {
    const system = 'You are a meticulous assistant for questions about GPU inference. '.repeat(16);
    const ask = () =>
      harness.client.chat.completions.create({
        model: 'qwen2.5-7b',
        messages: [
          { role: 'system', content: system },
          { role: 'user', content: 'What limits decode speed?' },
        ],
        max_tokens: 2,
      });
    const first = await ask();
    const second = await ask();
    expect(first.usage?.prompt_tokens_details?.cached_tokens).toBe(0);
    const cached = second.usage?.prompt_tokens_details?.cached_tokens ?? 0;
    expect(cached).toBeGreaterThan((second.usage?.prompt_tokens ?? 0) / 2);
    expect(cached).toBeLessThan(second.usage?.prompt_tokens ?? 0);
  });

  it('rejects a request beyond the context window with context_length_exceeded', async () => {
    const error = await harness.client.chat.completions
      .create({ model: 'llama-3.1-8b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4000 })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).status).toBe(400);
    expect((error as APIError).code).toBe('context_length_exceeded');
    expect((error as APIError).message).toContain('maximum context length is 2048 tokens');
  });

  it('frees the replica when the client disconnects, and records the request as 499', async () => {
    const controller = new AbortController();
    const { data: stream, response } = await harness.client.chat.completions
      .create(
        {
          model: 'qwen2.5-7b',
          messages: [{ role: 'user', content: 'Talk for a long time.' }],
          max_tokens: 1500,
          stream: true,
        },
        { signal: controller.signal },
      )
      .withResponse();
    let chunks = 0;
    for await (const _chunk of stream) if (++chunks === 5) controller.abort();
    await waitFor('the replica to be idle', () => engine('solo').load().slotsBusy === 0, 2000);
    expect(engine('solo').load()).toMatchObject({ slotsBusy: 0, waiting: 0, kvUsedFraction: 0 });
    const record = await recordOf(response.headers.get('x-request-id') ?? '');
    expect(record).toMatchObject({ status: 499, errorCode: 'cancelled', engine: 'solo' });
    expect(record.completionTokens).toBeLessThan(100);
  });

  it('spreads concurrent requests over the four replicas (least-loaded)', async () => {
    const before = new Set((await ledgerRecords(harness.ledgerPath)).map((record) => record.requestId));
    await Promise.all(
      Array.from({ length: 8 }, (_, index) =>
        harness.client.chat.completions.create({
          model: 'llama-3.1-8b',
          messages: [{ role: 'user', content: `Question ${index}` }],
          max_tokens: 40,
        }),
      ),
    );
    let fresh: UsageRecord[] = [];
    await waitFor('eight ledger records', async () => {
      fresh = (await ledgerRecords(harness.ledgerPath)).filter((record) => !before.has(record.requestId));
      return fresh.length === 8;
    });
    const perEngine = new Map<string, number>();
    for (const record of fresh)
      perEngine.set(record.engine ?? '', (perEngine.get(record.engine ?? '') ?? 0) + 1);
    // Least-loaded sees the earlier requests running, so each replica takes some and none takes most.
    expect([...perEngine.keys()].sort()).toEqual(replicaIds);
    expect(Math.max(...perEngine.values())).toBeLessThanOrEqual(3);
  });

  it('exposes vLLM-named metrics per emulated engine on /metrics', async () => {
    await waitFor('every replica idle', () => replicaIds.every((id) => engine(id).load().slotsBusy === 0));
    const text = await (await fetch(`${harness.url}/metrics`)).text();
    const value = (name: string, engineId: string) => {
      const pattern = new RegExp(
        `^${name}\\{model_name="([^"]+)",engine="${engineId}"\\} ([0-9.e+-]+)$`,
        'm',
      );
      const match = pattern.exec(text);
      if (!match) throw new Error(`${name} for ${engineId} is missing`);
      return { model: match[1], value: Number(match[2]) };
    };
    expect(text).toContain('# TYPE vllm:prompt_tokens_total counter');
    expect(text).toContain('# TYPE vllm:kv_cache_usage_perc gauge');
    let generated = 0;
    for (const id of replicaIds) {
      expect(value('vllm:num_requests_running', id)).toEqual({ model: 'llama-3.1-8b', value: 0 });
      expect(value('vllm:num_requests_waiting', id).value).toBe(0);
      // Idle replicas hold no blocks (finished prompts stay cached but are free to evict).
      expect(value('vllm:kv_cache_usage_perc', id).value).toBe(0);
      expect(value('vllm:prompt_tokens_total', id).value).toBeGreaterThan(0);
      expect(value('vllm:num_preemptions_total', id).value).toBe(0);
      generated += value('vllm:generation_tokens_total', id).value;
    }
    // 24 + 16 + 8 × 40 completion tokens went to the four replicas.
    expect(generated).toBe(24 + 16 + 8 * 40);
    expect(value('vllm:prefix_cache_hits_total', 'solo').value).toBeGreaterThan(0);
    expect(value('vllm:prefix_cache_queries_total', 'solo').value).toBeGreaterThan(
      value('vllm:prefix_cache_hits_total', 'solo').value,
    );
    // A second scrape does not double-count.
    const again = await (await fetch(`${harness.url}/metrics`)).text();
    expect(again).toMatch(/^vllm:generation_tokens_total\{model_name="llama-3.1-8b",engine="emulated-0"\} /m);
    const sum = [
      ...again.matchAll(/^vllm:generation_tokens_total\{model_name="llama-3.1-8b",[^}]*\} (\d+)$/gm),
    ]
      .map((match) => Number(match[1]))
      .reduce((total, tokens) => total + tokens, 0);
    expect(sum).toBe(generated);
  });
});

describe('round-robin routing', () => {
  it('sends consecutive requests to each replica in turn', async () => {
    const roundRobin = await startHarness(undefined, fleetDocument('round-robin'));
    try {
      const ids: string[] = [];
      for (let index = 0; index < 8; index++) {
        const { response } = await roundRobin.client.chat.completions
          .create({ model: 'llama-3.1-8b', messages: [{ role: 'user', content: 'next' }], max_tokens: 1 })
          .withResponse();
        ids.push(response.headers.get('x-request-id') ?? '');
      }
      const records = await ledgerRecords(roundRobin.ledgerPath);
      const engines = ids.map((id) => records.find((record) => record.requestId === id)?.engine);
      expect(engines).toEqual([...replicaIds, ...replicaIds]);
    } finally {
      await roundRobin.close();
    }
  });
});

describe('gravity serve --emulate', () => {
  it('serves a fleet of emulated replicas and says in its log what it emulates', async () => {
    const gravity = await startGravityProcess(['--emulate', 'h200:qwen2.5-7b:2', '--log-level', 'info']);
    try {
      const emulating =
        /2 emulated replicas of qwen2\.5-7b = qwen2\.5-7b on 1× h200 \(vllm-v1\): \d+ KV blocks/;
      // Log lines are written asynchronously: the listening line can come first.
      await waitFor('the emulation log line', () => emulating.test(gravity.stdout()));
      expect(gravity.stdout()).toContain('models=qwen2.5-7b');
      const response = await fetch(`${gravity.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'qwen2.5-7b', prompt: 'Once upon a time', max_tokens: 5 }),
      });
      const body = (await response.json()) as { usage: { completion_tokens: number } };
      expect(body.usage.completion_tokens).toBe(5);
    } finally {
      gravity.child.kill('SIGTERM');
      await gravity.exited;
    }
  });

  it('refuses to start, exit code 2, when the model does not fit the emulated hardware', async () => {
    const run = spawnGravity(['serve', '--port', '0', '--emulate', 'l4:llama-3.1-70b:2']);
    expect((await run.exited).code).toBe(2);
    expect(run.stderr()).toContain(
      'engines.emulated-0: llama-3.1-70b (141.2 GB of weights) does not fit 1× l4 (24 GB); use more devices per replica (and 1 more like it)',
    );
  });
});
