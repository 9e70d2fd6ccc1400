import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI, { APIError, toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteKeyStore } from '../src/admission/sqlite-key-store.js';
import { type CreateKeyOptions, createKey, revokeKey } from '../src/cli/keys-command.js';
import { loadConfig } from '../src/config/load-config.js';
import { type Clock, systemClock } from '../src/core/clock.js';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../src/metering/usage-record.js';
import type { Sleep } from '../src/pipeline/request-pipeline.js';
import { type GravityServer, startGravityServer } from '../src/server/gravity-server.js';
import { type Harness, startHarness } from './support/gravity-harness.js';

/**
 * The Batch API end to end with the official openai SDK, against emulated replicas of fast hardware (a
 * few ms per token) so a batch finishes in well under a second.
 */
const fastReplica = {
  type: 'emulated',
  hardware: 'h200',
  model: 'llama-3.1-8b',
  weightDtype: 'fp8',
  metering: { cost: { hourlyUsd: 3.5 } },
};
const document = {
  metering: { intervalMs: 20 },
  engines: { 'emulated-0': fastReplica, 'emulated-1': fastReplica },
  models: { 'llama-3.1-8b': { engines: ['emulated-0', 'emulated-1'] } },
};

let harness: Harness;
beforeAll(async () => {
  harness = await startHarness(undefined, document);
});
afterAll(async () => {
  await harness?.close();
});

interface InputLine {
  custom_id?: string;
  method?: string;
  url?: string;
  body?: Record<string, unknown>;
}

function chatLine(customId: string, body: Record<string, unknown> = {}): InputLine {
  return {
    custom_id: customId,
    method: 'POST',
    url: '/v1/chat/completions',
    body: {
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: `Question ${customId}` }],
      max_tokens: 4,
      ...body,
    },
  };
}

function jsonl(lines: readonly (InputLine | string)[]): string {
  return `${lines.map((line) => (typeof line === 'string' ? line : JSON.stringify(line))).join('\n')}\n`;
}

async function upload(client: OpenAI, text: string) {
  return client.files.create({ file: await toFile(Buffer.from(text), 'in.jsonl'), purpose: 'batch' });
}

async function submit(
  client: OpenAI,
  text: string,
  endpoint: '/v1/chat/completions' | '/v1/completions' = '/v1/chat/completions',
) {
  const file = await upload(client, text);
  return client.batches.create({ input_file_id: file.id, endpoint, completion_window: '24h' });
}

async function waitForBatch(
  client: OpenAI,
  batchId: string,
  done: (batch: Batch) => boolean,
  timeoutMs = 10_000,
): Promise<Batch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const batch = await client.batches.retrieve(batchId);
    if (done(batch)) return batch;
    if (Date.now() > deadline) throw new Error(`batch ${batchId} is still ${batch.status}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const terminal = (batch: Batch) => ['completed', 'failed', 'cancelled', 'expired'].includes(batch.status);

interface ResultLine {
  id: string;
  custom_id: string | null;
  response: { status_code: number; request_id: string; body: Record<string, unknown> } | null;
  error: { code: string; message: string } | null;
}

async function resultLines(client: OpenAI, fileId: string | null | undefined): Promise<ResultLine[]> {
  if (!fileId) return [];
  const text = await (await client.files.content(fileId)).text();
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as ResultLine);
}

describe('the Batch API through the openai SDK', () => {
  it('runs a batch to completion: output and error files, request counts, usage, one ledger record per line', async () => {
    const input = jsonl([
      chatLine('first'),
      chatLine('second', { max_tokens: 6 }),
      '{"custom_id": "broken", this is not json',
      chatLine('no-such-model', { model: 'gpt-unknown' }),
      chatLine('bad-body', { temperature: 7 }),
      chatLine('third'),
    ]);
    const file = await upload(harness.client, input);
    expect(file).toMatchObject({
      object: 'file',
      purpose: 'batch',
      filename: 'in.jsonl',
      bytes: Buffer.byteLength(input),
      status: 'processed',
    });
    expect(file.id).toMatch(/^file-/);
    expect(await harness.client.files.retrieve(file.id)).toEqual(file);
    expect(await (await harness.client.files.content(file.id)).text()).toBe(input);

    const created = await harness.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      metadata: { purpose: 'nightly eval' },
    });
    expect(created).toMatchObject({
      object: 'batch',
      status: 'validating',
      endpoint: '/v1/chat/completions',
      input_file_id: file.id,
      completion_window: '24h',
      output_file_id: null,
      error_file_id: null,
      metadata: { purpose: 'nightly eval' },
    });
    expect(created.id).toMatch(/^batch_/);
    expect(created.expires_at).toBe((created.created_at ?? 0) + 24 * 3600);

    const batch = await waitForBatch(harness.client, created.id, terminal);
    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toEqual({ total: 6, completed: 3, failed: 3 });
    expect(batch.errors).toBeNull();
    for (const stamp of ['in_progress_at', 'finalizing_at', 'completed_at'] as const)
      expect(batch[stamp]).toBeGreaterThanOrEqual(created.created_at);
    expect(batch.usage).toMatchObject({ output_tokens: 4 + 6 + 4 });

    const output = await resultLines(harness.client, batch.output_file_id);
    expect(output.map((line) => line.custom_id).sort()).toEqual(['first', 'second', 'third']);
    for (const line of output) {
      expect(line.id).toMatch(/^batch_req_/);
      expect(line.error).toBeNull();
      expect(line.response?.status_code).toBe(200);
      expect(line.response?.body).toMatchObject({ object: 'chat.completion', model: 'llama-3.1-8b' });
      expect(line.response?.body.id).toBe(`chatcmpl-${line.response?.request_id}`);
    }
    const second = output.find((line) => line.custom_id === 'second');
    expect(second?.response?.body.usage).toMatchObject({ completion_tokens: 6 });

    const failures = await resultLines(harness.client, batch.error_file_id);
    const byId = new Map(failures.map((line) => [line.custom_id, line]));
    expect(failures).toHaveLength(3);
    // A line that is not JSON never ran: response null, the reason in error.
    expect(byId.get(null)).toMatchObject({ response: null, error: { code: 'invalid_json_line' } });
    // Lines that ran and failed carry their HTTP answer, as OpenAI writes them.
    expect(byId.get('no-such-model')).toMatchObject({
      error: null,
      response: { status_code: 404, body: { error: { code: 'model_not_found' } } },
    });
    expect(byId.get('bad-body')).toMatchObject({
      error: null,
      response: { status_code: 400, body: { error: { param: 'temperature' } } },
    });

    const files = await harness.client.files.list({ purpose: 'batch_output' });
    const outputFile = files.data.find((entry) => entry.id === batch.output_file_id);
    expect(outputFile).toMatchObject({ purpose: 'batch_output', filename: `${batch.id}_output.jsonl` });

    // Five lines reached the pipeline (the malformed one did not): five ledger records, tier batch.
    const requestIds = [...output, ...failures].flatMap((line) =>
      line.response ? [line.response.request_id] : [],
    );
    expect(requestIds).toHaveLength(5);
    const ledger = new SqliteLedgerStore(harness.ledgerPath);
    try {
      const records = (await ledger.records({})).filter((record) => requestIds.includes(record.requestId));
      expect(records).toHaveLength(5);
      for (const record of records)
        expect(record).toMatchObject({ tier: 'batch', tenant: 'anonymous', stream: false });
      expect(records.filter((record) => record.status === 200)).toHaveLength(3);
    } finally {
      await ledger.close();
    }
  });

  it('runs /v1/completions lines as legacy completions', async () => {
    const created = await submit(
      harness.client,
      jsonl([
        {
          custom_id: 'legacy',
          method: 'POST',
          url: '/v1/completions',
          body: { model: 'llama-3.1-8b', prompt: 'Once upon a time', max_tokens: 3 },
        },
      ]),
      '/v1/completions',
    );
    const batch = await waitForBatch(harness.client, created.id, terminal);
    expect(batch).toMatchObject({
      status: 'completed',
      request_counts: { total: 1, completed: 1, failed: 0 },
    });
    const [line] = await resultLines(harness.client, batch.output_file_id);
    expect(line?.response?.body).toMatchObject({
      object: 'text_completion',
      usage: { completion_tokens: 3 },
    });
    expect(batch.error_file_id).toBeNull();
  });

  it('accepts the same bodies as the HTTP edge: multi-turn as the SDK returns it, tools, structured output', async () => {
    const weather = {
      type: 'function',
      function: {
        name: 'get_weather',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    };
    const created = await submit(
      harness.client,
      jsonl([
        chatLine('multi-turn', {
          messages: [
            { role: 'user', content: 'hi' },
            { role: 'assistant', content: 'hello', refusal: null, annotations: [] },
            { role: 'user', content: [{ type: 'text', text: 'again' }] },
          ],
          seed: 2 ** 60,
          prompt_cache_key: 'k',
        }),
        chatLine('tools', { tools: [weather], tool_choice: 'required', max_tokens: 64 }),
        chatLine('json', {
          max_tokens: 64,
          response_format: {
            type: 'json_schema',
            json_schema: {
              name: 'answer',
              strict: true,
              schema: {
                type: 'object',
                properties: { answer: { type: 'string' } },
                required: ['answer'],
                additionalProperties: false,
              },
            },
          },
        }),
      ]),
    );
    const batch = await waitForBatch(harness.client, created.id, terminal);
    expect(batch.request_counts).toMatchObject({ total: 3, completed: 3, failed: 0 });
    const byId = new Map(
      (await resultLines(harness.client, batch.output_file_id)).map((line) => [line.custom_id, line]),
    );
    const toolLine = byId.get('tools')?.response?.body as {
      choices: Array<{
        finish_reason: string;
        message: { tool_calls: Array<{ function: { name: string; arguments: string } }> };
      }>;
    };
    expect(toolLine.choices[0]?.finish_reason).toBe('tool_calls');
    const call = toolLine.choices[0]?.message.tool_calls[0];
    expect(call?.function.name).toBe('get_weather');
    expect(typeof JSON.parse(call?.function.arguments ?? '').city).toBe('string');
    const jsonLine = byId.get('json')?.response?.body as { choices: Array<{ message: { content: string } }> };
    expect(typeof JSON.parse(jsonLine.choices[0]?.message.content ?? '').answer).toBe('string');
    expect(byId.get('multi-turn')?.response?.status_code).toBe(200);
  });

  it('fails validation when a custom_id repeats, and runs nothing', async () => {
    const created = await submit(harness.client, jsonl([chatLine('a'), chatLine('b'), chatLine('a')]));
    const batch = await waitForBatch(harness.client, created.id, terminal);
    expect(batch).toMatchObject({
      status: 'failed',
      request_counts: { total: 0, completed: 0, failed: 0 },
      output_file_id: null,
      error_file_id: null,
      errors: {
        object: 'list',
        data: [{ code: 'duplicate_custom_id', line: 3, param: 'custom_id' }],
      },
    });
    expect(batch.failed_at).toBeGreaterThan(0);
  });

  it('cancels a running batch: lines stop, finished ones are in the output, the rest reported cancelled', async () => {
    const lines = Array.from({ length: 10 }, (_, index) =>
      chatLine(`long-${index}`, { max_tokens: index === 0 ? 2 : 5000 }),
    );
    const created = await submit(harness.client, jsonl(lines));
    await waitForBatch(harness.client, created.id, (batch) => (batch.request_counts?.completed ?? 0) >= 1);
    const cancelling = await harness.client.batches.cancel(created.id);
    expect(['cancelling', 'cancelled']).toContain(cancelling.status);
    expect(cancelling.cancelling_at).toBeGreaterThan(0);
    const batch = await waitForBatch(harness.client, created.id, terminal, 3000);
    expect(batch.status).toBe('cancelled');
    expect(batch.cancelled_at).toBeGreaterThan(0);
    expect(batch.request_counts).toEqual({ total: 10, completed: 1, failed: 0 });
    const output = await resultLines(harness.client, batch.output_file_id);
    const failures = await resultLines(harness.client, batch.error_file_id);
    expect(output.map((line) => line.custom_id)).toEqual(['long-0']);
    expect(failures).toHaveLength(9);
    for (const line of failures)
      expect(line).toMatchObject({ response: null, error: { code: 'batch_cancelled' } });
    // Every input line appears exactly once across the two files.
    expect([...output, ...failures].map((line) => line.custom_id).sort()).toEqual(
      lines.map((line) => line.custom_id).sort(),
    );
    // The replicas are free again at once: the aborted lines left them.
    for (const engine of harness.server.gateway.engines) expect(engine.load().slotsBusy).toBe(0);
    // A finished batch cannot be cancelled again, but cancelling twice is harmless.
    expect((await harness.client.batches.cancel(created.id)).status).toBe('cancelled');
  });

  it('lists batches newest first, page by page with after and limit', async () => {
    const ids: string[] = [];
    for (let index = 0; index < 3; index++)
      ids.push((await submit(harness.client, jsonl([chatLine(`page-${index}`)]))).id);
    const page = await harness.client.batches.list({ limit: 2 });
    expect(page.data.map((batch) => batch.id)).toEqual([ids[2], ids[1]]);
    expect(page.has_more).toBe(true);
    const next = await harness.client.batches.list({ limit: 2, after: ids[1] });
    expect(next.data[0]?.id).toBe(ids[0]);
    // The SDK's auto-pagination walks every page.
    const all: string[] = [];
    for await (const batch of harness.client.batches.list({ limit: 2 })) all.push(batch.id);
    expect(all.slice(0, 3)).toEqual([ids[2], ids[1], ids[0]]);
    expect(new Set(all).size).toBe(all.length);
    for (const id of ids) await waitForBatch(harness.client, id, terminal);
  });

  it('answers file and batch errors as OpenAI does', async () => {
    const notFound = await harness.client.files.retrieve('file-missing').catch((error: unknown) => error);
    expect(notFound).toBeInstanceOf(APIError);
    expect(notFound).toMatchObject({ status: 404, code: 'file_not_found' });
    const noBatch = await harness.client.batches.retrieve('batch_missing').catch((error: unknown) => error);
    expect(noBatch).toMatchObject({ status: 404, code: 'batch_not_found' });

    const wrongPurpose = await harness.client.files
      .create({ file: await toFile(Buffer.from('{}\n'), 'x.jsonl'), purpose: 'fine-tune' })
      .catch((error: unknown) => error);
    expect(wrongPurpose).toMatchObject({ status: 400, param: 'purpose' });

    const input = await upload(harness.client, jsonl([chatLine('x')]));
    const badEndpoint = await harness.client.batches
      .create({ input_file_id: input.id, endpoint: '/v1/moderations', completion_window: '24h' })
      .catch((error: unknown) => error);
    expect(badEndpoint).toMatchObject({ status: 400, param: 'endpoint' });
    const missingInput = await harness.client.batches
      .create({ input_file_id: 'file-nope', endpoint: '/v1/chat/completions', completion_window: '24h' })
      .catch((error: unknown) => error);
    expect(missingInput).toMatchObject({ status: 404, param: 'input_file_id' });

    const batch = await waitForBatch(
      harness.client,
      (
        await harness.client.batches.create({
          input_file_id: input.id,
          endpoint: '/v1/chat/completions',
          completion_window: '24h',
        })
      ).id,
      terminal,
    );
    const notCancellable = await harness.client.batches.cancel(batch.id).catch((error: unknown) => error);
    expect(notCancellable).toMatchObject({ status: 409, code: 'batch_not_cancellable' });
    // Files can be deleted once no unfinished batch reads them.
    expect(await harness.client.files.delete(input.id)).toEqual({
      id: input.id,
      object: 'file',
      deleted: true,
    });
    expect(await harness.client.files.retrieve(input.id).catch((error: unknown) => error)).toMatchObject({
      status: 404,
    });
  });

  it('refuses to delete the input file of a running batch', async () => {
    const created = await submit(harness.client, jsonl([chatLine('slow', { max_tokens: 5000 })]));
    const refused = await harness.client.files.delete(created.input_file_id).catch((error: unknown) => error);
    expect(refused).toMatchObject({ status: 409, code: 'file_in_use' });
    await harness.client.batches.cancel(created.id);
    await waitForBatch(harness.client, created.id, terminal);
  });

  it('refuses an upload over the file limit with 413', async () => {
    const limited = await startHarness((config) => {
      config.batch.fileLimitBytes = 1024;
    }, document);
    try {
      const error = await upload(limited.client, 'x'.repeat(4096)).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ status: 413, code: 'request_too_large' });
      expect((await limited.client.files.list()).data).toEqual([]);
    } finally {
      await limited.close();
    }
  });
});

describe('batch expiry', () => {
  it('expires a batch past its 24 h window, reporting the lines that did not run', async () => {
    let offsetMs = 0;
    const clock = { nowMs: () => systemClock.nowMs(), epochMs: () => systemClock.epochMs() + offsetMs };
    const config = loadConfig({ document, port: 0, host: '127.0.0.1', logLevel: 'silent' }, {});
    config.dataDir = mkdtempSync(path.join(tmpdir(), 'gravity-batch-expiry-'));
    config.batch.maxConcurrentLines = 1;
    const server = await startGravityServer(config, { clock });
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    try {
      const created = await submit(
        client,
        jsonl([
          chatLine('quick', { max_tokens: 1 }),
          chatLine('slow', { max_tokens: 5000 }),
          chatLine('never'),
        ]),
      );
      await waitForBatch(client, created.id, (batch) => (batch.request_counts?.completed ?? 0) === 1);
      offsetMs = 25 * 3600 * 1000;
      const batch = await waitForBatch(client, created.id, terminal, 3000);
      expect(batch).toMatchObject({
        status: 'expired',
        request_counts: { total: 3, completed: 1, failed: 0 },
      });
      expect(batch.expired_at).toBeGreaterThanOrEqual(batch.expires_at ?? Number.POSITIVE_INFINITY);
      const failures = await resultLines(client, batch.error_file_id);
      expect(failures.map((line) => [line.custom_id, line.error?.code]).sort()).toEqual([
        ['never', 'batch_expired'],
        ['slow', 'batch_expired'],
      ]);
    } finally {
      await server.close();
    }
  });
});

describe('batches and files per tenant', () => {
  it('shows each tenant only its own files and batches, and runs lines as the owner', async () => {
    const keys: Record<string, string> = {};
    const keyed = await startHarness((config) => {
      // Keys exist before the server starts (it is never open) and are read on every request.
      config.auth.keyCacheMs = 0;
      const store = new SqliteKeyStore(config.auth.keysPath ?? '');
      try {
        keys.acme = createKey(store, { tenant: 'acme' }).key;
        keys.globex = createKey(store, { tenant: 'globex' }).key;
        keys.initech = createKey(store, { tenant: 'initech', tiers: 'default' }).key;
      } finally {
        store.close();
      }
    }, document);
    const clientFor = (apiKey: string) =>
      new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey, maxRetries: 0, timeout: 30_000 });
    const acme = clientFor(keys.acme ?? '');
    const globex = clientFor(keys.globex ?? '');
    const interactiveOnly = clientFor(keys.initech ?? '');
    try {
      const created = await submit(acme, jsonl([chatLine('mine')]));
      const batch = await waitForBatch(acme, created.id, terminal);
      expect(batch).toMatchObject({ status: 'completed', request_counts: { completed: 1 } });

      // To another tenant, acme's objects do not exist.
      const attempts: Record<string, () => Promise<unknown>> = {
        'files.retrieve': () => globex.files.retrieve(created.input_file_id),
        'files.content': () => globex.files.content(created.input_file_id),
        'files.delete': () => globex.files.delete(created.input_file_id),
        'batches.retrieve': () => globex.batches.retrieve(created.id),
        'batches.cancel': () => globex.batches.cancel(created.id),
        'batches.create': () =>
          globex.batches.create({
            input_file_id: created.input_file_id,
            endpoint: '/v1/chat/completions',
            completion_window: '24h',
          }),
      };
      for (const [name, attempt] of Object.entries(attempts)) {
        const outcome = await attempt().then(
          () => 'answered',
          (error: { status?: number }) => error.status,
        );
        expect([name, outcome]).toEqual([name, 404]);
      }
      expect((await globex.files.list()).data).toEqual([]);
      expect((await globex.batches.list()).data).toEqual([]);
      expect((await acme.batches.list()).data.map((entry) => entry.id)).toEqual([created.id]);
      expect((await acme.files.list()).data).toHaveLength(2); // the input and the output file

      // The line ran as acme: its ledger record says so.
      const [line] = await resultLines(acme, batch.output_file_id);
      const ledger = new SqliteLedgerStore(keyed.ledgerPath);
      try {
        const record = (await ledger.records({})).find(
          (candidate) => candidate.requestId === line?.response?.request_id,
        );
        expect(record).toMatchObject({ tenant: 'acme', tier: 'batch' });
      } finally {
        await ledger.close();
      }

      // A key without the batch tier may upload files but not create batches.
      const refused = await submit(interactiveOnly, jsonl([chatLine('x')])).catch((error: unknown) => error);
      expect(refused).toMatchObject({ status: 403, code: 'tier_not_allowed' });
    } finally {
      await keyed.close();
    }
  });
});

/** A server whose one key (tenant `acme`) has the given limits, with that key's openai client. */
async function startServerWithKey(
  limits: Omit<CreateKeyOptions, 'tenant'>,
  options: { clock?: Clock; sleep?: Sleep; maxConcurrentLines?: number } = {},
) {
  const config = loadConfig({ document, port: 0, host: '127.0.0.1', logLevel: 'silent' }, {});
  config.dataDir = mkdtempSync(path.join(tmpdir(), 'gravity-batch-limits-'));
  config.auth.keysPath = path.join(config.dataDir, 'keys.sqlite');
  if (options.maxConcurrentLines !== undefined) config.batch.maxConcurrentLines = options.maxConcurrentLines;
  const keys = new SqliteKeyStore(config.auth.keysPath);
  let created: ReturnType<typeof createKey>;
  let another: ReturnType<typeof createKey>;
  try {
    created = createKey(keys, { ...limits, tenant: 'acme' });
    // The same tenant's other key, without limits: it reads the tenant's batches whatever befalls the first.
    another = createKey(keys, { tenant: 'acme' });
  } finally {
    keys.close();
  }
  const server: GravityServer = await startGravityServer(config, {
    ...(options.clock && { clock: options.clock }),
    ...(options.sleep && { sleep: options.sleep }),
  });
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: created.key, maxRetries: 0 });
  return {
    server,
    client,
    tenantClient: new OpenAI({ baseURL: `${server.url}/v1`, apiKey: another.key, maxRetries: 0 }),
    keyId: created.record.id,
    keysPath: config.auth.keysPath,
    async ledgerRecords(): Promise<UsageRecord[]> {
      const ledger = new SqliteLedgerStore(path.join(config.dataDir, 'ledger.sqlite'));
      try {
        return await ledger.records({});
      } finally {
        await ledger.close();
      }
    },
  };
}

describe('batch lines and the limits of the key that created the batch', () => {
  it('fails every line too large for the key’s tokens per minute, saying why, and runs none', async () => {
    // The repro: a key limited to 3 requests and 2,000 tokens per minute, a 20-line batch of
    // 3,000-token requests. Before, all 20 ran.
    const { server, client, keyId, ledgerRecords } = await startServerWithKey({ rpm: 3, tpm: 2000 });
    try {
      const lines = Array.from({ length: 20 }, (_, index) => chatLine(`big-${index}`, { max_tokens: 3000 }));
      const created = await submit(client, jsonl(lines));
      const batch = await waitForBatch(client, created.id, terminal);
      expect(batch).toMatchObject({
        status: 'completed',
        request_counts: { total: 20, completed: 0, failed: 20 },
        output_file_id: null,
      });
      const failures = await resultLines(client, batch.error_file_id);
      expect(failures).toHaveLength(20);
      for (const line of failures) {
        expect(line.response?.status_code).toBe(429);
        const error = (line.response?.body as { error?: { message: string } } | undefined)?.error;
        expect(error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
        expect(error?.message).toMatch(
          /^Request too large for tokens per min \(TPM\) on key gk-[0-9a-f]+-[\w-]+\*\*\*: Limit 2000, Requested 30\d\d/,
        );
      }

      // One record per line, under the key that created the batch, and no engine ran any of them.
      const records = await ledgerRecords();
      expect(records).toHaveLength(20);
      for (const record of records) {
        expect(record).toMatchObject({
          tenant: 'acme',
          apiKeyId: keyId,
          tier: 'batch',
          status: 429,
          errorCode: 'rate_limit_exceeded',
          engine: null,
          completionTokens: 0,
        });
      }
      expect(new Set(records.map((record) => record.requestId))).toEqual(
        new Set(failures.map((line) => line.response?.request_id)),
      );
    } finally {
      await server.close();
    }
  });

  it('paces lines refused for requests per minute until every one runs, where an HTTP request is refused', async () => {
    // A minute of rate limit passes in milliseconds: sleeping moves the server's clock forward instead
    // of waiting. One line at a time, so the sleeps do not overlap.
    let offsetMs = 0;
    const clock: Clock = {
      nowMs: () => systemClock.nowMs() + offsetMs,
      epochMs: () => systemClock.epochMs() + offsetMs,
    };
    const sleepsMs: number[] = [];
    const sleep: Sleep = async (ms, signal) => {
      signal.throwIfAborted();
      sleepsMs.push(ms);
      offsetMs += ms;
    };
    const { server, client, keyId, ledgerRecords } = await startServerWithKey(
      { rpm: 2 },
      { clock, sleep, maxConcurrentLines: 1 },
    );
    try {
      const lines = Array.from({ length: 5 }, (_, index) => chatLine(`paced-${index}`));
      const created = await submit(client, jsonl(lines));
      const batch = await waitForBatch(client, created.id, terminal);
      expect(batch).toMatchObject({
        status: 'completed',
        request_counts: { total: 5, completed: 5, failed: 0 },
      });
      expect((await resultLines(client, batch.output_file_id)).map((line) => line.custom_id).sort()).toEqual(
        lines.map((line) => line.custom_id).sort(),
      );

      // Two lines fit the burst; each of the other three waited the 30 s the limiter asked for (rpm 2
      // refills one request every 30 s), not a guessed back-off.
      expect(sleepsMs.length).toBeGreaterThanOrEqual(3);
      for (const ms of sleepsMs) expect(ms).toBeLessThanOrEqual(30_000);
      expect(sleepsMs.reduce((sum, ms) => sum + ms, 0)).toBeGreaterThanOrEqual(3 * 30_000 - 100);

      // The waits left no records: one per line, each a success under the batch's key.
      const records = await ledgerRecords();
      expect(records).toHaveLength(5);
      for (const record of records)
        expect(record).toMatchObject({ apiKeyId: keyId, tier: 'batch', status: 200, errorCode: null });

      // The batch spent the key's requests: an HTTP request now is refused at once, as ever.
      const refused = await client.chat.completions
        .create({ model: 'llama-3.1-8b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })
        .catch((error: unknown) => error);
      expect(refused).toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
      expect((refused as APIError).message).toMatch(/requests per min \(RPM\)/);
    } finally {
      await server.close();
    }
  });

  it('stops running the lines of a batch whose key was revoked, each saying so', async () => {
    // rpm 1 makes the second line wait; while it waits, the key is revoked and the key cache outlived.
    let offsetMs = 0;
    const clock: Clock = {
      nowMs: () => systemClock.nowMs() + offsetMs,
      epochMs: () => systemClock.epochMs() + offsetMs,
    };
    let revoke = () => {};
    const sleep: Sleep = async (ms, signal) => {
      signal.throwIfAborted();
      revoke();
      offsetMs += ms;
    };
    const { server, client, tenantClient, keyId, keysPath, ledgerRecords } = await startServerWithKey(
      { rpm: 1 },
      { clock, sleep, maxConcurrentLines: 1 },
    );
    revoke = () => {
      const keys = new SqliteKeyStore(keysPath);
      try {
        revokeKey(keys, keyId);
      } finally {
        keys.close();
      }
    };
    try {
      const lines = ['first', 'second', 'third', 'fourth'].map((customId) => chatLine(customId));
      // The batch is created with the key still valid; its lines start at once.
      const created = await submit(client, jsonl(lines));
      const batch = await waitForBatch(tenantClient, created.id, terminal);
      // The first two lines had passed the key check before the revocation; the rest fail with 401.
      expect(batch).toMatchObject({
        status: 'completed',
        request_counts: { total: 4, completed: 2, failed: 2 },
      });
      const failures = await resultLines(tenantClient, batch.error_file_id);
      expect(failures.map((line) => line.custom_id).sort()).toEqual(['fourth', 'third']);
      for (const line of failures) {
        expect(line.response?.status_code).toBe(401);
        expect(line.response?.body).toMatchObject({
          error: { code: 'invalid_api_key', message: expect.stringMatching(/has been revoked/) },
        });
      }
      const records = await ledgerRecords();
      expect(records).toHaveLength(4);
      for (const record of records) expect(record.apiKeyId).toBe(keyId);
    } finally {
      await server.close();
    }
  });
});
