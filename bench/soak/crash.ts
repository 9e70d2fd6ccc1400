// Crash: `gravity serve` with its ledger in a file, under streamed and non-streamed load, killed with
// SIGKILL at seeded random moments (20 times by default) and restarted on the same data each time. The
// client logs every response it saw complete (its `x-request-id`); after each restart the ledger must
// hold each of them exactly once: nothing a client was served is lost to a crash, nothing is counted twice.
//   npm run crash -- --help
//   npm run crash -- --kills 3
// Runs the built CLI (bin/gravity.js, after `npm run build`) when dist/ exists, else the sources via tsx
// (`--tsx` forces that). The last line is `crash-result: <json>`, for test/ledger-durability.test.ts.

import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SeededRandom } from '../../src/core/seeded-random.js';
import { SqliteLedgerStore } from '../../src/metering/ledger/sqlite-ledger-store.js';
import { repoRoot } from '../support/ab-rounds.js';
import { ChildProcessGroup, startGravity } from '../support/child-processes.js';
import {
  columnsTable,
  flag,
  integer,
  printPreamble,
  readOptions,
  verdict,
} from '../support/report-format.js';

const options = readOptions(
  'crash',
  'kill -9 under load, restart, and check the ledger against what clients saw.',
  {
    kills: integer(20, 'SIGKILLs, each followed by a restart', { quick: 3 }),
    seed: integer(1, 'seed of the kill moments and the request mix'),
    minUptimeMs: integer(300, 'least time under load before a kill'),
    maxUptimeMs: integer(2500, 'most time under load before a kill', { quick: 1500 }),
    workers: integer(8, 'concurrent clients'),
    tsx: flag('run the sources through tsx even when dist/ is built'),
  },
);

const modelId = 'm';
const built = existsSync(path.join(repoRoot, 'dist/cli/main.js')) && !options.tsx;
const entry = built ? ['bin/gravity.js'] : ['--import', 'tsx', 'src/cli/main.ts'];

interface Completed {
  id: string;
  round: number;
  endpoint: string;
  stream: boolean;
}

/** One client: requests until `stop`, each response read whole; those that arrived complete are logged. */
async function client(
  url: string,
  worker: number,
  round: number,
  random: SeededRandom,
  stop: AbortSignal,
  log: (completed: Completed) => Promise<void>,
): Promise<void> {
  for (let index = 0; !stop.aborted; index++) {
    const stream = random.uniform() < 0.5;
    const chat = random.uniform() < 0.5;
    const endpoint = chat ? '/v1/chat/completions' : '/v1/completions';
    const prompt = `round ${round} worker ${worker} request ${index}`;
    const body = chat
      ? { model: modelId, messages: [{ role: 'user', content: prompt }], max_tokens: 24, stream }
      : { model: modelId, prompt, max_tokens: 24, stream };
    try {
      const response = await fetch(`${url}${endpoint}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const text = await response.text();
      const complete =
        response.status === 200 &&
        (stream
          ? text.endsWith('data: [DONE]\n\n')
          : (JSON.parse(text) as { choices?: unknown[] }).choices?.length === 1);
      const id = response.headers.get('x-request-id');
      if (complete && id) await log({ id, round, endpoint, stream });
    } catch {
      // Killed mid-request (a reset, a truncated body): that response never completed.
      if (stop.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

interface LedgerCheck {
  rows: number;
  missing: string[];
  duplicated: string[];
}

/** Every completed response on record exactly once; and no request id recorded twice at all. */
async function checkLedger(ledgerPath: string, completed: Map<string, Completed>): Promise<LedgerCheck> {
  const ledger = new SqliteLedgerStore(ledgerPath);
  try {
    const counts = new Map<string, number>();
    const records = await ledger.records({});
    for (const record of records) counts.set(record.requestId, (counts.get(record.requestId) ?? 0) + 1);
    return {
      rows: records.length,
      missing: [...completed.keys()].filter((id) => !counts.has(id)),
      duplicated: [...counts].filter(([, count]) => count > 1).map(([id]) => id),
    };
  } finally {
    await ledger.close();
  }
}

const children = new ChildProcessGroup();
const workDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-crash-'));
try {
  const configPath = path.join(workDir, 'gravity.json');
  const ledgerPath = path.join(workDir, 'ledger.sqlite');
  const clientLogPath = path.join(workDir, 'client-log.jsonl');
  // A fast emulated replica: many short responses per second, so kills land at every stage of a request.
  await writeFile(
    configPath,
    JSON.stringify({
      engines: { replica: { type: 'emulated', hardware: 'h200', model: 'llama-3.1-8b', weightDtype: 'fp8' } },
      models: { [modelId]: { engine: 'replica' } },
      metering: { ledgerPath },
    }),
  );
  const start = () =>
    startGravity(children, {
      name: 'gravity',
      configPath,
      dataDir: path.join(workDir, 'data'),
      build: { dir: repoRoot, entry },
    });
  printPreamble('Gravity under kill -9', 'bench/soak/crash.ts', [
    `settings: ${options.kills} kills, seed ${options.seed}, ${options.workers} clients, uptime before each kill ` +
      `${options.minUptimeMs}–${options.maxUptimeMs} ms; ${built ? 'bin/gravity.js (built)' : 'src/cli/main.ts through tsx'}`,
    'load:     chat and completions, half streamed, max_tokens 24, one emulated h200 replica; ledger in a SQLite file',
    `check:    after each restart, every x-request-id the clients saw complete is in the ledger exactly once`,
  ]);

  const random = new SeededRandom(options.seed);
  const completed = new Map<string, Completed>();
  const log = async (entry: Completed) => {
    completed.set(entry.id, entry);
    await appendFile(clientLogPath, `${JSON.stringify(entry)}\n`);
  };
  const rounds: Array<{ round: number; uptimeMs: number; completed: number } & LedgerCheck> = [];
  for (let round = 1; round <= options.kills; round++) {
    const gravity = await start();
    const stop = new AbortController();
    const before = completed.size;
    const clients = Array.from({ length: options.workers }, (_, worker) =>
      client(`${gravity.url}`, worker, round, random.fork(`client ${round} ${worker}`), stop.signal, log),
    );
    const uptimeMs = Math.round(
      options.minUptimeMs + random.uniform() * (options.maxUptimeMs - options.minUptimeMs),
    );
    await new Promise((resolve) => setTimeout(resolve, uptimeMs));
    gravity.child.process.kill('SIGKILL');
    await gravity.child.exited;
    stop.abort();
    await Promise.all(clients);
    // Restart on the same data, as a supervisor would; the ledger is read while it serves.
    const restarted = await start();
    const check = await checkLedger(ledgerPath, completed);
    rounds.push({ round, uptimeMs, completed: completed.size - before, ...check });
    await children.stop(restarted.child, 5000);
  }

  console.log(
    columnsTable(rounds, [
      ['kill', (row) => String(row.round)],
      ['uptime (ms)', (row) => String(row.uptimeMs)],
      ['completed', (row) => String(row.completed)],
      ['ledger rows', (row) => String(row.rows)],
      ['missing', (row) => String(row.missing.length)],
      ['duplicated', (row) => String(row.duplicated.length)],
    ]),
  );
  console.log('');
  const missing = [...new Set(rounds.flatMap((row) => row.missing))];
  const duplicated = [...new Set(rounds.flatMap((row) => row.duplicated))];
  verdict(completed.size > 0, `clients saw ${completed.size} responses complete (log: one line each)`);
  verdict(missing.length === 0, `every one in the ledger after each restart (${missing.length} missing)`);
  verdict(duplicated.length === 0, `no request recorded twice (${duplicated.length} duplicated)`);
  const result = {
    kills: options.kills,
    completed: completed.size,
    ledgerRows: rounds.at(-1)?.rows ?? 0,
    missing: missing.slice(0, 20),
    missingCount: missing.length,
    duplicated: duplicated.slice(0, 20),
    duplicatedCount: duplicated.length,
    completedPerRound: rounds.map((row) => row.completed),
  };
  console.log(`crash-result: ${JSON.stringify(result)}`);
} finally {
  await children.stopAll(5000);
  children.dispose();
  await rm(workDir, { recursive: true, force: true });
}
