import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFile } from './support/config-file.js';
import { freeLoopbackPort } from './support/free-port.js';
import { type GravityProcess, spawnGravity, startGravityProcess } from './support/gravity-process.js';
import { type PostgresServer, startPostgres } from './support/postgres-server.js';

/**
 * `gravity serve`, `report` and `migrate` on a real PostgreSQL ledger: two gateway processes share one
 * database, and each sees the other's records and stored responses; a replica that cannot reach its ledger, or whose schema
 * is behind, does not start, and says why without printing the password.
 */
let server: PostgresServer;
const running: GravityProcess[] = [];

beforeAll(async () => {
  server = await startPostgres();
}, 60_000);

afterAll(async () => {
  for (const gateway of running) {
    gateway.child.kill('SIGTERM');
    await gateway.exited;
  }
  await server?.close();
});

/** The database URL with a password in it (the test cluster trusts loopback, so any password works). */
function withPassword(url: string): string {
  const parsed = new URL(url);
  parsed.password = 'hunter2';
  return parsed.toString();
}

async function chat(url: string, content: string): Promise<string> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gravity-tiny', messages: [{ role: 'user', content }], max_tokens: 3 }),
  });
  expect(response.status).toBe(200);
  await response.arrayBuffer();
  return response.headers.get('x-request-id') as string;
}

async function finished(run: ReturnType<typeof spawnGravity>) {
  const { code } = await run.exited;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

describe('a PostgreSQL ledger shared by two gateways', () => {
  it('holds both gateways records, and gravity report totals them from either', async () => {
    const url = withPassword(await server.createDatabase());
    const env = { GRAVITY_LEDGER_URL: url };
    const first = await startGravityProcess([], env);
    running.push(first);
    const second = await startGravityProcess([], env);
    running.push(second);
    const ids = [await chat(first.url, 'a b'), await chat(second.url, 'c d'), await chat(first.url, 'e f')];

    // The records were committed before each answer's last byte: they are there now.
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const rows = await sql<
        { request_id: string }[]
      >`SELECT request_id FROM usage_records ORDER BY request_id`;
      expect(rows.map((row) => row.request_id)).toEqual([...ids].sort());
    } finally {
      await sql.end();
    }

    const report = await finished(spawnGravity(['report', '--format', 'json', '--group-by', 'model'], env));
    expect(report.code, report.stderr).toBe(0);
    const totals = JSON.parse(report.stdout) as { data: Array<{ model: string; requests: number }> };
    expect(totals.data).toEqual([expect.objectContaining({ model: 'gravity-tiny', requests: 3 })]);

    // Stored responses live in the same database: a conversation begun on one gateway continues on the
    // other, which also retrieves and lists it.
    const respond = async (at: string, body: object) => {
      const response = await fetch(`${at}/v1/responses`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gravity-tiny', max_output_tokens: 3, ...body }),
      });
      const text = await response.text();
      expect(response.status, text).toBe(200);
      return JSON.parse(text) as { id: string; previous_response_id: string | null };
    };
    const opened = await respond(first.url, { input: 'Remember the word zebra.' });
    const continued = await respond(second.url, { input: 'Which word?', previous_response_id: opened.id });
    expect(continued.previous_response_id).toBe(opened.id);
    const retrieved = await fetch(`${second.url}/v1/responses/${opened.id}/input_items`);
    expect(retrieved.status).toBe(200);
    expect(JSON.stringify(await retrieved.json())).toContain('zebra');
  }, 120_000);
});

describe('a gateway whose ledger is not usable', () => {
  it('does not start when its PostgreSQL cannot be reached, and names the URL without its password', async () => {
    const port = await freeLoopbackPort();
    const url = `postgres://gravity:hunter2@127.0.0.1:${port}/gravity`;
    const dataDir = mkdtempSync(path.join(tmpdir(), 'gravity-process-'));
    const run = await finished(
      spawnGravity(['serve', '--port', '0', '--data-dir', dataDir], { GRAVITY_LEDGER_URL: url }),
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`postgres://gravity:***@127.0.0.1:${port}/gravity`);
    expect(run.stderr).not.toContain('hunter2');
    expect(run.stdout).not.toContain('listening');
  }, 60_000);

  it('with migrate: false, refuses a database that is behind until gravity migrate has run', async () => {
    const url = withPassword(await server.createDatabase());
    const env = { GRAVITY_LEDGER_URL: url };
    const config = configFile('ledger:\n  store: postgres\n  migrate: false\n');
    const dataDir = mkdtempSync(path.join(tmpdir(), 'gravity-process-'));

    const refused = await finished(
      spawnGravity(['serve', '--port', '0', '--data-dir', dataDir, '--config', config], env),
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('gravity migrate');
    expect(refused.stderr).not.toContain('hunter2');

    const migrated = await finished(spawnGravity(['migrate', '--config', config], env));
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(migrated.stdout).toMatch(/applied \S+/);
    expect(migrated.stdout).not.toContain('hunter2');
    const again = await finished(spawnGravity(['migrate', '--config', config], env));
    expect(again.stdout).toContain('is up to date');

    const gateway = await startGravityProcess(['--config', config], env);
    running.push(gateway);
    await chat(gateway.url, 'x y');
  }, 120_000);
});
