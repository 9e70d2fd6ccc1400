// Gateway overhead beside peers: the latency Gravity adds, the throughput it keeps and the CPU it spends per
// request, next to nginx (and the Portkey gateway), all proxying the same fake OpenAI upstream on loopback.
// Every path (and, with --base, Gravity built from an earlier commit) is measured in alternating rounds of
// one run, so machine noise hits all alike; only ratios within a run compare. Each proxy runs in its own
// process on a CPU of its own, so its CPU time and memory can be read apart from /proc.
// Run with `npm run bench:overhead -- --help`.

import { rmSync } from 'node:fs';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { quantileOf } from '../../src/core/quantile.js';
import {
  alternatingRounds,
  type Comparison,
  compare,
  comparisonTable,
  type GravityBuild,
  gravityBuild,
  repoRoot,
} from '../support/ab-rounds.js';
import { ChildProcessGroup, gravityChildEnvironment } from '../support/child-processes.js';
import {
  formatCpuProfileSummary,
  readCpuProfile,
  summarizeCpuProfile,
} from '../support/cpu-profile-summary.js';
import { LoadClient, type RequestOutcome } from '../support/load-client.js';
import {
  allowedCpus,
  pinThisProcess,
  processCpuMs,
  processRssBytes,
  sumOrNull,
} from '../support/process-stats.js';
import {
  fixed,
  formatTable,
  positiveNumber,
  printPreamble,
  ratio,
  readOptions,
} from '../support/report-format.js';
import { type ProxyPath, type ResponseMode, startPaths, type UpstreamKind } from './overhead-paths.js';
import {
  ensurePortkeyInstalled,
  findNginx,
  installNginx,
  type NginxProcess,
  nginxVersion,
} from './peer-gateways.js';

const stopGraceMs = 10_000;
/** Requests at concurrency 1 are split into this many rounds, rotating the paths between rounds. */
const latencyRounds = 5;
const rssSampleIntervalMs = 100;
const maxErrorsPerRound = 20;
const bytesPerMb = 1e6;
/** The hot-path targets (issue 11): Gravity's CPU per request against nginx's, in the same run. */
const cpuTargets: Record<ResponseMode, number> = { stream: 9, json: 8 };
const targets = {
  addedTtftP99Ms: 1,
  streamingVersusPortkey: 4,
  streamingVersusNginx: 0.5,
  rssUnderLoadMb: 150,
};

const usage = `Usage: npm run bench:overhead -- [options]

Gravity beside nginx and Portkey, all proxying one fake OpenAI upstream on 127.0.0.1, in alternating rounds.

  --peers <list>          nginx, portkey, both (default) or none; nginx is installed with apt-get when root in
                          a container; Portkey from npm into bench/overhead/peers on first use
  --base <commit>         also measure Gravity built from <commit> (a temporary git worktree), alternating
                          with the working tree, and report working tree / base
  --tsx                   run Gravity's sources through tsx instead of compiling them (tsc) first
  --tokens <n>            completion tokens per response (default 16)
  --ttft-requests <n>     streams per path at concurrency 1 for time to first token (default 500)
  --gap-requests <n>      streams per path at concurrency 1 against the paced upstream (default 100)
  --delay-ms <ms>         the paced upstream's pause between tokens (default 2)
  --concurrency <list>    closed-loop concurrencies for throughput and CPU (default 16,64)
  --seconds <s>           length of each throughput round (default 3)
  --warmup-seconds <s>    length of the unmeasured first round of each mode and concurrency (default 1)
  --rounds <n>            throughput rounds per path, mode and concurrency (default 3)
  --quick                 a short run: 50 and 20 latency streams, c=16, 2 rounds of 1 s
  --pin <on|off>          each proxy on the last CPU, client and upstreams on the others (default on)
  --nginx <path>          nginx binary (default /usr/sbin/nginx or nginx on PATH)
  --json <file>           also write every round as JSON
  --cpu-prof-dir <dir>    profile the working tree's Gravity (node --cpu-prof) and summarise it; profiling
                          slows Gravity, so that run's figures are not the benchmark's
  --help                  print this`;

const parseOptions = () =>
  readOptions(
    usage,
    {
      peers: 'both',
      base: '',
      tsx: false as boolean,
      tokens: '16',
      'ttft-requests': '500',
      'gap-requests': '100',
      'delay-ms': '2',
      concurrency: '16,64',
      seconds: '3',
      'warmup-seconds': '1',
      rounds: '3',
      pin: 'on',
      nginx: '',
      json: '',
      'cpu-prof-dir': '',
    },
    {
      'ttft-requests': '50',
      'gap-requests': '20',
      concurrency: '16',
      seconds: '1',
      'warmup-seconds': '0.5',
      rounds: '2',
    },
    (values) => {
      const known = ['portkey', 'nginx'];
      const peers = values.peers === 'both' ? known : values.peers === 'none' ? [] : values.peers.split(',');
      for (const peer of peers)
        if (!known.includes(peer))
          throw new Error(`--peers: expected nginx, portkey, both or none, got '${values.peers}'`);
      if (values.pin !== 'on' && values.pin !== 'off')
        throw new Error(`--pin: expected on or off, got '${values.pin}'`);
      return {
        peers,
        base: values.base || null,
        compiled: !values.tsx,
        tokensPerResponse: positiveNumber('tokens', values.tokens, true),
        ttftRequests: positiveNumber('ttft-requests', values['ttft-requests'], true),
        gapRequests: positiveNumber('gap-requests', values['gap-requests'], true),
        interTokenDelayMs: positiveNumber('delay-ms', values['delay-ms'], false),
        concurrencies: [
          ...new Set(values.concurrency.split(',').map((text) => positiveNumber('concurrency', text, true))),
        ],
        roundSeconds: positiveNumber('seconds', values.seconds, false),
        warmUpSeconds: positiveNumber('warmup-seconds', values['warmup-seconds'], false),
        rounds: positiveNumber('rounds', values.rounds, true),
        pin: values.pin === 'on',
        nginxBinary: values.nginx || undefined,
        jsonPath: values.json || undefined,
        cpuProfileDir: values['cpu-prof-dir'] ? path.resolve(values['cpu-prof-dir']) : null,
      };
    },
  );

/** Each proxy gets the last CPU to itself; the client and both upstreams share the rest. */
function pinCpus(wanted: boolean): { proxyPrefix: string[]; description: string } {
  if (!wanted) return { proxyPrefix: [], description: 'off (--pin off)' };
  const allowed = allowedCpus();
  if (!allowed || allowed.length < 2) return { proxyPrefix: [], description: 'off (fewer than 2 CPUs)' };
  const proxyCpu = allowed.at(-1) as number;
  const rest = allowed.slice(0, -1);
  if (!pinThisProcess(rest)) return { proxyPrefix: [], description: 'off (taskset failed)' };
  return {
    proxyPrefix: ['taskset', '-c', String(proxyCpu)],
    description: `each proxy on CPU ${proxyCpu}; client (a worker thread of this process) and upstreams on CPU ${rest.join(',')}`,
  };
}

/** The proxy's CPU over `work` (null for direct or without /proc) and, optionally, its peak RSS. */
async function withProxyStats<T>(proxy: ProxyPath, sampleRss: boolean, work: () => Promise<T>) {
  proxy.refresh();
  const pids = proxy.pids();
  let peakRssBytes: number | null = null;
  const sample = () => {
    const bytes = pids.length === 0 ? null : sumOrNull(pids, processRssBytes);
    if (bytes !== null) peakRssBytes = Math.max(peakRssBytes ?? 0, bytes);
  };
  const timer = sampleRss ? setInterval(sample, rssSampleIntervalMs) : undefined;
  const before = pids.length === 0 ? null : sumOrNull(pids, processCpuMs);
  const result = await work();
  const after = pids.length === 0 ? null : sumOrNull(pids, processCpuMs);
  clearInterval(timer);
  if (sampleRss) sample();
  return { result, cpuMs: before === null || after === null ? null : after - before, peakRssBytes };
}

function failIfBroken(proxy: ProxyPath, outcomes: RequestOutcome[], what: string): void {
  const failed = outcomes.filter((outcome) => outcome.error !== null);
  if (failed.length > 0)
    throw new Error(
      `${proxy.label}, ${what}: ${failed.length} of ${outcomes.length} failed: ${failed[0]?.error}`,
    );
}

/** One stream per upstream and one JSON request per path, read in full: same tokens and text everywhere. */
async function checkPaths(client: LoadClient, paths: ProxyPath[], tokens: number): Promise<void> {
  let expected: string | null = null;
  const problems: string[] = [];
  for (const proxy of paths)
    for (const [upstream, mode] of [
      ['fast', 'stream'],
      ['paced', 'stream'],
      ['fast', 'json'],
    ] as const) {
      const run = await client.run({
        requests: [proxy.request(upstream, mode)],
        maxRequests: 1,
        detail: 'timing',
        keepBody: true,
      });
      const outcome = run.outcomes[0] as RequestOutcome;
      expected ??= outcome.content ?? null;
      if (outcome.error) problems.push(`${proxy.label} ${upstream} ${mode}: ${outcome.error}`);
      else if (mode === 'stream' && outcome.contentChunks !== tokens)
        problems.push(
          `${proxy.label} ${upstream} stream: ${outcome.contentChunks} content chunks, expected ${tokens}`,
        );
      else if (outcome.content !== expected)
        problems.push(
          `${proxy.label} ${upstream} ${mode}: content '${outcome.content}', expected '${expected}'`,
        );
    }
  if (problems.length > 0) throw new Error(`path check failed:\n  ${problems.join('\n  ')}`);
}

interface LatencyRound {
  outcomes: RequestOutcome[];
  cpuMs: number | null;
}

interface ThroughputRound {
  mode: ResponseMode;
  concurrency: number;
  round: number;
  requestsPerSecond: number;
  e2eP50Ms: number | null;
  e2eP99Ms: number | null;
  proxyCpuMsPerRequest: number | null;
  proxyCpuCores: number | null;
  clientCpuCores: number;
  peakRssBytes: number | null;
}

async function main(): Promise<void> {
  const options = parseOptions();
  const peers = new Set(options.peers);
  // Peers and builds first: installing and compiling are no part of any measurement.
  if (peers.has('portkey')) ensurePortkeyInstalled();
  let nginxBinary = peers.has('nginx') ? findNginx(options.nginxBinary) : null;
  if (peers.has('nginx') && !nginxBinary) {
    if (options.nginxBinary) throw new Error(`--nginx: no such file '${options.nginxBinary}'`);
    const why = installNginx();
    nginxBinary = findNginx(undefined);
    if (!nginxBinary) console.error(`nginx path skipped: ${why}`);
  }
  const builds: GravityBuild[] = [];
  const children = new ChildProcessGroup();
  const client = new LoadClient();
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-overhead-bench-'));
  let nginx: NginxProcess | null = null;
  let nginxDir: string | null = null;
  let fatalError: Error | null = null;
  const fail = (error: Error) => {
    fatalError ??= error;
    client.stop();
  };
  children.unexpectedExit = (child) =>
    fail(
      new Error(
        `${child.name} exited during the run (${child.exitSignal ?? `code ${child.exitCode}`}):\n${child.outputTail()}`,
      ),
    );
  // Whatever way this process ends, no temp folder or worktree outlives it (children see to themselves).
  const removeAll = () => {
    for (const build of builds) build.remove();
    for (const dir of [workDir, nginxDir]) if (dir) rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', removeAll);
  process.once('SIGINT', () => process.exit(130));
  const paths: ProxyPath[] = [];
  try {
    builds.push(gravityBuild(null, options.compiled));
    if (options.base) builds.push(gravityBuild(options.base, options.compiled));
    const pinning = pinCpus(options.pin);
    const started = await startPaths({
      children,
      paths,
      workDir,
      env: gravityChildEnvironment(),
      proxyPrefix: pinning.proxyPrefix,
      tokensPerResponse: options.tokensPerResponse,
      interTokenDelayMs: options.interTokenDelayMs,
      builds,
      cpuProfileDir: options.cpuProfileDir,
      portkey: peers.has('portkey'),
      nginxBinary,
      onNginx: (started, dir) => {
        nginx = started;
        nginxDir = dir;
      },
      onFatal: fail,
    });
    printPreamble('Gateway overhead: Gravity beside its peers', 'bench:overhead', [
      `gravity:  ${builds.map((build) => build.label).join(' and ')}, ${options.compiled ? 'compiled with tsc, plain node' : 'sources through tsx'}`,
      ...(nginxBinary ? [`nginx:    ${nginxVersion(nginxBinary)}`] : []),
      `pinning:  ${pinning.description}`,
      `upstream: ${started.describe}`,
      ...paths.map((proxy) => `path:     ${proxy.label.padEnd(16)} ${proxy.commandLine}`),
      'client:   bench/support/load-client.ts on a worker thread, node:http keep-alive pools; a fresh, primed pool per throughput round',
      `method:   POST /v1/chat/completions, the same body on every path; TTFT = first non-empty content delta, ${options.ttftRequests} ` +
        `streams per path at c=1; gaps between content chunks: ${options.gapRequests} paced streams per path; req/s and CPU: closed loop, ` +
        `${options.rounds} rounds of ${options.roundSeconds} s per path, mode and concurrency after a ${options.warmUpSeconds} s warm-up; ` +
        'paths rotate round by round; CPU = utime+stime of the proxy processes from /proc; RSS = VmRSS (MB = 10^6 bytes)',
    ]);
    await checkPaths(client, paths, options.tokensPerResponse);
    console.log(`checked:  ${paths.map((proxy) => proxy.label).join(', ')}: streams and JSON as expected`);
    const rssIdle = new Map(
      paths.map((proxy) => [
        proxy.name,
        proxy.pids().length === 0 ? null : sumOrNull(proxy.pids(), processRssBytes),
      ]),
    );

    const latency = (upstream: UpstreamKind, requests: number) =>
      alternatingRounds<ProxyPath, LatencyRound>({
        variants: paths,
        rounds: latencyRounds,
        warmUpRounds: 1,
        measure: async (proxy) => {
          const { result, cpuMs } = await withProxyStats(proxy, false, () =>
            client.run({
              requests: [proxy.request(upstream, 'stream')],
              maxRequests: Math.ceil(requests / latencyRounds),
              detail: 'timing',
            }),
          );
          failIfBroken(proxy, result.outcomes, `${upstream} streams`);
          if (fatalError) throw fatalError;
          return { outcomes: result.outcomes, cpuMs };
        },
      });
    const ttft = await latency('fast', options.ttftRequests);
    console.log(`measured: time to first token, ${options.ttftRequests} streams per path`);
    const gaps = await latency('paced', options.gapRequests);
    console.log(`measured: gaps between chunks, ${options.gapRequests} paced streams per path`);

    const throughput = new Map<string, ThroughputRound[]>(paths.map((proxy) => [proxy.name, []]));
    for (const mode of ['stream', 'json'] as const)
      for (const concurrency of options.concurrencies) {
        const rounds = await alternatingRounds<ProxyPath, ThroughputRound>({
          variants: paths,
          rounds: options.rounds,
          warmUpRounds: 1,
          measure: async (proxy, round) => {
            const { result, cpuMs, peakRssBytes } = await withProxyStats(proxy, true, () =>
              client.run({
                requests: [proxy.request('fast', mode)],
                concurrency,
                seconds: round < 0 ? options.warmUpSeconds : options.roundSeconds,
                detail: 'light',
                freshConnections: true,
                prime: concurrency,
                maxErrors: maxErrorsPerRound,
              }),
            );
            if (fatalError) throw fatalError;
            failIfBroken(proxy, result.outcomes, `${mode} c=${concurrency}`);
            const e2e = result.outcomes.map((outcome) => outcome.e2eMs);
            return {
              mode,
              concurrency,
              round,
              requestsPerSecond: result.outcomes.length / (result.wallMs / 1000),
              e2eP50Ms: quantileOf(e2e, 0.5),
              e2eP99Ms: quantileOf(e2e, 0.99),
              proxyCpuMsPerRequest: cpuMs === null ? null : cpuMs / result.outcomes.length,
              proxyCpuCores: cpuMs === null ? null : cpuMs / result.wallMs,
              clientCpuCores: result.clientCpuMs / result.wallMs,
              peakRssBytes,
            };
          },
          onResult: (proxy, round, result) =>
            console.log(
              `  ${mode.padEnd(6)} c=${String(concurrency).padEnd(3)} round ${round + 1}/${options.rounds} ${proxy.label.padEnd(16)} ` +
                `${result.requestsPerSecond.toFixed(0).padStart(6)} req/s  latency p50 ${fixed(result.e2eP50Ms, 1)} ` +
                `p99 ${fixed(result.e2eP99Ms, 1)} ms  proxy ${fixed(result.proxyCpuMsPerRequest, 3)} ms CPU/req, ` +
                `${fixed(result.proxyCpuCores, 2)} cores; client ${result.clientCpuCores.toFixed(2)} cores`,
            ),
        });
        for (const [name, list] of rounds) throughput.get(name)!.push(...list);
      }
    if (fatalError) throw fatalError;
    const gravityPid = paths.find((proxy) => proxy.name === 'gravity')?.pids()[0];
    // Everything measured: stop the children (Gravity writes its CPU profile as it exits).
    await Promise.all([children.stopAll(stopGraceMs), (nginx as NginxProcess | null)?.stop(stopGraceMs)]);

    report({ options, paths, ttft, gaps, throughput, rssIdle });
    if (options.cpuProfileDir && gravityPid !== undefined)
      await printProfiles(options.cpuProfileDir, gravityPid);
    if (options.jsonPath) {
      const json = {
        options,
        paths: paths.map((proxy) => proxy.commandLine),
        throughput: Object.fromEntries(throughput),
      };
      await writeFile(options.jsonPath, `${JSON.stringify(json, null, 2)}\n`);
      console.log(`\nwrote ${options.jsonPath}`);
    }
  } finally {
    await client.close();
    await Promise.all([children.stopAll(stopGraceMs), (nginx as NginxProcess | null)?.stop(stopGraceMs)]);
    children.dispose();
    removeAll();
    process.off('exit', removeAll);
  }
}

function report(results: {
  options: ReturnType<typeof parseOptions>;
  paths: ProxyPath[];
  ttft: Map<string, LatencyRound[]>;
  gaps: Map<string, LatencyRound[]>;
  throughput: Map<string, ThroughputRound[]>;
  rssIdle: Map<string, number | null>;
}): void {
  const { options, paths, throughput } = results;
  const names = paths.map((proxy) => proxy.name);
  const pooled = (rounds: LatencyRound[], read: (outcome: RequestOutcome) => number[]) =>
    rounds.flatMap((round) => round.outcomes.flatMap(read));
  const ttftOf = (name: string) =>
    pooled(results.ttft.get(name)!, (outcome) => (outcome.ttftMs === null ? [] : [outcome.ttftMs]));
  const gapsOf = (name: string) => pooled(results.gaps.get(name)!, (outcome) => outcome.gapsMs ?? []);
  const ofMode = (name: string, mode: ResponseMode, concurrency?: number) =>
    throughput
      .get(name)!
      .filter(
        (round) => round.mode === mode && (concurrency === undefined || round.concurrency === concurrency),
      );
  const medianOfRounds = (name: string, mode: ResponseMode, concurrency: number) =>
    quantileOf(
      ofMode(name, mode, concurrency).map((round) => round.requestsPerSecond),
      0.5,
    );
  const cpuPerRound = (mode: ResponseMode) =>
    new Map(names.map((name) => [name, ofMode(name, mode).map((round) => round.proxyCpuMsPerRequest)]));
  const cpuBaseline = names.includes('nginx') ? 'nginx' : 'gravity';
  const cpuComparisons = Object.fromEntries(
    (['stream', 'json'] as const).map((mode) => [mode, compare(cpuPerRound(mode), cpuBaseline)]),
  ) as Record<ResponseMode, Comparison[]>;
  const maxConcurrency = Math.max(...options.concurrencies);

  type Row = [label: string, read: (name: string) => number | null, digits: number, againstDirect: boolean];
  const rows: Row[] = [
    ['TTFT p50, c=1 (ms)', (name) => quantileOf(ttftOf(name), 0.5), 3, true],
    ['TTFT p99, c=1 (ms)', (name) => quantileOf(ttftOf(name), 0.99), 3, true],
    [`chunk gap mean, ${options.interTokenDelayMs} ms paced (ms)`, (name) => mean(gapsOf(name)), 3, true],
    [
      `chunk gap p99, ${options.interTokenDelayMs} ms paced (ms)`,
      (name) => quantileOf(gapsOf(name), 0.99),
      3,
      true,
    ],
    ...(['stream', 'json'] as const).flatMap((mode) =>
      options.concurrencies.map(
        (concurrency): Row => [
          `req/s ${mode} c=${concurrency}`,
          (name) => medianOfRounds(name, mode, concurrency),
          0,
          true,
        ],
      ),
    ),
    ['CPU ms / request, stream c=1', (name) => cpuAtConcurrency1(results.ttft.get(name)!), 3, false],
    ...(['stream', 'json'] as const).map(
      (mode): Row => [
        `CPU ms / request, ${mode} under load`,
        (name) => cpuComparisons[mode].find((row) => row.variant === name)?.median ?? null,
        3,
        false,
      ],
    ),
    ['RSS idle (MB)', (name) => nullableDivide(results.rssIdle.get(name), bytesPerMb), 1, false],
    [
      `RSS peak at c=${maxConcurrency} (MB)`,
      (name) => {
        const peaks = throughput
          .get(name)!
          .filter((round) => round.concurrency === maxConcurrency)
          .map((round) => round.peakRssBytes);
        return peaks.some((peak) => peak === null) ? null : Math.max(...(peaks as number[])) / bytesPerMb;
      },
      1,
      false,
    ],
  ];
  const gravities = names.filter((name) => name.startsWith('gravity'));
  const label = (name: string) => paths.find((proxy) => proxy.name === name)!.label;
  // Gravity against direct (what it adds), against each peer, and against the base build.
  const ratioColumns: Array<[string, (row: Row) => string]> = [
    ['Gravity / direct', (row) => (row[3] ? ratio(row[1]('gravity'), row[1]('direct')) : '–')],
    ...gravities.flatMap((gravity) =>
      ['nginx', 'portkey']
        .filter((peer) => names.includes(peer))
        .map((peer): [string, (row: Row) => string] => [
          `${label(gravity)} / ${peer}`,
          (row) => ratio(row[1](gravity), row[1](peer)),
        ]),
    ),
    ...(names.includes('gravity-base')
      ? [
          [
            `${label('gravity')} / ${label('gravity-base')}`,
            (row: Row) => ratio(row[1]('gravity'), row[1]('gravity-base')),
          ] as [string, (row: Row) => string],
        ]
      : []),
  ];
  console.log('');
  console.log(
    formatTable(
      ['metric', ...names.map(label), ...ratioColumns.map(([title]) => title)],
      rows.map((row) => [
        row[0],
        ...names.map((name) => fixed(row[1](name), row[2])),
        ...ratioColumns.map(([, cell]) => cell(row)),
      ]),
    ),
  );
  for (const mode of ['stream', 'json'] as const) {
    console.log(`\nproxy CPU ms per request, ${mode}, over every round of every concurrency:`);
    const rows = cpuComparisons[mode].filter((row) => row.variant !== 'direct');
    console.log(
      comparisonTable(
        'path',
        cpuBaseline,
        rows.map((row) => ({ ...row, variant: label(row.variant) })),
      ),
    );
  }

  // Verdicts on the working tree's Gravity.
  console.log('');
  const verdict = (pass: boolean | null, target: string, figure: string) =>
    console.log(`${pass === null ? 'n/a ' : pass ? 'PASS' : 'MISS'}  ${target}: ${figure}`);
  if (names.includes('nginx'))
    for (const mode of ['stream', 'json'] as const) {
      const gravity = cpuComparisons[mode].find((row) => row.variant === 'gravity');
      const base = cpuComparisons[mode].find((row) => row.variant === 'gravity-base');
      verdict(
        gravity?.ratio == null ? null : gravity.ratio <= cpuTargets[mode],
        `Gravity CPU per request <= ${cpuTargets[mode]}x nginx's, ${mode}`,
        `${fixed(gravity?.ratio, 2)}x (paired ${fixed(gravity?.pairedRatio, 2)}x)` +
          (base
            ? `; base ${label('gravity-base')}: ${fixed(base.ratio, 2)}x (paired ${fixed(base.pairedRatio, 2)}x)`
            : ''),
      );
    }
  const added = (quantileOf(ttftOf('gravity'), 0.99) ?? 0) - (quantileOf(ttftOf('direct'), 0.99) ?? 0);
  verdict(
    added <= targets.addedTtftP99Ms,
    `Gravity added p99 TTFT <= ${targets.addedTtftP99Ms} ms at c=1`,
    `${added.toFixed(3)} ms`,
  );
  const streaming = (name: string) => medianOfRounds(name, 'stream', maxConcurrency);
  for (const [peer, factor] of [
    ['portkey', targets.streamingVersusPortkey],
    ['nginx', targets.streamingVersusNginx],
  ] as const)
    verdict(
      names.includes(peer) ? (streaming('gravity') ?? 0) >= factor * (streaming(peer) ?? Infinity) : null,
      `Gravity streaming req/s at c=${maxConcurrency} >= ${factor}x ${peer}'s`,
      names.includes(peer) ? ratio(streaming('gravity'), streaming(peer)) : 'not run',
    );
  const peak = rows.at(-1)![1]('gravity');
  verdict(
    peak === null ? null : peak < targets.rssUnderLoadMb,
    `Gravity RSS under load < ${targets.rssUnderLoadMb} MB`,
    `${fixed(peak, 1)} MB`,
  );
}

const mean = (values: number[]) =>
  values.length === 0 ? null : values.reduce((sum, value) => sum + value, 0) / values.length;
const nullableDivide = (value: number | null | undefined, by: number) => (value == null ? null : value / by);

function cpuAtConcurrency1(rounds: LatencyRound[]): number | null {
  if (rounds.some((round) => round.cpuMs === null)) return null;
  const requests = rounds.reduce((sum, round) => sum + round.outcomes.length, 0);
  return rounds.reduce((sum, round) => sum + (round.cpuMs as number), 0) / requests;
}

/** Gravity's main-thread profile, summarised (thread 0 of the Gravity pid runs Gravity's code). */
async function printProfiles(dir: string, pid: number): Promise<void> {
  const files = (await readdir(dir)).filter(
    (file) => file.endsWith('.cpuprofile') && file.includes(`.${pid}.0.`),
  );
  for (const file of files) {
    console.log(
      `\nGravity CPU profile, main thread: ${path.join(dir, file)} (profiled run: figures above are not the benchmark's)`,
    );
    console.log(
      formatCpuProfileSummary(
        summarizeCpuProfile(readCpuProfile(path.join(dir, file)), { rootDir: repoRoot, top: 20 }),
      ),
    );
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
