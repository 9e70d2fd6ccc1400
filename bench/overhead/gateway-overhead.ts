// Gateway overhead beside peers: the latency Gravity adds, the throughput it keeps and the CPU it spends per
// request, next to nginx (and the Portkey gateway), all proxying the same fake OpenAI upstream on loopback.
// Every path (and, with --base, Gravity built from an earlier commit) is measured in alternating rounds of
// one run, so machine noise hits all alike; only ratios within a run compare. Each proxy runs in its own
// process on a CPU of its own, so its CPU time and memory can be read apart from /proc.
// Run with `npm run bench:overhead -- --help`.

import { rmSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
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
} from '../support/ab-rounds.js';
import { ChildProcessGroup } from '../support/child-processes.js';
import { printCpuProfiles } from '../support/cpu-profile-summary.js';
import { LoadClient, type RequestOutcome, throwOnFailures } from '../support/load-client.js';
import {
  allowedCpus,
  pinThisProcess,
  processCpuMs,
  processRssBytes,
  sumOrNull,
} from '../support/process-stats.js';
import {
  fixed,
  flag,
  formatTable,
  integer,
  integers,
  number,
  printPreamble,
  ratio,
  readOptions,
  text,
  verdict,
} from '../support/report-format.js';
import { type ProxyPath, type ResponseMode, startPaths, type UpstreamKind } from './overhead-paths.js';
import { ensurePortkeyInstalled, findOrInstallNginx, nginxVersion } from './peer-gateways.js';

const stopGraceMs = 10_000;
const modes = ['stream', 'json'] as const;
/** Requests at concurrency 1 are split into this many rounds, rotating the paths between rounds. */
const latencyRounds = 5;
const rssSampleIntervalMs = 100;
const maxErrorsPerRound = 20;
const bytesPerMb = 1e6;
/** The hot-path targets (issue 11): Gravity's CPU per request against nginx's, in the same run. */
const cpuTargets: Record<ResponseMode, number> = { stream: 9, json: 8 };
/** Issue 12's targets: added TTFT, throughput beside the peers at the highest concurrency, peak RSS. */
const targets = {
  addedTtftP50Ms: 1,
  streamingVersusPortkey: 4,
  streamingVersusNginx: 0.5,
  jsonVersusPortkey: 4,
  rssUnderLoadMb: 180,
};

const knownPeers = ['nginx', 'portkey'];
const peerList = (text: string) => (text === 'both' ? knownPeers : text === 'none' ? [] : text.split(','));

const options = readOptions(
  'bench:overhead',
  'Gravity beside nginx and Portkey, all proxying one fake OpenAI upstream on 127.0.0.1, in alternating rounds.',
  {
    peers: text(
      'both',
      'nginx, portkey, both or none; nginx is installed with apt-get when root in a container, Portkey from npm into bench/overhead/peers on first use',
      { placeholder: '<list>' },
    ),
    base: text(
      '',
      'also measure Gravity built from <commit> (a temporary git worktree), alternating with the working tree, and report working tree / base',
      { placeholder: '<commit>' },
    ),
    tsx: flag("run Gravity's sources through tsx instead of compiling them (tsc) first"),
    tokens: integer(16, 'completion tokens per response'),
    ttftRequests: integer(500, 'streams per path at concurrency 1 for time to first token', { quick: 50 }),
    gapRequests: integer(100, 'streams per path at concurrency 1 against the paced upstream', {
      quick: 20,
    }),
    delayMs: number(2, "the paced upstream's pause between tokens"),
    concurrency: integers([16, 64], 'closed-loop concurrencies for throughput and CPU', { quick: [16] }),
    seconds: number(3, 'length of each throughput round', { quick: 1 }),
    warmupSeconds: number(1, 'length of the unmeasured first round of each mode and concurrency', {
      quick: 0.5,
    }),
    rounds: integer(3, 'throughput rounds per path, mode and concurrency', { quick: 2 }),
    pin: text('on', 'each proxy on the last CPU, client and upstreams on the others', {
      choices: ['on', 'off'],
    }),
    nginx: text('', 'nginx binary (default /usr/sbin/nginx or nginx on PATH)', { placeholder: '<path>' }),
    json: text('', 'also write every round as JSON to <file>', { placeholder: '<file>' }),
    cpuProfDir: text(
      '',
      "profile the working tree's Gravity (node --cpu-prof) into <dir> and summarise it; profiling slows Gravity, so that run's figures are not the benchmark's",
      { placeholder: '<dir>' },
    ),
  },
  (options) => {
    for (const peer of peerList(options.peers))
      if (!knownPeers.includes(peer))
        throw new Error(`--peers: expected nginx, portkey, both or none, got '${options.peers}'`);
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
  proxy.refresh?.();
  const pids = proxy.pids();
  let peakRssBytes: number | null = null;
  const sample = () => {
    const bytes = sumOrNull(pids, processRssBytes);
    if (bytes !== null) peakRssBytes = Math.max(peakRssBytes ?? 0, bytes);
  };
  const timer = sampleRss ? setInterval(sample, rssSampleIntervalMs) : undefined;
  const before = sumOrNull(pids, processCpuMs);
  const result = await work();
  const after = sumOrNull(pids, processCpuMs);
  clearInterval(timer);
  if (sampleRss) sample();
  return { result, cpuMs: before === null || after === null ? null : after - before, peakRssBytes };
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
  const peers = new Set(peerList(options.peers));
  const cpuProfileDir = options.cpuProfDir ? path.resolve(options.cpuProfDir) : null;
  // Peers and builds first: installing and compiling are no part of any measurement.
  if (peers.has('portkey')) ensurePortkeyInstalled();
  const nginxBinary = peers.has('nginx') ? findOrInstallNginx(options.nginx) : null;
  const builds: GravityBuild[] = [];
  const children = new ChildProcessGroup();
  const client = new LoadClient();
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-overhead-bench-'));
  let fatalError: Error | null = null;
  children.unexpectedExit = (child) => {
    const how = child.exitSignal ?? `code ${child.exitCode}`;
    fatalError ??= new Error(`${child.name} exited during the run (${how}):\n${child.outputTail()}`);
    client.stop();
  };
  // Whatever way this process ends, no temp folder or worktree outlives it (children see to themselves).
  const removeAll = () => {
    for (const build of builds) build.remove();
    rmSync(workDir, { recursive: true, force: true });
  };
  process.on('exit', removeAll);
  process.once('SIGINT', () => process.exit(130));
  const paths: ProxyPath[] = [];
  try {
    builds.push(gravityBuild(null, !options.tsx));
    if (options.base) builds.push(gravityBuild(options.base, !options.tsx));
    const pinning = pinCpus(options.pin === 'on');
    const started = await startPaths({
      children,
      paths,
      workDir,
      proxyPrefix: pinning.proxyPrefix,
      tokensPerResponse: options.tokens,
      interTokenDelayMs: options.delayMs,
      builds,
      cpuProfileDir,
      portkey: peers.has('portkey'),
      nginxBinary,
    });
    printPreamble('Gateway overhead: Gravity beside its peers', 'bench:overhead', [
      `gravity:  ${builds.map((build) => build.label).join(' and ')}, ${options.tsx ? 'sources through tsx' : 'compiled with tsc, plain node'}`,
      ...(nginxBinary ? [`nginx:    ${nginxVersion(nginxBinary)}`] : []),
      `pinning:  ${pinning.description}`,
      `upstream: ${started.describe}`,
      ...paths.map((proxy) => `path:     ${proxy.label.padEnd(16)} ${proxy.commandLine}`),
      'client:   bench/support/load-client.ts on a worker thread, node:http keep-alive pools; a fresh, primed pool per throughput round',
      `method:   POST /v1/chat/completions, the same body on every path; TTFT = first non-empty content delta, ${options.ttftRequests} ` +
        `streams per path at c=1; gaps between content chunks: ${options.gapRequests} paced streams per path; req/s and CPU: closed loop, ` +
        `${options.rounds} rounds of ${options.seconds} s per path, mode and concurrency after a ${options.warmupSeconds} s warm-up; ` +
        'paths rotate round by round; CPU = utime+stime of the proxy processes from /proc; RSS = VmRSS (MB = 10^6 bytes)',
    ]);
    await checkPaths(client, paths, options.tokens);
    console.log(`checked:  ${paths.map((proxy) => proxy.label).join(', ')}: streams and JSON as expected`);
    const rssIdle = new Map(paths.map((proxy) => [proxy.name, sumOrNull(proxy.pids(), processRssBytes)]));

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
          throwOnFailures(result.outcomes, `${proxy.label}, ${upstream} streams`);
          if (fatalError) throw fatalError;
          return { outcomes: result.outcomes, cpuMs };
        },
      });
    const ttft = await latency('fast', options.ttftRequests);
    console.log(`measured: time to first token, ${options.ttftRequests} streams per path`);
    const gaps = await latency('paced', options.gapRequests);
    console.log(`measured: gaps between chunks, ${options.gapRequests} paced streams per path`);

    const throughput = new Map<string, ThroughputRound[]>(paths.map((proxy) => [proxy.name, []]));
    for (const mode of modes)
      for (const concurrency of options.concurrency) {
        const rounds = await alternatingRounds<ProxyPath, ThroughputRound>({
          variants: paths,
          rounds: options.rounds,
          warmUpRounds: 1,
          measure: async (proxy, round) => {
            const { result, cpuMs, peakRssBytes } = await withProxyStats(proxy, true, () =>
              client.run({
                requests: [proxy.request('fast', mode)],
                concurrency,
                seconds: round < 0 ? options.warmupSeconds : options.seconds,
                detail: 'light',
                freshConnections: true,
                prime: concurrency,
                maxErrors: maxErrorsPerRound,
              }),
            );
            if (fatalError) throw fatalError;
            throwOnFailures(result.outcomes, `${proxy.label}, ${mode} c=${concurrency}`);
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
    await children.stopAll(stopGraceMs);

    report({ options, paths, ttft, gaps, throughput, rssIdle });
    // Thread 0 of the Gravity pid runs Gravity's code.
    if (cpuProfileDir && gravityPid !== undefined)
      await printCpuProfiles(cpuProfileDir, {
        title: "Gravity CPU profile, main thread (profiled run: figures above are not the benchmark's)",
        select: (file) => file.includes(`.${gravityPid}.0.`),
        top: 20,
      });
    if (options.json) {
      const json = {
        options,
        paths: paths.map((proxy) => proxy.commandLine),
        throughput: Object.fromEntries(throughput),
      };
      await writeFile(options.json, `${JSON.stringify(json, null, 2)}\n`);
      console.log(`\nwrote ${options.json}`);
    }
  } finally {
    await client.close();
    await children.stopAll(stopGraceMs);
    children.dispose();
    removeAll();
    process.off('exit', removeAll);
  }
}

function report(results: {
  options: typeof options;
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
    modes.map((mode) => [mode, compare(cpuPerRound(mode), cpuBaseline)]),
  ) as Record<ResponseMode, Comparison[]>;
  const maxConcurrency = Math.max(...options.concurrency);
  const peakRssMb = (name: string) => {
    const peaks = throughput
      .get(name)!
      .flatMap((round) => (round.concurrency === maxConcurrency ? [round.peakRssBytes] : []));
    return peaks.some((peak) => peak === null) ? null : Math.max(...(peaks as number[])) / bytesPerMb;
  };

  // Figures the direct path lacks (CPU, memory: it has no proxy) read null, and their ratios '–'.
  type Row = [metric: string, read: (name: string) => number | null, digits: number];
  const rows: Row[] = [
    ['TTFT p50, c=1 (ms)', (name) => quantileOf(ttftOf(name), 0.5), 3],
    ['TTFT p99, c=1 (ms)', (name) => quantileOf(ttftOf(name), 0.99), 3],
    [`chunk gap mean, ${options.delayMs} ms paced (ms)`, (name) => mean(gapsOf(name)), 3],
    [`chunk gap p99, ${options.delayMs} ms paced (ms)`, (name) => quantileOf(gapsOf(name), 0.99), 3],
    ...modes.flatMap((mode) =>
      options.concurrency.map(
        (concurrency): Row => [
          `req/s ${mode} c=${concurrency}`,
          (name) => medianOfRounds(name, mode, concurrency),
          0,
        ],
      ),
    ),
    ['CPU ms / request, stream c=1', (name) => cpuAtConcurrency1(results.ttft.get(name)!), 3],
    ...modes.map(
      (mode): Row => [
        `CPU ms / request, ${mode} under load`,
        (name) => cpuComparisons[mode].find((row) => row.variant === name)?.median ?? null,
        3,
      ],
    ),
    ['RSS idle (MB)', (name) => nullableDivide(results.rssIdle.get(name), bytesPerMb), 1],
    [`RSS peak at c=${maxConcurrency} (MB)`, peakRssMb, 1],
  ];
  const label = (name: string) => paths.find((proxy) => proxy.name === name)!.label;
  // Gravity against direct (what it adds), each build against each peer, and the working tree against the base.
  const ratioColumns: Array<[title: string, numerator: string, denominator: string]> = [
    ['Gravity / direct', 'gravity', 'direct'],
    ...names
      .filter((name) => name.startsWith('gravity'))
      .flatMap((gravity) =>
        ['nginx', 'portkey']
          .filter((peer) => names.includes(peer))
          .map((peer): [string, string, string] => [`${label(gravity)} / ${peer}`, gravity, peer]),
      ),
    ...(names.includes('gravity-base')
      ? [
          [`${label('gravity')} / ${label('gravity-base')}`, 'gravity', 'gravity-base'] as [
            string,
            string,
            string,
          ],
        ]
      : []),
  ];
  console.log('');
  console.log(
    formatTable(
      ['metric', ...names.map(label), ...ratioColumns.map(([title]) => title)],
      rows.map(([metric, read, digits]) => [
        metric,
        ...names.map((name) => fixed(read(name), digits)),
        ...ratioColumns.map(([, numerator, denominator]) => ratio(read(numerator), read(denominator))),
      ]),
    ),
  );
  for (const mode of modes) {
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
  if (names.includes('nginx'))
    for (const mode of modes) {
      const gravity = cpuComparisons[mode].find((row) => row.variant === 'gravity');
      const base = cpuComparisons[mode].find((row) => row.variant === 'gravity-base');
      verdict(
        gravity?.ratio == null ? null : gravity.ratio <= cpuTargets[mode],
        `Gravity CPU per request <= ${cpuTargets[mode]}x nginx's, ${mode}: ` +
          `${fixed(gravity?.ratio, 2)}x (paired ${fixed(gravity?.pairedRatio, 2)}x)` +
          (base
            ? `; base ${label('gravity-base')}: ${fixed(base.ratio, 2)}x (paired ${fixed(base.pairedRatio, 2)}x)`
            : ''),
      );
    }
  const added = (quantileOf(ttftOf('gravity'), 0.5) ?? 0) - (quantileOf(ttftOf('direct'), 0.5) ?? 0);
  verdict(
    added <= targets.addedTtftP50Ms,
    `Gravity added p50 TTFT <= ${targets.addedTtftP50Ms} ms at c=1: ${added.toFixed(3)} ms`,
  );
  for (const [mode, peer, factor] of [
    ['stream', 'portkey', targets.streamingVersusPortkey],
    ['stream', 'nginx', targets.streamingVersusNginx],
    ['json', 'portkey', targets.jsonVersusPortkey],
  ] as const) {
    const throughput = (name: string) => medianOfRounds(name, mode, maxConcurrency);
    verdict(
      names.includes(peer) ? (throughput('gravity') ?? 0) >= factor * (throughput(peer) ?? Infinity) : null,
      `Gravity ${mode} req/s at c=${maxConcurrency} >= ${factor}x ${peer}'s: ` +
        (names.includes(peer) ? ratio(throughput('gravity'), throughput(peer)) : 'not run'),
    );
  }
  const peak = peakRssMb('gravity');
  verdict(
    peak === null ? null : peak < targets.rssUnderLoadMb,
    `Gravity RSS under load < ${targets.rssUnderLoadMb} MB: ${fixed(peak, 1)} MB`,
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

await main();
