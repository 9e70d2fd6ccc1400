// Metering overhead: request-path throughput of Gravity with metering on and off, measured in one run
// (the metering issue's target: at most 5% loss). Two Gravity processes, identical but for
// `metering.enabled`, proxy a fast fake OpenAI upstream; the load client alternates rounds between them so
// machine noise hits both alike. Each server's CPU time, disk writes and event-loop delay are read apart.
// Run with `npm run bench:metering -- --help`.

import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { medianOf } from '../../src/core/quantile.js';
import { alternatingRounds, compare, comparisonTable, repoRoot } from '../support/ab-rounds.js';
import {
  askChild,
  ChildProcessGroup,
  gravityChildEnvironment,
  type ManagedChild,
} from '../support/child-processes.js';
import {
  formatCpuProfileSummary,
  readCpuProfile,
  summarizeCpuProfile,
} from '../support/cpu-profile-summary.js';
import { type EventLoopDelayStats, probeMessages } from '../support/event-loop-probe.js';
import { chatBody, LoadClient } from '../support/load-client.js';
import { processCpuMs, processDiskWriteBytes } from '../support/process-stats.js';
import { fixed, positiveNumber, printPreamble, readOptions } from '../support/report-format.js';

const lossTargetPercent = 5;
const modelId = 'fake';
const startTimeoutMs = 60_000;
const upstreamScript = fileURLToPath(new URL('../support/fake-openai-upstream.ts', import.meta.url));
const eventLoopProbe = fileURLToPath(new URL('../support/event-loop-probe.ts', import.meta.url));

type Mode = 'stream' | 'json';

const usage = `Usage: npm run bench:metering -- [options]

  --concurrency <n>     requests in flight per round, closed loop (default 16)
  --seconds <s>         length of each measured round (default 5)
  --warmup-seconds <s>  length of the unmeasured first round per server and mode (default 3)
  --rounds <n>          measured rounds per server and mode, alternating (default 3)
  --tokens <n>          completion tokens per response (default 16)
  --mode <m>            stream | json | both (default both)
  --quick               a short run: 2 rounds of 1 s after a 0.5 s warm-up
  --cpu-prof-dir <dir>  profile both servers (node --cpu-prof) and summarise src/metering/'s share;
                        profiling slows both, so that run's ratio is not the benchmark's
  --help                print this`;

const parseOptions = () =>
  readOptions(
    usage,
    {
      concurrency: '16',
      seconds: '5',
      'warmup-seconds': '3',
      rounds: '3',
      tokens: '16',
      mode: 'both',
      'cpu-prof-dir': '',
    },
    { seconds: '1', 'warmup-seconds': '0.5', rounds: '2' },
    (values) => {
      const modes: Mode[] = values.mode === 'both' ? ['stream', 'json'] : [values.mode as Mode];
      if (!['stream', 'json', 'both'].includes(values.mode))
        throw new Error(`--mode: expected stream, json or both, got '${values.mode}'`);
      return {
        concurrency: positiveNumber('concurrency', values.concurrency, true),
        roundSeconds: positiveNumber('seconds', values.seconds, false),
        warmUpSeconds: positiveNumber('warmup-seconds', values['warmup-seconds'], false),
        rounds: positiveNumber('rounds', values.rounds, true),
        tokensPerResponse: positiveNumber('tokens', values.tokens, true),
        modes,
        cpuProfileDir: values['cpu-prof-dir'] ? path.resolve(values['cpu-prof-dir']) : null,
      };
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
  const options = parseOptions();
  const children = new ChildProcessGroup();
  const client = new LoadClient();
  let fatalError: Error | null = null;
  children.unexpectedExit = (child) => {
    fatalError = new Error(`${child.name} exited during the run:\n${child.outputTail()}`);
    client.stop();
  };
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-metering-bench-'));
  try {
    const env = gravityChildEnvironment();
    const upstream = await children.start({
      name: 'fake upstream',
      command: process.execPath,
      args: ['--import', 'tsx', upstreamScript, '--tokens', String(options.tokensPerResponse)],
      cwd: repoRoot,
      env,
      readyPattern: /^fake-upstream: listening on (\S+)/,
      startTimeoutMs,
    });
    const servers: Server[] = await Promise.all(
      (['on', 'off'] as const).map(async (metering) => {
        const configPath = path.join(workDir, `gravity-${metering}.yaml`);
        const dataDir = path.join(workDir, `data-${metering}`);
        // JSON is YAML: no quoting questions for the URL.
        await writeFile(
          configPath,
          JSON.stringify({
            engines: {
              up: { type: 'openai-upstream', baseUrl: upstream.ready[1], maxConcurrentRequests: 256 },
            },
            models: { [modelId]: { engine: 'up' } },
            metering: { enabled: metering === 'on' },
          }),
        );
        const profile = options.cpuProfileDir
          ? ['--cpu-prof', '--cpu-prof-dir', path.join(options.cpuProfileDir, metering)]
          : [];
        const child = await children.start({
          name: `Gravity (metering ${metering})`,
          command: process.execPath,
          args: [
            ...profile,
            ...[
              '--import',
              'tsx',
              '--import',
              eventLoopProbe,
              'src/cli/main.ts',
              'serve',
              '--host',
              '127.0.0.1',
            ],
            ...['--port', '0', '--config', configPath, '--data-dir', dataDir, '--log-level', 'warn'],
          ],
          cwd: repoRoot,
          env,
          readyPattern: /^gravity: listening on (\S+) models=/,
          startTimeoutMs,
          ipc: true,
        });
        const port = Number(new URL(child.ready[1] as string).port);
        return { name: `metering ${metering}` as const, child, port, dataDir, completed: 0 };
      }),
    );
    printPreamble('Gravity metering overhead', 'bench:metering', [
      `settings: closed loop, concurrency ${options.concurrency}, ${options.rounds} rounds of ${options.roundSeconds} s per server ` +
        `and mode after a ${options.warmUpSeconds} s warm-up, ${options.tokensPerResponse} tokens per response, modes ${options.modes.join(', ')}`,
      `servers:  two Gravity processes (src/cli/main.ts through tsx) identical but for metering.enabled, proxying ` +
        `bench/support/fake-openai-upstream.ts at ${upstream.ready[1]} (no delay)`,
      'client:   bench/support/load-client.ts on a worker thread; POST /v1/chat/completions, streams with include_usage',
      'method:   rounds alternate between the servers; loss = 1 - median(on) / median(off); Gravity CPU and disk writes ' +
        'from /proc; event-loop delay from a probe preloaded into both',
      ...(options.cpuProfileDir
        ? [`profile:  node --cpu-prof in both servers, into ${options.cpuProfileDir} (slows both)`]
        : []),
    ]);

    const losses: number[] = [];
    for (const mode of options.modes) {
      const request = (server: Server) => ({
        port: server.port,
        path: '/v1/chat/completions',
        body: chatBody({
          model: modelId,
          prompt: 'Write one short sentence about gravity.',
          maxTokens: options.tokensPerResponse,
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
            seconds: round < 0 ? options.warmUpSeconds : options.roundSeconds,
            detail: 'light',
            maxErrors: 20,
          });
          const [cpuAfter, diskAfter] = [processCpuMs(pid), processDiskWriteBytes(pid)];
          if (fatalError) throw fatalError;
          const failed = run.outcomes.filter((outcome) => outcome.error !== null);
          if (failed.length > 0)
            throw new Error(`${server.name}, ${mode}: ${failed.length} failed: ${failed[0]?.error}`);
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
    const pass = ledgerComplete && losses.every((loss) => loss <= lossTargetPercent);
    console.log(
      `${pass ? 'PASS' : 'MISS'}  metering costs <= ${lossTargetPercent}% of request-path throughput: loss ` +
        options.modes.map((mode, index) => `${mode} ${fixed(losses[index], 1)}%`).join(', ') +
        (options.cpuProfileDir ? ' (profiled run: not the benchmark figure)' : ''),
    );
    if (options.cpuProfileDir) await printProfiles(options.cpuProfileDir);
  } finally {
    await client.close();
    await children.stopAll(15_000);
    children.dispose();
    await rm(workDir, { recursive: true, force: true });
  }
}

/** Where each server's main thread spent its time, and src/metering/'s share of it. */
async function printProfiles(dir: string): Promise<void> {
  for (const metering of ['on', 'off']) {
    for (const file of await readdir(path.join(dir, metering)).catch(() => [] as string[])) {
      const summary = summarizeCpuProfile(readCpuProfile(path.join(dir, metering, file)), {
        rootDir: repoRoot,
        focus: 'src/metering/',
      });
      // One profile per thread: the module loader's runs none of Gravity's code.
      if (summary.topInclusiveFiles.length === 0) continue;
      console.log(
        `\nprofile, metering ${metering}: ${path.join(dir, metering, file)}\n${formatCpuProfileSummary(summary)}`,
      );
    }
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
