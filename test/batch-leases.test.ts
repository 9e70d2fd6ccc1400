import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI, { toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFile } from './support/config-file.js';
import { type GravityProcess, startGravityProcess } from './support/gravity-process.js';
import { type PostgresServer, startPostgres } from './support/postgres-server.js';

/**
 * The batch queue shared by three `gravity serve` replicas through PostgreSQL (`batch.store` follows
 * `ledger.store: postgres`): a batch created on one replica is visible on all; when the replica running
 * it is killed with SIGKILL, another takes it over once the lease lapses and runs the lines without an
 * outcome; a cancel accepted by one replica stops the lines running on another.
 *
 * Every replica reaches the engine (a counting OpenAI-compatible upstream in this process) on a port of
 * its own, so the upstream knows which replica sent each request, when it started, and whether its
 * answer was delivered whole or cut off by the kill.
 */
const leaseMs = 2000;
const lineMs = 250;

interface Attempt {
  replica: number;
  startedAt: number;
  /** When the answer's last byte went out; null: still open, or cut off. */
  completedAt: number | null;
  aborted: boolean;
  /** When the upstream's side of the exchange closed (answered, or cut off). */
  endedAt: number | null;
}

/** The line an upstream request is for: its prompt says `line-N`. */
const attempts = new Map<string, Attempt[]>();
const upstreams: Server[] = [];
const upstreamPorts: number[] = [];

function answer(replica: number, request: IncomingMessage, response: ServerResponse): void {
  if (request.method !== 'POST') {
    // The engine's model catalogue and health probes.
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(
      JSON.stringify({ object: 'list', data: [{ id: 'counted', object: 'model', owned_by: 'test' }] }),
    );
    return;
  }
  let text = '';
  request.on('data', (chunk) => {
    text += chunk;
  });
  request.on('end', () => {
    const body = JSON.parse(text) as { messages?: Array<{ content: string }>; stream?: boolean };
    const line = /line-\d+/.exec(body.messages?.[0]?.content ?? '')?.[0] ?? 'unknown';
    const attempt: Attempt = {
      replica,
      startedAt: Date.now(),
      completedAt: null,
      aborted: false,
      endedAt: null,
    };
    attempts.set(line, [...(attempts.get(line) ?? []), attempt]);
    response.on('close', () => {
      attempt.endedAt = Date.now();
      if (attempt.completedAt === null) attempt.aborted = true;
    });
    // Lines take different times, so that the kill does not find every line at the same step.
    const delay = lineMs + (Number(line.slice(5)) % 5) * 40;
    setTimeout(() => {
      if (response.destroyed) return;
      const usage = { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 };
      const created = Math.floor(Date.now() / 1000);
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (delta: object, finish: string | null, withUsage = false) =>
        `data: ${JSON.stringify({
          id: `chatcmpl-${line}`,
          object: 'chat.completion.chunk',
          created,
          model: 'counted',
          choices: withUsage ? [] : [{ index: 0, delta, finish_reason: finish }],
          ...(withUsage ? { usage } : {}),
        })}\n\n`;
      response.end(
        `${chunk({ role: 'assistant', content: `done ${line}` }, null)}${chunk({}, 'stop')}${chunk({}, null, true)}data: [DONE]\n\n`,
        () => {
          attempt.completedAt = Date.now();
        },
      );
    }, delay);
  });
}

let database: PostgresServer;
let ledgerUrl: string;
const replicas: GravityProcess[] = [];

async function serve(replica: number): Promise<GravityProcess> {
  const config = configFile(`engines:
  counted: { type: openai-upstream, baseUrl: 'http://127.0.0.1:${upstreamPorts[replica]}/v1' }
models:
  counted: { engine: counted }
batch: { leaseMs: ${leaseMs}, maxConcurrentLines: 4 }
`);
  return startGravityProcess(['--config', config], { GRAVITY_LEDGER_URL: ledgerUrl });
}

beforeAll(async () => {
  database = await startPostgres();
  ledgerUrl = await database.createDatabase();
  for (let replica = 0; replica < 3; replica++) {
    const server = createServer((request, response) => answer(replica, request, response));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    upstreams.push(server);
    upstreamPorts.push((server.address() as AddressInfo).port);
  }
  for (let replica = 0; replica < 3; replica++) replicas.push(await serve(replica));
}, 120_000);

afterAll(async () => {
  for (const gateway of replicas) {
    if (gateway.child.exitCode === null && gateway.child.signalCode === null) gateway.child.kill('SIGTERM');
    await gateway.exited;
  }
  for (const server of upstreams) {
    server.closeAllConnections();
    server.close();
  }
  await database?.close();
});

const client = (replica: GravityProcess) =>
  new OpenAI({ baseURL: `${replica.url}/v1`, apiKey: 'unused', maxRetries: 0 });

function inputFile(prefix: string, lines: number): string {
  return Array.from({ length: lines }, (_, index) =>
    JSON.stringify({
      custom_id: `${prefix}-${index}`,
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model: 'counted', messages: [{ role: 'user', content: `Do line-${index} of ${prefix}.` }] },
    }),
  ).join('\n');
}

async function createBatch(on: GravityProcess, prefix: string, lines: number): Promise<string> {
  const file = await client(on).files.create({
    file: await toFile(Buffer.from(inputFile(prefix, lines)), `${prefix}.jsonl`),
    purpose: 'batch',
  });
  const batch = await client(on).batches.create({
    input_file_id: file.id,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
  });
  return batch.id;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const finished = (batch: Batch) =>
  ['completed', 'failed', 'cancelled', 'expired'].includes(batch.status) ? batch : undefined;

describe('a batch queue shared by three replicas through PostgreSQL', () => {
  it('after kill -9 of the replica running a batch, another finishes it: no line lost, none run twice', async () => {
    const lines = 40;
    attempts.clear();
    const batchId = await createBatch(replicas[0] as GravityProcess, 'kill', lines);
    // Any replica answers for it at once.
    expect((await client(replicas[2] as GravityProcess).batches.retrieve(batchId)).id).toBe(batchId);

    // Kill the replica that runs it when 8 lines are done and others are in flight.
    await waitFor('8 lines done on replica 0', async () => {
      const done = [...attempts.values()].flat().filter((attempt) => attempt.completedAt !== null);
      return done.length >= 8 ? true : undefined;
    });
    const killedAt = Date.now();
    replicas[0]?.child.kill('SIGKILL');
    await replicas[0]?.exited;

    const survivor = client(replicas[1] as GravityProcess);
    const batch = await waitFor('the batch to finish elsewhere', async () =>
      finished(await survivor.batches.retrieve(batchId)),
    );
    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toEqual({ total: lines, completed: lines, failed: 0 });
    const output = (await (await survivor.files.content(batch.output_file_id as string)).text())
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { custom_id: string; response: { status_code: number } });
    // Every line once in the output, each answered.
    expect(output.map((line) => line.custom_id).sort()).toEqual(
      Array.from({ length: lines }, (_, index) => `kill-${index}`).sort(),
    );
    expect(new Set(output.map((line) => line.response.status_code))).toEqual(new Set([200]));

    // The upstream's view: the lines in flight at the kill were cut off and ran again elsewhere; the others
    // ran once. A second run of a line that replica 0 had answered whole can only come from the moment
    // between its answer and its outcome's commit, right before the kill.
    let cutAndRerun = 0;
    for (const [line, runs] of attempts) {
      const delivered = runs.filter((attempt) => attempt.completedAt !== null);
      expect(delivered.length, `${line}: ${JSON.stringify(runs)}`).toBeGreaterThanOrEqual(1);
      for (const early of delivered.slice(0, -1)) {
        expect(early.replica, line).toBe(0);
        // Milliseconds on a quiet machine; a loaded one may take longer to commit, never a whole second.
        expect(killedAt - (early.completedAt as number), line).toBeLessThan(1000);
      }
      if (runs.some((attempt) => attempt.aborted)) cutAndRerun++;
      // Never two runs at once: a later run starts after the earlier one ended (or was cut), elsewhere.
      for (let index = 1; index < runs.length; index++) {
        const [earlier, later] = [runs[index - 1] as Attempt, runs[index] as Attempt];
        expect(later.replica, line).not.toBe(0);
        expect(later.startedAt, line).toBeGreaterThanOrEqual(earlier.endedAt as number);
      }
    }
    expect(cutAndRerun).toBeGreaterThan(0);
    expect(attempts.size).toBe(lines);

    // The ledger (the same PostgreSQL): one completed record per delivered run.
    const sql = postgres(ledgerUrl, { max: 1, onnotice: () => {} });
    try {
      const [row] = await sql<Array<{ count: string }>>`
        SELECT count(*) FROM usage_records WHERE tier = 'batch' AND status = 200`;
      const delivered = [...attempts.values()].flat().filter((attempt) => attempt.completedAt !== null);
      expect(Number(row?.count)).toBeLessThanOrEqual(delivered.length);
      expect(Number(row?.count)).toBeGreaterThanOrEqual(lines);
    } finally {
      await sql.end();
    }
  }, 90_000);

  it('stops a batch running on one replica within a second of a cancel accepted by another', async () => {
    attempts.clear();
    const runner = replicas[1] as GravityProcess;
    const batchId = await createBatch(runner, 'cancel', 60);
    await waitFor('lines running', async () => (attempts.size >= 4 ? true : undefined));
    const cancelledAt = Date.now();
    await client(replicas[2] as GravityProcess).batches.cancel(batchId);
    const batch = await waitFor('the cancel to land', async () =>
      finished(await client(replicas[2] as GravityProcess).batches.retrieve(batchId)),
    );
    expect(batch.status).toBe('cancelled');
    expect(Date.now() - cancelledAt).toBeLessThan(3000);
    const started = attempts.size;
    await new Promise((resolve) => setTimeout(resolve, 2 * lineMs));
    // Nothing started after the cancel landed; the runner was replica 1 alone.
    expect(attempts.size).toBe(started);
    expect(new Set([...attempts.values()].flat().map((attempt) => attempt.replica))).toEqual(new Set([1]));
    expect(started).toBeLessThan(60);
  }, 60_000);
});
