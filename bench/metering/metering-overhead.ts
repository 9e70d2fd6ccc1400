// Metering overhead: request-path throughput of Gravity with metering on and off, measured in one run
// (the metering issue's target: at most 5% loss). Two Gravity processes, identical but for
// `metering.enabled`, proxy a fast fake OpenAI upstream; the load client alternates rounds between them so
// machine noise hits both alike. Each server's CPU time, disk writes and event-loop delay are read apart.
// Run with `npm run bench:metering -- --help`.

import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { medianOf } from '../../src/core/quantile.js';
import { alternatingRounds, compare, comparisonTable, repoRoot } from '../support/ab-rounds.js';
import {
  askChild,
  ChildProcessGroup,
  type ManagedChild,
  startFakeUpstream,
  startGravity,
} from '../support/child-processes.js';
import { printCpuProfiles } from '../support/cpu-profile-summary.js';
import { type EventLoopDelayStats, probeMessages } from '../support/event-loop-probe.js';
import { chatBody, LoadClient, throwOnFailures } from '../support/load-client.js';
import { processCpuMs, processDiskWriteBytes } from '../support/process-stats.js';
import {
  fixed,
  integer,
  number,
  printPreamble,
  readOptions,
  text,
  verdict,
} from '../support/report-format.js';

const lossTargetPercent = 5;
const modelId = 'fake';
const eventLoopProbe = fileURLToPath(new URL('../support/event-loop-probe.ts', import.meta.url));

type Mode = 'stream' | 'json';

const options = readOptions(
  'bench:metering',
  'Gravity with metering on against off, in alternating rounds.',
  {
    concurrency: integer(16, 'requests in flight per round, closed loop'),
    seconds: number(5, 'length of each measured round', { quick: 1 }),
    warmupSeconds: number(3, 'length of the unmeasured first round per server and mode', { quick: 0.5 }),
    rounds: integer(3, 'measured rounds per server and mode, alternating', { quick: 2 }),
    tokens: integer(16, 'completion tokens per response'),
    mode: text('both', 'streamed responses, JSON ones, or both', { choices: ['stream', 'json', 'both'] }),
    cpuProfDir: text(
      '',
      "profile both servers (node --cpu-prof) into <dir> and summarise src/metering/'s share; profiling slows both, so that run's ratio is not the benchmark's",
      { placeholder: '<dir>' },
    ),
  },
);

interface Server {
  name: 'metering on' | 'metering off';
  child: ManagedChild;
  port: number;
  dataDir: string;
  /** Requests it completed, warm-up included: the ledger must hold as many rows. */
  completed: number;
}

interface Round {
  requestsPerSecond: number;
  cpuMsPerRequest: number | null;
  diskKiBPerRequest: number | null;
  loopDelay: EventLoopDelayStats;
}

async function main(): Promise<void> {
  const modes: Mode[] = options.mode === 'both' ? ['stream', 'json'] : [options.mode as Mode];
  const cpuProfileDir = options.cpuProfDir ? path.resolve(options.cpuProfDir) : null;
  const children = new ChildProcessGroup();
  const client = new LoadClient();
  let fatalError: Error | null = null;
  children.unexpectedExit = (child) => {
    fatalError = new Error(`${child.name} exited during the run:\n${child.outputTail()}`);
    client.stop();
  };
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-metering-bench-'));
  try {
    const upstreamUrl = await startFakeUpstream(children, {
      name: 'fast',
      tokens: options.tokens,
      delayMs: 0,
    });
    const servers: Server[] = await Promise.all(
      (['on', 'off'] as const).map(async (metering) => {
        const configPath = path.join(workDir, `gravity-${metering}.yaml`);
        const dataDir = path.join(workDir, `data-${metering}`);
        const engine = { type: 'openai-upstream', baseUrl: upstreamUrl, maxConcurrentRequests: 256 };
        // JSON is YAML: no quoting questions for the URL.
        const config = { engines: { up: engine }, models: { [modelId]: { engine: 'up' } } };
        await writeFile(configPath, JSON.stringify({ ...config, metering: { enabled: metering === 'on' } }));
        const { child, port } = await startGravity(children, {
          name: `Gravity (metering ${metering})`,
          configPath,
          dataDir,
          build: { dir: repoRoot, entry: ['--import', 'tsx', '--import', eventLoopProbe, 'src/cli/main.ts'] },
          nodeArgs: cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', path.join(cpuProfileDir, metering)] : [],
          eventLoopProbe: true,
        });
        return { name: `metering ${metering}` as const, child, port, dataDir, completed: 0 };
      }),
    );
    printPreamble('Gravity metering overhead', 'bench:metering', [
      `settings: closed loop, concurrency ${options.concurrency}, ${options.rounds} rounds of ${options.seconds} s per server ` +
        `and mode after a ${options.warmupSeconds} s warm-up, ${options.tokens} tokens per response, modes ${modes.join(', ')}`,
      `servers:  two Gravity processes (src/cli/main.ts through tsx) identical but for metering.enabled, proxying ` +
        `bench/support/fake-openai-upstream.ts at ${upstreamUrl} (no delay)`,
      'client:   bench/support/load-client.ts on a worker thread; POST /v1/chat/completions, streams with include_usage',
      'method:   rounds alternate between the servers; loss = 1 - median(on) / median(off); Gravity CPU and disk writes ' +
        'from /proc; event-loop delay from a probe preloaded into both',
      ...(cpuProfileDir
        ? [`profile:  node --cpu-prof in both servers, into ${cpuProfileDir} (slows both)`]
        : []),
    ]);

    const losses: number[] = [];
    for (const mode of modes) {
      const request = (server: Server) => ({
        port: server.port,
        path: '/v1/chat/completions',
        body: chatBody({
          model: modelId,
          prompt: 'Write one short sentence about gravity.',
          maxTokens: options.tokens,
          stream: mode === 'stream',
        }),
      });
      const rounds = await alternatingRounds<Server, Round>({
        variants: servers,
        rounds: options.rounds,
        warmUpRounds: 1,
        measure: async (server, round) => {
          const pid = server.child.process.pid;
          // IPC is ordered: the reset lands before the read at the end of the round.
          server.child.process.send({ type: probeMessages.reset });
          const [cpuBefore, diskBefore] = [processCpuMs(pid), processDiskWriteBytes(pid)];
          const run = await client.run({
            requests: [request(server)],
            concurrency: options.concurrency,
            seconds: round < 0 ? options.warmupSeconds : options.seconds,
            detail: 'light',
            maxErrors: 20,
          });
          const [cpuAfter, diskAfter] = [processCpuMs(pid), processDiskWriteBytes(pid)];
          if (fatalError) throw fatalError;
          throwOnFailures(run.outcomes, `${server.name}, ${mode}`);
          const { stats } = await askChild<{ stats: EventLoopDelayStats }>(
            server.child,
            { type: probeMessages.read },
            probeMessages.stats,
            5000,
          );
          const completed = run.outcomes.length;
          server.completed += completed;
          return {
            requestsPerSecond: completed / (run.wallMs / 1000),
            cpuMsPerRequest:
              cpuBefore === null || cpuAfter === null ? null : (cpuAfter - cpuBefore) / completed,
            diskKiBPerRequest:
              diskBefore === null || diskAfter === null ? null : (diskAfter - diskBefore) / 1024 / completed,
            loopDelay: stats,
          };
        },
        onResult: (server, round, result) =>
          console.log(
            `  ${mode.padEnd(6)} round ${round + 1} ${server.name.padEnd(12)} ${result.requestsPerSecond.toFixed(0).padStart(5)} req/s  ` +
              `Gravity ${fixed(result.cpuMsPerRequest, 3)} ms CPU/req, ${fixed(result.diskKiBPerRequest, 2)} KiB disk/req, ` +
              `event-loop delay p99 ${result.loopDelay.p99Ms.toFixed(1)} max ${result.loopDelay.maxMs.toFixed(1)} ms`,
          ),
      });
      const figure = (read: (round: Round) => number | null) =>
        new Map([...rounds].map(([name, list]) => [name, list.map(read)]));
      const throughput = compare(
        figure((round) => round.requestsPerSecond),
        'metering off',
      );
      console.log(`\n${mode}, req/s:\n${comparisonTable('server', 'metering off', throughput, 0)}`);
      console.log(
        `${mode}, Gravity CPU ms per request:\n${comparisonTable(
          'server',
          'metering off',
          compare(
            figure((round) => round.cpuMsPerRequest),
            'metering off',
          ),
        )}`,
      );
      const loopMax = (name: string) => medianOf(rounds.get(name)!.map((round) => round.loopDelay.maxMs));
      console.log(
        `${mode}, longest event-loop stall (median over rounds): ${fixed(loopMax('metering on'), 1)} ms on, ` +
          `${fixed(loopMax('metering off'), 1)} ms off\n`,
      );
      losses.push((1 - (throughput.find((row) => row.variant === 'metering on')?.ratio ?? Number.NaN)) * 100);
    }

    // The ON server's ledger must hold a row for every request it completed, and the OFF server must have
    // none: otherwise this run did not time what it says. Stopping them first commits everything pending.
    await children.stopAll(15_000);
    const [on, off] = servers as [Server, Server];
    const database = new Database(path.join(on.dataDir, 'ledger.sqlite'), { readonly: true });
    const rows = (database.prepare('SELECT COUNT(*) AS count FROM usage_records').get() as { count: number })
      .count;
    database.close();
    const ledgerComplete = rows >= on.completed && !existsSync(path.join(off.dataDir, 'ledger.sqlite'));
    console.log(
      `ledger:   ${rows} rows for ${on.completed} requests completed with metering on; none with it off ` +
        `(${ledgerComplete ? 'as expected' : 'NOT AS EXPECTED'})`,
    );
    verdict(
      ledgerComplete && losses.every((loss) => loss <= lossTargetPercent),
      `metering costs <= ${lossTargetPercent}% of request-path throughput: loss ` +
        modes.map((mode, index) => `${mode} ${fixed(losses[index], 1)}%`).join(', ') +
        (cpuProfileDir ? ' (profiled run: not the benchmark figure)' : ''),
    );
    // Where each server's main thread spent its time, and src/metering/'s share of it.
    if (cpuProfileDir)
      for (const metering of ['on', 'off'])
        await printCpuProfiles(path.join(cpuProfileDir, metering), {
          title: `profile, metering ${metering}`,
          focus: 'src/metering/',
        });
  } finally {
    await client.close();
    await children.stopAll(15_000);
    children.dispose();
    await rm(workDir, { recursive: true, force: true });
  }
}

await main();
