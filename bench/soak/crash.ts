// Crash: `gravity serve` under streamed and non-streamed load, killed with SIGKILL at seeded random moments
// (20 times by default) and restarted on the same data each time. The client logs every response it saw
// complete (its `x-request-id`); after each restart the ledger must hold each of them exactly once:
// nothing a client was served is lost to a crash, nothing is counted twice.
//   --ledger sqlite (default): one replica, its ledger in a SQLite file.
//   --ledger postgres --replicas 3: three replicas sharing a throwaway PostgreSQL (test/support/
//     postgres-server.ts) through GRAVITY_LEDGER_URL, the clients spread over them; each kill takes one
//     replica (seeded) while the others keep serving, and restarts it under load.
//   npm run crash -- --help
//   npm run crash -- --kills 3
//   npm run crash -- --ledger postgres --replicas 3
// Runs the built CLI (bin/gravity.js, after `npm run build`) when dist/ exists, else the sources via tsx
// (`--tsx` forces that). The last line is `crash-result: <json>`, for test/ledger-durability*.test.ts.

import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SeededRandom } from '../../src/core/seeded-random.js';
import type { LedgerStore } from '../../src/metering/ledger/ledger-store.js';
import { PostgresLedgerStore } from '../../src/metering/ledger/postgres-ledger-store.js';
import { SqliteLedgerStore } from '../../src/metering/ledger/sqlite-ledger-store.js';
import { type PostgresServer, startPostgres } from '../../test/support/postgres-server.js';
import { repoRoot } from '../support/ab-rounds.js';
import { ChildProcessGroup, type ManagedChild, startGravity } from '../support/child-processes.js';
import {
  columnsTable,
  flag,
  integer,
  printPreamble,
  readOptions,
  text,
  verdict,
} from '../support/report-format.js';

const options = readOptions(
  'crash',
  'kill -9 under load, restart, and check the ledger against what clients saw.',
  {
    kills: integer(20, 'SIGKILLs, each followed by a restart', { quick: 3 }),
    seed: integer(1, 'seed of the kill moments, the killed replica and the request mix'),
    minUptimeMs: integer(300, 'least time under load before a kill'),
    maxUptimeMs: integer(2500, 'most time under load before a kill', { quick: 1500 }),
    workers: integer(8, 'concurrent clients'),
    ledger: text(
      'sqlite',
      'where the ledger is: a SQLite file, or a throwaway PostgreSQL the replicas share',
      {
        choices: ['sqlite', 'postgres'],
      },
    ),
    replicas: integer(1, 'gravity serve processes (more than one shares a PostgreSQL ledger)'),
    tsx: flag('run the sources through tsx even when dist/ is built'),
  },
  (given) => {
    if (given.replicas > 1 && given.ledger !== 'postgres')
      throw new Error(
        '--replicas: more than one replica needs --ledger postgres (a SQLite file is one process’s)',
      );
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
  worker: number;
}

/**
 * One client: requests until `stop`, each response read whole; those that arrived complete are logged.
 * `url()` is asked before each request: the replica it is pinned to, or a live one while that one is down.
 */
async function client(
  url: () => string,
  worker: number,
  round: number,
  random: SeededRandom,
  stop: AbortSignal,
  log: (completed: Completed) => Promise<void>,
  /** Set while this worker has a request out: what a kill interrupts. */
  inFlight: boolean[],
): Promise<void> {
  for (let index = 0; !stop.aborted; index++) {
    const stream = random.uniform() < 0.5;
    const chat = random.uniform() < 0.5;
    const endpoint = chat ? '/v1/chat/completions' : '/v1/completions';
    const prompt = `round ${round} worker ${worker} request ${index}`;
    const body = chat
      ? { model: modelId, messages: [{ role: 'user', content: prompt }], max_tokens: 24, stream }
      : { model: modelId, prompt, max_tokens: 24, stream };
    inFlight[worker] = true;
    try {
      const response = await fetch(`${url()}${endpoint}`, {
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
      if (complete && id) await log({ id, round, endpoint, stream, worker });
    } catch {
      // Killed mid-request (a reset, a truncated body): that response never completed.
      if (stop.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      inFlight[worker] = false;
    }
  }
}

interface LedgerCheck {
  rows: number;
  missing: string[];
  duplicated: string[];
}

/** Every completed response on record exactly once; and no request id recorded twice at all. */
async function checkLedger(ledger: LedgerStore, completed: Map<string, Completed>): Promise<LedgerCheck> {
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
let postgresServer: PostgresServer | undefined;
try {
  const configPath = path.join(workDir, 'gravity.json');
  const ledgerPath = path.join(workDir, 'ledger.sqlite');
  const clientLogPath = path.join(workDir, 'client-log.jsonl');
  let ledgerUrl: string | undefined;
  if (options.ledger === 'postgres') {
    postgresServer = await startPostgres();
    ledgerUrl = await postgresServer.createDatabase();
  }
  // A fast emulated replica: many short responses per second, so kills land at every stage of a request.
  // A PostgreSQL ledger comes from GRAVITY_LEDGER_URL, as a deployment passes it (its password out of the file).
  await writeFile(
    configPath,
    JSON.stringify({
      engines: { replica: { type: 'emulated', hardware: 'h200', model: 'llama-3.1-8b', weightDtype: 'fp8' } },
      models: { [modelId]: { engine: 'replica' } },
      ...(options.ledger === 'sqlite' && { metering: { ledgerPath } }),
    }),
  );
  const openLedger = async (): Promise<LedgerStore> =>
    ledgerUrl === undefined
      ? new SqliteLedgerStore(ledgerPath)
      : PostgresLedgerStore.open(ledgerUrl, { migrate: false });
  const start = (replica: number) =>
    startGravity(children, {
      name: `gravity-${replica}`,
      configPath,
      // Each replica its own data folder; only the ledger is shared.
      dataDir: path.join(workDir, options.replicas === 1 ? 'data' : `data-${replica}`),
      build: { dir: repoRoot, entry },
      ...(ledgerUrl !== undefined && { env: { GRAVITY_LEDGER_URL: ledgerUrl } }),
    });
  printPreamble('Gravity under kill -9', 'bench/soak/crash.ts', [
    `settings: ${options.kills} kills, seed ${options.seed}, ${options.workers} clients, uptime before each kill ` +
      `${options.minUptimeMs}–${options.maxUptimeMs} ms; ${built ? 'bin/gravity.js (built)' : 'src/cli/main.ts through tsx'}`,
    options.ledger === 'sqlite'
      ? 'load:     chat and completions, half streamed, max_tokens 24, one emulated h200 replica; ledger in a SQLite file'
      : `load:     chat and completions, half streamed, max_tokens 24, ${options.replicas} gravity serve replicas (emulated h200 each), ` +
        'clients spread over them; ledger in one PostgreSQL 15 they share (GRAVITY_LEDGER_URL); one replica killed per round, the others serving on',
    `check:    after each restart, every x-request-id the clients saw complete is in the ledger exactly once`,
  ]);

  const random = new SeededRandom(options.seed);
  const completed = new Map<string, Completed>();
  const log = async (entry: Completed) => {
    completed.set(entry.id, entry);
    await appendFile(clientLogPath, `${JSON.stringify(entry)}\n`);
  };
  // The replicas' URLs; null while one is down (between its kill and its restart).
  const running: Array<{ child: ManagedChild; url: string } | null> = [];
  const started = await Promise.all(Array.from({ length: options.replicas }, (_, replica) => start(replica)));
  for (const gravity of started) running.push({ child: gravity.child, url: gravity.url });
  /** A worker's replica (worker mod replicas), or the next live one while that one is down. */
  const urlFor = (worker: number) => () => {
    for (let offset = 0; offset < running.length; offset++) {
      const replica = running[(worker + offset) % running.length];
      if (replica) return replica.url;
    }
    // All down (one replica, between kill and restart): the request fails and the client retries.
    return 'http://127.0.0.1:9';
  };
  const rounds: Array<
    {
      round: number;
      replica: number;
      uptimeMs: number;
      completed: number;
      completedOnKilled: number;
      inFlightOnKilled: number;
    } & LedgerCheck
  > = [];
  for (let round = 1; round <= options.kills; round++) {
    const stop = new AbortController();
    const before = completed.size;
    const inFlight = Array.from({ length: options.workers }, () => false);
    const clients = Array.from({ length: options.workers }, (_, worker) =>
      client(
        urlFor(worker),
        worker,
        round,
        random.fork(`client ${round} ${worker}`),
        stop.signal,
        log,
        inFlight,
      ),
    );
    const uptimeMs = Math.round(
      options.minUptimeMs + random.uniform() * (options.maxUptimeMs - options.minUptimeMs),
    );
    const killed = options.replicas === 1 ? 0 : Math.floor(random.uniform() * options.replicas);
    await new Promise((resolve) => setTimeout(resolve, uptimeMs));
    const victim = running[killed] as { child: ManagedChild; url: string };
    // The requests out to the killed replica when it dies, and what its clients saw complete before:
    // the kill landed under its load.
    const pinnedToKilled = (worker: number) => worker % options.replicas === killed;
    const inFlightOnKilled = inFlight.filter((out, worker) => out && pinnedToKilled(worker)).length;
    victim.child.process.kill('SIGKILL');
    const completedOnKilled = [...completed.values()].filter(
      (entry) => entry.round === round && pinnedToKilled(entry.worker),
    ).length;
    await victim.child.exited;
    running[killed] = null;
    // Restart on the same data, as a supervisor would, while the other replicas serve on.
    const restarted = await start(killed);
    running[killed] = { child: restarted.child, url: restarted.url };
    stop.abort();
    await Promise.all(clients);
    // The ledger is read while the replicas run.
    const check = await checkLedger(await openLedger(), completed);
    rounds.push({
      round,
      replica: killed,
      uptimeMs,
      completed: completed.size - before,
      completedOnKilled,
      inFlightOnKilled,
      ...check,
    });
  }
  for (const replica of running) if (replica) await children.stop(replica.child, 5000);

  console.log(
    columnsTable(rounds, [
      ['kill', (row) => String(row.round)],
      ['replica', (row) => String(row.replica)],
      ['uptime (ms)', (row) => String(row.uptimeMs)],
      ['completed', (row) => String(row.completed)],
      ['on killed before kill', (row) => String(row.completedOnKilled)],
      ['in flight on killed', (row) => String(row.inFlightOnKilled)],
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
    ledger: options.ledger,
    replicas: options.replicas,
    completed: completed.size,
    ledgerRows: rounds.at(-1)?.rows ?? 0,
    missing: missing.slice(0, 20),
    missingCount: missing.length,
    duplicated: duplicated.slice(0, 20),
    duplicatedCount: duplicated.length,
    completedPerRound: rounds.map((row) => row.completed),
    completedOnKilledPerRound: rounds.map((row) => row.completedOnKilled),
    inFlightOnKilledPerRound: rounds.map((row) => row.inFlightOnKilled),
    killedReplicaPerRound: rounds.map((row) => row.replica),
  };
  console.log(`crash-result: ${JSON.stringify(result)}`);
} finally {
  await children.stopAll(5000);
  children.dispose();
  await postgresServer?.close();
  await rm(workDir, { recursive: true, force: true });
}
