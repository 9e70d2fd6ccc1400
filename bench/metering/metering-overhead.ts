// Metering overhead: request-path throughput of Gravity with metering on and off, measured in one run
// (the metering issue's target: at most 5% loss). Two Gravity servers, identical but for
// `metering.enabled`, proxy a fast fake OpenAI upstream; a closed-loop load generator in this process
// alternates rounds between them so that machine noise hits both alike. The upstream and each server run
// in their own process, so each server's CPU time, disk writes and event-loop delay can be read apart. Run with `npx tsx bench/metering/metering-overhead.ts --help`.

import { mkdtemp, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import {
  askChild,
  ChildProcessGroup,
  gravityChildEnvironment,
  type ManagedChild,
  processCpuMs,
  processDiskWriteBytes,
} from '../support/child-processes.js';
import {
  formatCpuProfileSummary,
  readCpuProfile,
  summarizeCpuProfile,
} from '../support/cpu-profile-summary.js';
import { type EventLoopDelayStats, probeMessages } from '../support/event-loop-probe.js';
import {
  describeMachine,
  formatTable,
  median,
  positiveNumber,
  quoteArgument,
} from '../support/report-format.js';

const lossTargetPercent = 5;
const modelId = 'fake';
const host = '127.0.0.1';
const prompt = 'Write one short sentence about gravity.';
const startTimeoutMs = 60_000;
const stopGraceMs = 15_000;
/** A round stops early after this many failed requests: the numbers would mean nothing. */
const maxErrorsPerRound = 20;
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const upstreamScript = fileURLToPath(new URL('../support/fake-openai-upstream.ts', import.meta.url));
const eventLoopProbe = fileURLToPath(new URL('../support/event-loop-probe.ts', import.meta.url));
const probeTimeoutMs = 5000;
/** statfs magic numbers of the filesystems a ledger is likely to sit on: fsync cost depends on it. */
const filesystemNames = new Map([
  [0xef53, 'ext2/3/4'],
  [0x58465342, 'xfs'],
  [0x9123683e, 'btrfs'],
  [0x01021994, 'tmpfs'],
  [0x794c7630, 'overlayfs'],
  [0x2fc12fc1, 'zfs'],
]);

/** Set by Ctrl-C: what fails afterwards is the interruption's doing, not worth reporting. */
let interrupted = false;

type Mode = 'stream' | 'json';
type Metering = 'on' | 'off';

const usage = `Usage: npx tsx bench/metering/metering-overhead.ts [options]

  --concurrency <n>     requests in flight per round, closed loop (default 16)
  --seconds <s>         length of each measured round (default 5)
  --warmup-seconds <s>  length of the unmeasured warm-up round per server and mode (default 3)
  --rounds <n>          measured rounds per server and mode, alternating on, off, on, off … (default 3)
  --tokens <n>          completion tokens per response (default 16)
  --mode <m>            stream | json | both (default both)
  --json <file>         also write the results as JSON
  --work-dir <dir>      where the configs and both data dirs (the ledger) go (default: the OS temp dir)
  --cpu-prof            profile both Gravity processes (node --cpu-prof) and summarise where time went;
                        profiling slows both, so its ratio is not the benchmark's
  --cpu-prof-dir <dir>  where the .cpuprofile files go (default: a new folder under the OS temp dir)
  --help                print this`;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      concurrency: { type: 'string', default: '16' },
      seconds: { type: 'string', default: '5' },
      'warmup-seconds': { type: 'string', default: '3' },
      rounds: { type: 'string', default: '3' },
      tokens: { type: 'string', default: '16' },
      mode: { type: 'string', default: 'both' },
      json: { type: 'string' },
      'work-dir': { type: 'string', default: os.tmpdir() },
      'cpu-prof': { type: 'boolean', default: false },
      'cpu-prof-dir': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const modes: Mode[] =
    values.mode === 'both'
      ? ['stream', 'json']
      : values.mode === 'stream' || values.mode === 'json'
        ? [values.mode]
        : [];
  if (modes.length === 0) throw new Error(`--mode: expected stream, json or both, got '${values.mode}'`);
  return {
    concurrency: positiveNumber('concurrency', values.concurrency, true),
    roundSeconds: positiveNumber('seconds', values.seconds, false),
    warmUpSeconds: positiveNumber('warmup-seconds', values['warmup-seconds'], false),
    rounds: positiveNumber('rounds', values.rounds, true),
    tokensPerResponse: positiveNumber('tokens', values.tokens, true),
    modes,
    jsonPath: values.json,
    workDirRoot: path.resolve(values['work-dir']),
    cpuProfile: values['cpu-prof'],
    cpuProfileDir: values['cpu-prof-dir'],
  };
}

type Options = ReturnType<typeof parseOptions>;

interface Target {
  metering: Metering;
  child: ManagedChild;
  port: number;
  /** One keep-alive pool per server, sized to the concurrency: no connection set-up inside a round. */
  agent: http.Agent;
  dataDir: string;
  /** Requests that completed against this server, warm-up and checks included (for the ledger check). */
  completedRequests: number;
}

interface RoundResult {
  metering: Metering;
  wallMs: number;
  completedRequests: number;
  failedRequests: number;
  requestsPerSecond: number;
  meanLatencyMs: number;
  p95LatencyMs: number;
  /** Gravity's CPU time (all threads) per completed request; null without /proc. */
  gravityCpuMsPerRequest: number | null;
  /** Whole-process CPU use over the round, in cores: is Gravity or the machine the bottleneck? */
  gravityCpuCores: number | null;
  upstreamCpuCores: number | null;
  loadGeneratorCpuCores: number;
  /** Gravity's event-loop delay over the round: stalls cost throughput without costing CPU. */
  eventLoopDelay: EventLoopDelayStats;
  /** Bytes Gravity wrote to storage per completed request (the ledger); null without /proc. */
  diskWriteBytesPerRequest: number | null;
}

interface ModeResult {
  mode: Mode;
  medianOnRequestsPerSecond: number;
  medianOffRequestsPerSecond: number;
  /** median(on) / median(off). */
  onToOff: number;
  lossPercent: number;
  /** Median over passes of on/off of the two rounds of one pass (less sensitive to drift). */
  pairedOnToOff: number;
  /** max/min - 1 of one server's measured rounds: how far the machine moved the numbers by itself. */
  onSpread: number;
  offSpread: number;
  medianOnGravityCpuMsPerRequest: number | null;
  medianOffGravityCpuMsPerRequest: number | null;
  medianOnEventLoopDelayMaxMs: number;
  medianOffEventLoopDelayMaxMs: number;
  pass: boolean;
  rounds: RoundResult[];
}

function spread(values: number[]): number {
  return Math.max(...values) / Math.min(...values) - 1;
}

function medianOrNull(values: Array<number | null>): number | null {
  return values.some((value) => value === null) ? null : median(values as number[]);
}

function requestBody(mode: Mode, tokensPerResponse: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      model: modelId,
      messages: [{ role: 'user', content: prompt }],
      max_tokens: tokensPerResponse,
      ...(mode === 'stream' ? { stream: true, stream_options: { include_usage: true } } : {}),
    }),
  );
}

/**
 * Sends one chat completion and reads the whole response. The hot loop checks only what is cheap (status,
 * the stream's final `[DONE]`, the JSON's usage); `checkServers` parses everything once beforehand.
 */
function sendRequest(target: Target, body: Buffer, mode: Mode, keepText: boolean): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const request = http.request(
      {
        host,
        port: target.port,
        path: '/v1/chat/completions',
        method: 'POST',
        agent: target.agent,
        headers: { 'content-type': 'application/json', 'content-length': body.length },
      },
      (response) => {
        response.setEncoding('utf8');
        let text = '';
        let tail = '';
        const whole = keepText || mode === 'json' || response.statusCode !== 200;
        response.on('data', (chunk: string) => {
          if (whole) text += chunk;
          else tail = (tail + chunk).slice(-16);
        });
        response.on('error', reject);
        response.on('end', () => {
          if (response.statusCode !== 200) {
            reject(new Error(`HTTP ${response.statusCode}: ${text.slice(0, 300)}`));
            return;
          }
          if (mode === 'stream' && !(whole ? text : tail).endsWith('data: [DONE]\n\n')) {
            reject(new Error('the stream ended without data: [DONE]'));
            return;
          }
          if (mode === 'json' && !text.includes('"completion_tokens"')) {
            reject(new Error(`the JSON response has no usage: ${text.slice(0, 300)}`));
            return;
          }
          resolve(text);
        });
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

interface CheckedResponse {
  text: string;
  completionTokens: number;
  hasMeteredFigures: boolean;
}

/** Parses one response fully: the right number of tokens, usage, and metered figures only when on. */
function parseResponse(mode: Mode, text: string): CheckedResponse {
  type Usage = { completion_tokens: number; gravity?: unknown };
  if (mode === 'json') {
    const parsed = JSON.parse(text) as { choices: Array<{ message: { content: string } }>; usage: Usage };
    return {
      text: parsed.choices[0]?.message.content ?? '',
      completionTokens: parsed.usage.completion_tokens,
      hasMeteredFigures: parsed.usage.gravity !== undefined,
    };
  }
  let content = '';
  let usageChunk: Usage | undefined;
  let done = false;
  for (const event of text.split('\n\n')) {
    if (!event.startsWith('data: ')) continue;
    const data = event.slice(6);
    if (data === '[DONE]') {
      done = true;
      continue;
    }
    const chunk = JSON.parse(data) as {
      choices: Array<{ delta?: { content?: string } }>;
      usage?: Usage | null;
    };
    content += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.usage) usageChunk = chunk.usage;
  }
  if (!done || !usageChunk) throw new Error('the stream has no usage chunk or no [DONE]');
  return {
    text: content,
    completionTokens: usageChunk.completion_tokens,
    hasMeteredFigures: usageChunk.gravity !== undefined,
  };
}

/** One request per server and mode, parsed in full, so a misconfigured server fails before any numbers. */
async function checkServers(targets: Target[], options: Options): Promise<void> {
  for (const target of targets) {
    for (const mode of options.modes) {
      const text = await sendRequest(target, requestBody(mode, options.tokensPerResponse), mode, true);
      target.completedRequests++;
      const checked = parseResponse(mode, text);
      if (checked.completionTokens !== options.tokensPerResponse || checked.text.length === 0)
        throw new Error(
          `metering ${target.metering}, ${mode}: expected ${options.tokensPerResponse} tokens, got ${checked.completionTokens} ('${checked.text}')`,
        );
      if (checked.hasMeteredFigures !== (target.metering === 'on'))
        throw new Error(
          `metering ${target.metering}, ${mode}: usage.gravity is ${checked.hasMeteredFigures ? 'present' : 'missing'}`,
        );
    }
  }
}

/** Closed loop: `concurrency` workers each send the next request as soon as the previous one ends. */
async function runRound(options: {
  target: Target;
  upstream: ManagedChild;
  mode: Mode;
  body: Buffer;
  concurrency: number;
  seconds: number;
  fatal: () => Error | null;
}): Promise<RoundResult> {
  const { target, mode, body } = options;
  const latenciesMs: number[] = [];
  let failedRequests = 0;
  let lastError: Error | undefined;
  // IPC is ordered: the reset lands before the read at the end of the round.
  target.child.process.send({ type: probeMessages.reset });
  const diskWriteBytesBefore = processDiskWriteBytes(target.child.process.pid);
  const gravityCpuBefore = processCpuMs(target.child.process.pid);
  const upstreamCpuBefore = processCpuMs(options.upstream.process.pid);
  const ownCpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  const deadline = startedAt + options.seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline && failedRequests < maxErrorsPerRound && !options.fatal()) {
      const sentAt = performance.now();
      try {
        await sendRequest(target, body, mode, false);
        latenciesMs.push(performance.now() - sentAt);
      } catch (error) {
        failedRequests++;
        lastError = error as Error;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  // Requests started before the deadline all finish: the round lasts until the last one does.
  const wallMs = performance.now() - startedAt;
  const fatal = options.fatal();
  if (fatal) throw fatal;
  if (failedRequests >= maxErrorsPerRound)
    throw new Error(
      `metering ${target.metering}, ${mode}: ${failedRequests} requests failed: ${lastError?.message}`,
    );
  const gravityCpuAfter = processCpuMs(target.child.process.pid);
  const diskWriteBytesAfter = processDiskWriteBytes(target.child.process.pid);
  const { stats: eventLoopDelay } = await askChild<{ stats: EventLoopDelayStats }>(
    target.child,
    { type: probeMessages.read },
    probeMessages.stats,
    probeTimeoutMs,
  );
  const upstreamCpuAfter = processCpuMs(options.upstream.process.pid);
  const ownCpu = process.cpuUsage(ownCpuBefore);
  const completedRequests = latenciesMs.length;
  target.completedRequests += completedRequests;
  const gravityCpuMs =
    gravityCpuBefore === null || gravityCpuAfter === null ? null : gravityCpuAfter - gravityCpuBefore;
  const sorted = latenciesMs.sort((a, b) => a - b);
  return {
    metering: target.metering,
    wallMs,
    completedRequests,
    failedRequests,
    requestsPerSecond: completedRequests / (wallMs / 1000),
    meanLatencyMs: sorted.reduce((sum, value) => sum + value, 0) / Math.max(1, sorted.length),
    p95LatencyMs: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))] ?? 0,
    gravityCpuMsPerRequest: gravityCpuMs === null ? null : gravityCpuMs / Math.max(1, completedRequests),
    gravityCpuCores: gravityCpuMs === null ? null : gravityCpuMs / wallMs,
    upstreamCpuCores:
      upstreamCpuBefore === null || upstreamCpuAfter === null
        ? null
        : (upstreamCpuAfter - upstreamCpuBefore) / wallMs,
    loadGeneratorCpuCores: (ownCpu.user + ownCpu.system) / 1000 / wallMs,
    eventLoopDelay,
    diskWriteBytesPerRequest:
      diskWriteBytesBefore === null || diskWriteBytesAfter === null
        ? null
        : (diskWriteBytesAfter - diskWriteBytesBefore) / Math.max(1, completedRequests),
  };
}

function signedPercent(fraction: number): string {
  return `${fraction >= 0 ? '+' : ''}${(fraction * 100).toFixed(1)}%`;
}

function formatRound(mode: Mode, pass: number, result: RoundResult): string {
  const optional = (value: number | null, digits: number) => (value === null ? 'n/a' : value.toFixed(digits));
  const diskKiB = result.diskWriteBytesPerRequest === null ? null : result.diskWriteBytesPerRequest / 1024;
  return (
    `  ${mode.padEnd(6)} pass ${pass + 1} metering ${result.metering.padEnd(3)} ` +
    `${result.requestsPerSecond.toFixed(0).padStart(5)} req/s  ` +
    `latency ${result.meanLatencyMs.toFixed(1)} mean ${result.p95LatencyMs.toFixed(1)} p95 ms  ` +
    `Gravity ${optional(result.gravityCpuCores, 2)} cores ${optional(result.gravityCpuMsPerRequest, 3)} ms CPU/req ` +
    `${optional(diskKiB, 2)} KiB disk/req, loop delay ${result.eventLoopDelay.p99Ms.toFixed(1)} p99 ` +
    `${result.eventLoopDelay.maxMs.toFixed(1)} max ms  ` +
    `(upstream ${optional(result.upstreamCpuCores, 2)}, load generator ${result.loadGeneratorCpuCores.toFixed(2)} cores)` +
    (result.failedRequests > 0 ? `  ${result.failedRequests} failed` : '')
  );
}

function configYaml(upstreamUrl: string, metering: Metering): string {
  // JSON is YAML: no quoting questions for the URL.
  return `${JSON.stringify(
    {
      engines: { up: { type: 'openai-upstream', baseUrl: upstreamUrl, maxConcurrentRequests: 256 } },
      models: { [modelId]: { engine: 'up' } },
      metering: { enabled: metering === 'on' },
    },
    null,
    2,
  )}\n`;
}

/** Counts the ON server's ledger rows after it has shut down (and so committed everything). */
function ledgerRowCount(dataDir: string): number {
  const database = new Database(path.join(dataDir, 'ledger.sqlite'), { readonly: true });
  try {
    return (database.prepare('SELECT COUNT(*) AS count FROM usage_records').get() as { count: number }).count;
  } finally {
    database.close();
  }
}

async function main(): Promise<void> {
  let options: Options;
  try {
    options = parseOptions();
  } catch (error) {
    // A usage mistake needs the message and the options, not a stack trace.
    console.error(`${(error as Error).message}\n\n${usage}`);
    process.exitCode = 2;
    return;
  }
  const command = [
    'npx tsx bench/metering/metering-overhead.ts',
    ...process.argv.slice(2).map(quoteArgument),
  ].join(' ');
  const machine = describeMachine();

  const children = new ChildProcessGroup();
  let fatalError: Error | null = null;
  children.unexpectedExit = (child) => {
    fatalError = new Error(
      `${child.name} exited during the run (${child.exitSignal ?? `code ${child.exitCode}`}); its output:\n${child.outputTail()}`,
    );
  };
  const workDir = await mkdtemp(path.join(options.workDirRoot, 'gravity-metering-bench-'));
  // Ctrl-C: stop the children (SIGTERM, then SIGKILL) and remove the work dir before leaving.
  const onSigint = () => {
    interrupted = true;
    fatalError = new Error('interrupted');
    console.error('\ninterrupted: stopping child processes');
    children
      .stopAll(2000)
      .then(() => rm(workDir, { recursive: true, force: true }))
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', onSigint);
  const filesystemType = (await statfs(workDir)).type;
  const filesystem = filesystemNames.get(filesystemType) ?? `statfs type 0x${filesystemType.toString(16)}`;
  const profileDir = options.cpuProfile
    ? path.resolve(options.cpuProfileDir ?? path.join(os.tmpdir(), `gravity-metering-profile-${Date.now()}`))
    : null;
  const targets: Target[] = [];
  try {
    const env = gravityChildEnvironment();
    const upstreamArgs = [
      '--import',
      'tsx',
      upstreamScript,
      '--port',
      '0',
      '--tokens',
      String(options.tokensPerResponse),
      '--delay-ms',
      '0',
    ];
    const upstream = await children.start({
      name: 'fake upstream',
      command: process.execPath,
      args: upstreamArgs,
      cwd: repoRoot,
      env,
      readyPattern: /^fake-upstream: listening on (\S+)/,
      startTimeoutMs,
    });
    const upstreamUrl = upstream.ready[1] as string;

    const gravityArgs = (metering: Metering, configPath: string, dataDir: string) => [
      ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', path.join(profileDir, `metering-${metering}`)] : []),
      '--import',
      'tsx',
      '--import',
      eventLoopProbe,
      'src/cli/main.ts',
      'serve',
      '--host',
      host,
      '--port',
      '0',
      '--config',
      configPath,
      '--data-dir',
      dataDir,
      '--log-level',
      'warn',
    ];
    const meteringStates: Metering[] = ['on', 'off'];
    const started = await Promise.all(
      meteringStates.map(async (metering) => {
        const configPath = path.join(workDir, `gravity-metering-${metering}.yaml`);
        const dataDir = path.join(workDir, `data-metering-${metering}`);
        await writeFile(configPath, configYaml(upstreamUrl, metering));
        const args = gravityArgs(metering, configPath, dataDir);
        const child = await children.start({
          name: `Gravity (metering ${metering})`,
          command: process.execPath,
          args,
          cwd: repoRoot,
          env,
          readyPattern: /^gravity: listening on (\S+) models=/,
          startTimeoutMs,
          ipc: true,
        });
        const url = new URL(child.ready[1] as string);
        if (url.hostname !== host) throw new Error(`Gravity listens on ${url.hostname}, expected ${host}`);
        return {
          target: {
            metering,
            child,
            port: Number(url.port),
            agent: new http.Agent({ keepAlive: true, maxSockets: options.concurrency }),
            dataDir,
            completedRequests: 0,
          } satisfies Target,
          commandLine: ['node', ...args].map(quoteArgument).join(' '),
        };
      }),
    );
    for (const { target } of started) targets.push(target);
    const [on, off] = targets as [Target, Target];

    console.log('Gravity metering overhead');
    console.log(`command:  ${command}`);
    console.log(
      `machine:  ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform}`,
    );
    console.log(`runtime:  Node ${process.version}`);
    console.log(
      `settings: concurrency ${options.concurrency} (closed loop), ${options.roundSeconds} s rounds, ` +
        `${options.rounds} measured round(s) per server and mode after a ${options.warmUpSeconds} s warm-up round ` +
        `per server, ${options.tokensPerResponse} tokens per response, modes ${options.modes.join(', ')}`,
    );
    console.log(
      `requests: POST /v1/chat/completions, max_tokens ${options.tokensPerResponse}; stream mode with ` +
        'stream_options.include_usage, json mode unstreamed; node:http keep-alive client in this process',
    );
    console.log(
      `upstream: fake OpenAI upstream (bench/support/fake-openai-upstream.ts) at ${upstreamUrl}, no delay`,
    );
    for (const { target, commandLine } of started)
      console.log(`gravity:  metering ${target.metering.padEnd(3)} ${commandLine}`);
    console.log(`ledger:   metering on writes ${path.join(on.dataDir, 'ledger.sqlite')} (${filesystem})`);
    console.log(
      'method:   rounds alternate on, off, on, off …; req/s = completed requests / wall time from the first ' +
        'request to the last response; loss = 1 - median(on) / median(off); Gravity CPU and disk writes ' +
        'from /proc; event-loop delay from a probe preloaded into both Gravity processes',
    );
    if (profileDir)
      console.log(`profile:  node --cpu-prof in both Gravity processes, into ${profileDir} (slows both)`);
    console.log('');

    await checkServers(targets, options);

    const fatal = () => fatalError;
    const results: ModeResult[] = [];
    for (const mode of options.modes) {
      const body = requestBody(mode, options.tokensPerResponse);
      const round = (target: Target, seconds: number) =>
        runRound({ target, upstream, mode, body, concurrency: options.concurrency, seconds, fatal });
      // Warm-up: JIT, connection pools and the ledger file's first pages, on both servers.
      for (const target of targets) await round(target, options.warmUpSeconds);
      const rounds: RoundResult[] = [];
      for (let pass = 0; pass < options.rounds; pass++) {
        for (const target of [on, off]) {
          const result = await round(target, options.roundSeconds);
          rounds.push(result);
          console.log(formatRound(mode, pass, result));
        }
      }
      const onRounds = rounds.filter((result) => result.metering === 'on');
      const offRounds = rounds.filter((result) => result.metering === 'off');
      const medianOn = median(onRounds.map((result) => result.requestsPerSecond));
      const medianOff = median(offRounds.map((result) => result.requestsPerSecond));
      const lossPercent = (1 - medianOn / medianOff) * 100;
      results.push({
        mode,
        medianOnRequestsPerSecond: medianOn,
        medianOffRequestsPerSecond: medianOff,
        onToOff: medianOn / medianOff,
        lossPercent,
        onSpread: spread(onRounds.map((result) => result.requestsPerSecond)),
        offSpread: spread(offRounds.map((result) => result.requestsPerSecond)),
        pairedOnToOff: median(
          onRounds.map((result, pass) => result.requestsPerSecond / offRounds[pass]!.requestsPerSecond),
        ),
        medianOnGravityCpuMsPerRequest: medianOrNull(onRounds.map((result) => result.gravityCpuMsPerRequest)),
        medianOffGravityCpuMsPerRequest: medianOrNull(
          offRounds.map((result) => result.gravityCpuMsPerRequest),
        ),
        medianOnEventLoopDelayMaxMs: median(onRounds.map((result) => result.eventLoopDelay.maxMs)),
        medianOffEventLoopDelayMaxMs: median(offRounds.map((result) => result.eventLoopDelay.maxMs)),
        pass: lossPercent <= lossTargetPercent,
        rounds,
      });
    }

    // The ON server's ledger must hold a row for every request it completed: otherwise it did not meter
    // what this run timed. Stopping it first makes it commit everything pending.
    const fatalBeforeStop = fatalError as Error | null;
    if (fatalBeforeStop) throw fatalBeforeStop;
    await children.stopAll(stopGraceMs);
    const ledgerRows = ledgerRowCount(on.dataDir);
    const ledgerComplete = ledgerRows >= on.completedRequests;

    console.log('');
    console.log(
      formatTable(
        ['mode', 'metering on req/s', 'metering off req/s', 'on/off', 'loss %'],
        results.map((result) => [
          result.mode,
          result.medianOnRequestsPerSecond.toFixed(0),
          result.medianOffRequestsPerSecond.toFixed(0),
          `${(result.onToOff * 100).toFixed(1)}%`,
          result.lossPercent.toFixed(1),
        ]),
      ),
    );
    console.log('');
    for (const result of results) {
      const cpuOn = result.medianOnGravityCpuMsPerRequest;
      const cpuOff = result.medianOffGravityCpuMsPerRequest;
      console.log(
        `${result.mode.padEnd(6)}    paired on/off ${(result.pairedOnToOff * 100).toFixed(1)}% (median over passes); ` +
          (cpuOn === null || cpuOff === null
            ? 'Gravity CPU per request n/a (no /proc)'
            : `Gravity CPU per request ${cpuOn.toFixed(3)} ms on, ${cpuOff.toFixed(3)} ms off ` +
              `(${signedPercent(cpuOn / cpuOff - 1)})`) +
          `; longest event-loop stall ${result.medianOnEventLoopDelayMaxMs.toFixed(1)} ms on, ` +
          `${result.medianOffEventLoopDelayMaxMs.toFixed(1)} ms off (median over rounds); ` +
          `rounds spread ${(result.onSpread * 100).toFixed(1)}% on, ${(result.offSpread * 100).toFixed(1)}% off`,
      );
    }
    console.log(
      `ledger:   ${ledgerRows} rows for ${on.completedRequests} requests completed against the metering-on server ` +
        `(${ledgerComplete ? 'complete' : 'MISSING ROWS'})`,
    );
    console.log('');
    const pass = results.every((result) => result.pass) && ledgerComplete;
    const losses = results.map((result) => `${result.mode} ${result.lossPercent.toFixed(1)}%`).join(', ');
    // When one server's own rounds differ by more than the target, the verdict says more about the
    // machine than about metering: say so rather than let a lucky PASS or an unlucky MISS stand alone.
    const noisiestSpread = Math.max(...results.flatMap((result) => [result.onSpread, result.offSpread]));
    const noisy = noisiestSpread * 100 > lossTargetPercent;
    console.log(
      `${pass ? 'PASS' : 'MISS'}  metering costs <= ${lossTargetPercent}% of request-path throughput: loss ${losses}` +
        (ledgerComplete ? '' : '; ledger rows missing') +
        (noisy
          ? ` (noisy: one server's rounds differ by up to ${(noisiestSpread * 100).toFixed(0)}%; ` +
            'rerun on a quiet machine or with more --rounds)'
          : '') +
        (profileDir ? ' (profiled run: not the benchmark figure)' : ''),
    );

    if (profileDir) {
      for (const metering of meteringStates) {
        const folder = path.join(profileDir, `metering-${metering}`);
        const files = (await readdir(folder).catch(() => [])).filter((file) => file.endsWith('.cpuprofile'));
        for (const file of files) {
          const summary = summarizeCpuProfile(readCpuProfile(path.join(folder, file)), {
            rootDir: repoRoot,
            top: 15,
            focus: 'src/metering/',
          });
          // One profile per thread: the module-loader thread runs none of Gravity's code.
          if (summary.topInclusiveFiles.length === 0) continue;
          console.log(`\nprofile, metering ${metering}: ${path.join(folder, file)}`);
          console.log(formatCpuProfileSummary(summary));
        }
      }
    }

    if (options.jsonPath) {
      const report = {
        command,
        recordedAt: new Date().toISOString(),
        machine,
        node: process.version,
        settings: {
          concurrency: options.concurrency,
          roundSeconds: options.roundSeconds,
          warmUpSeconds: options.warmUpSeconds,
          rounds: options.rounds,
          tokensPerResponse: options.tokensPerResponse,
          modes: options.modes,
          endpoint: '/v1/chat/completions',
          httpClient: 'node:http keep-alive agent, in the benchmark process',
          upstream: 'bench/support/fake-openai-upstream.ts, no inter-token delay',
          ledgerFilesystem: filesystem,
          cpuProfile: profileDir,
        },
        lossTargetPercent,
        results,
        ledger: { rows: ledgerRows, completedRequests: on.completedRequests, complete: ledgerComplete },
        pass,
        noisy,
      };
      await writeFile(options.jsonPath, `${JSON.stringify(report, null, 2)}\n`);
      console.log(`\nwrote ${options.jsonPath}`);
    }
  } finally {
    process.off('SIGINT', onSigint);
    for (const target of targets) target.agent.destroy();
    await children.stopAll(stopGraceMs);
    children.dispose();
    await rm(workDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  if (interrupted) return;
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
