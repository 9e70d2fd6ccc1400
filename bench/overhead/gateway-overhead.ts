// Gateway overhead beside peers: what Gravity adds to a request's latency, and how much throughput it keeps,
// next to the Portkey gateway and nginx, all proxying the same fake OpenAI upstream on loopback in one run.
// Four paths to the upstream (direct, Gravity, Portkey, nginx) are measured round by round in rotation so
// that machine noise hits all alike; the upstreams and each proxy run in their own process, so each proxy's
// memory and CPU time can be read apart from /proc. Run with `npx tsx bench/overhead/gateway-overhead.ts --help`.

import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ChildProcessGroup, gravityChildEnvironment } from '../support/child-processes.js';
import {
  type CpuProfileSummary,
  formatCpuProfileSummary,
  readCpuProfile,
  summarizeCpuProfile,
} from '../support/cpu-profile-summary.js';
import { describeMachine, positiveNumber, quoteArgument } from '../support/report-format.js';
import {
  checkPaths,
  formatRound,
  formatStalls,
  latencyPhase,
  noiseProbeMs,
  probeStalls,
  proxyRssBytes,
  rotated,
  rssSampleIntervalMs,
  type ThroughputRound,
  throughputRound,
} from './overhead-measure.js';
import { type PathName, type ProxyPath, pathLabels, startPaths } from './overhead-paths.js';
import {
  bytesPerMb,
  formatVerdict,
  type PathFigures,
  resultsTable,
  summarizePath,
  targets,
  verdicts,
} from './overhead-report.js';
import {
  ensurePortkeyInstalled,
  findNginx,
  installNginx,
  type NginxProcess,
  nginxVersion,
  peerPackageVersions,
} from './peer-gateways.js';
import { allowedCpus, pinThisProcess } from './process-stats.js';

const stopGraceMs = 10_000;
const ttftWarmUpRequests = 50;
const gapWarmUpRequests = 10;
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Set by Ctrl-C: what fails afterwards is the interruption's doing, not worth reporting. */
let interrupted = false;

type PeerName = 'portkey' | 'nginx';

const usage = `Usage: npx tsx bench/overhead/gateway-overhead.ts [options]

Measures the latency Gravity adds and the throughput it keeps next to the Portkey gateway and nginx, all
proxying one fake OpenAI upstream on 127.0.0.1. Installs Portkey into bench/overhead/peers on first run.

  --tokens <n>            completion tokens per response (default 16)
  --ttft-requests <n>     streamed requests per path at concurrency 1 for time to first token (default 500)
  --gap-requests <n>      streamed requests per path at concurrency 1 against the paced upstream, for the
                          gaps between content chunks (default 100)
  --delay-ms <ms>         the paced upstream's pause between tokens (default 2)
  --concurrency <list>    closed-loop concurrencies for throughput (default 16,64)
  --seconds <s>           length of each measured throughput round (default 3)
  --warmup-seconds <s>    unmeasured round per path before each mode and concurrency (default 1)
  --rounds <n>            measured throughput rounds per path, mode and concurrency (default 3)
  --peers <list>          portkey, nginx, both (default) or none
  --pin <on|off>          pin each proxy to the last CPU and the client and upstreams to the others (default on)
  --gravity-entry <file>  Gravity's CLI entry: a .js file runs with plain node, a .ts file through tsx
                          (default bin/gravity.js: the compiled build, as shipped; rebuilt before the run)
  --nginx <path>          nginx binary (default /usr/sbin/nginx, installed with apt-get when root in a container)
  --json <file>           also write the results as JSON
  --cpu-prof-dir <dir>    profile the Gravity child (node --cpu-prof) into <dir> and summarise its hot spots;
                          profiling slows Gravity, so that run's figures are not the benchmark's
  --help                  print this`;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      tokens: { type: 'string', default: '16' },
      'ttft-requests': { type: 'string', default: '500' },
      'gap-requests': { type: 'string', default: '100' },
      'delay-ms': { type: 'string', default: '2' },
      concurrency: { type: 'string', default: '16,64' },
      seconds: { type: 'string', default: '3' },
      'warmup-seconds': { type: 'string', default: '1' },
      rounds: { type: 'string', default: '3' },
      peers: { type: 'string', default: 'both' },
      pin: { type: 'string', default: 'on' },
      nginx: { type: 'string' },
      'gravity-entry': { type: 'string', default: 'bin/gravity.js' },
      json: { type: 'string' },
      'cpu-prof-dir': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const peerNames: PeerName[] = ['portkey', 'nginx'];
  const peers: PeerName[] =
    values.peers === 'both'
      ? peerNames
      : values.peers === 'none'
        ? []
        : values.peers.split(',').map((name) => {
            if (!peerNames.includes(name as PeerName))
              throw new Error(`--peers: expected portkey, nginx, both or none, got '${values.peers}'`);
            return name as PeerName;
          });
  if (values.pin !== 'on' && values.pin !== 'off')
    throw new Error(`--pin: expected on or off, got '${values.pin}'`);
  const concurrencies = [
    ...new Set(values.concurrency.split(',').map((text) => positiveNumber('concurrency', text, true))),
  ].sort((a, b) => a - b);
  return {
    tokensPerResponse: positiveNumber('tokens', values.tokens, true),
    ttftRequests: positiveNumber('ttft-requests', values['ttft-requests'], true),
    gapRequests: positiveNumber('gap-requests', values['gap-requests'], true),
    interTokenDelayMs: positiveNumber('delay-ms', values['delay-ms'], false),
    concurrencies,
    roundSeconds: positiveNumber('seconds', values.seconds, false),
    warmUpSeconds: positiveNumber('warmup-seconds', values['warmup-seconds'], false),
    rounds: positiveNumber('rounds', values.rounds, true),
    peers,
    pin: values.pin === 'on',
    nginxBinary: values.nginx,
    gravityEntry: path.resolve(values['gravity-entry']),
    jsonPath: values.json,
    cpuProfileDir: values['cpu-prof-dir'] ? path.resolve(values['cpu-prof-dir']) : null,
  };
}

type Options = ReturnType<typeof parseOptions>;

function versionOf(manifestPath: string): string {
  try {
    return (JSON.parse(readFileSync(manifestPath, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** nginx to use, installing Debian's package where that is safe; null (with the reason) to skip the path. */
function resolveNginx(explicit: string | undefined): { binary: string | null; skipped: string | null } {
  const found = findNginx(explicit);
  if (found) return { binary: found, skipped: null };
  if (explicit) throw new Error(`--nginx: no such file '${explicit}'`);
  const why = installNginx();
  const installed = findNginx(undefined);
  return installed ? { binary: installed, skipped: null } : { binary: null, skipped: why };
}

/**
 * The proxy under test gets a CPU to itself; the client (this process) and both upstreams share the rest,
 * so every path faces the same client and upstream capacity and each proxy the same CPU.
 */
function pinCpus(wanted: boolean): { proxyPrefix: string[]; description: string } {
  if (!wanted) return { proxyPrefix: [], description: 'off (--pin off)' };
  const allowed = allowedCpus();
  if (!allowed || allowed.length < 2) return { proxyPrefix: [], description: 'off (fewer than 2 CPUs)' };
  const proxyCpu = allowed.at(-1) as number;
  const clientCpus = allowed.slice(0, -1);
  if (!pinThisProcess(clientCpus)) return { proxyPrefix: [], description: 'off (taskset failed)' };
  return {
    proxyPrefix: ['taskset', '-c', String(proxyCpu)],
    description: `each proxy on CPU ${proxyCpu}; client (this process) and both upstreams on CPU ${clientCpus.join(',')}`,
  };
}

/** Folders of this benchmark in the OS temp dir carry the pid of the run that made them. */
const ownerPidFile = 'owner-pid';
const tempDirPattern = /^gravity-overhead-(bench|nginx)-/;

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temp folders of earlier runs whose process is gone: a run killed outright (SIGKILL, or tsx
 * force-killing it when Ctrl-C is slow to be acknowledged) cannot remove its own.
 */
async function sweepStaleTempDirs(): Promise<void> {
  const entries = await readdir(os.tmpdir()).catch(() => [] as string[]);
  for (const entry of entries.filter((name) => tempDirPattern.test(name))) {
    const dir = path.join(os.tmpdir(), entry);
    const owner = Number(await readFile(path.join(dir, ownerPidFile), 'utf8').catch(() => ''));
    if (Number.isInteger(owner) && owner > 0 && !isRunning(owner))
      await rm(dir, { recursive: true, force: true });
  }
}

/** Summaries of Gravity's main-thread profile; the other threads' files are listed by busy time. */
async function gravityProfiles(
  dir: string,
  gravityPid: number,
): Promise<Array<{ file: string; summary: CpuProfileSummary }>> {
  // Node names them CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 runs Gravity's code.
  const files = (await readdir(dir).catch(() => [] as string[]))
    .filter((file) => file.endsWith('.cpuprofile') && file.includes(`.${gravityPid}.`))
    .sort();
  const profiles: Array<{ file: string; summary: CpuProfileSummary }> = [];
  for (const file of files) {
    const fullPath = path.join(dir, file);
    const summary = summarizeCpuProfile(readCpuProfile(fullPath), { rootDir: repoRoot, top: 20 });
    if (!file.includes(`.${gravityPid}.0.`)) {
      console.log(`\nGravity CPU profile, other thread: ${fullPath}: busy ${summary.busyMs.toFixed(0)} ms`);
      continue;
    }
    profiles.push({ file: fullPath, summary });
    console.log(`\nGravity CPU profile, main thread: ${fullPath}`);
    console.log(formatCpuProfileSummary(summary));
  }
  if (profiles.length === 0) console.log(`\nno Gravity CPU profile found in ${dir}`);
  return profiles;
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
  if (path.basename(options.gravityEntry) === 'gravity.js') {
    // Measure Gravity as shipped: the compiled build, fresh from the sources.
    execFileSync('npm', ['run', 'build'], { cwd: repoRoot, stdio: 'ignore' });
  }
  const command = [
    'npx tsx bench/overhead/gateway-overhead.ts',
    ...process.argv.slice(2).map(quoteArgument),
  ].join(' ');
  const machine = describeMachine();
  const startedAt = performance.now();

  const children = new ChildProcessGroup();
  let fatalError: Error | null = null;
  children.unexpectedExit = (child) => {
    fatalError = new Error(
      `${child.name} exited during the run (${child.exitSignal ?? `code ${child.exitCode}`}); its output:\n${child.outputTail()}`,
    );
  };
  const fatal = () => fatalError;
  await sweepStaleTempDirs();
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-overhead-bench-'));
  await writeFile(path.join(workDir, ownerPidFile), String(process.pid));
  let nginxDir: string | null = null;
  let nginx: NginxProcess | null = null;
  const proxies: ProxyPath[] = [];
  const cleanUp = async () => {
    for (const proxy of proxies) proxy.agent.destroy();
    await Promise.all([children.stopAll(stopGraceMs), nginx?.stop(stopGraceMs)]);
    children.dispose();
    await rm(workDir, { recursive: true, force: true });
    if (nginxDir) await rm(nginxDir, { recursive: true, force: true });
  };
  // Last resort, whatever way this process ends: no temp dir outlives it (the children are seen to by the
  // group and by NginxProcess, in their own exit handlers).
  const removeTempDirs = () => {
    for (const dir of [workDir, nginxDir]) if (dir) rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', removeTempDirs);
  const onSignal = (signal: NodeJS.Signals) => {
    // Ctrl-C reaches this process more than once (from the terminal, relayed by npx and tsx): the handler
    // stays installed so a repeat cannot kill the process mid clean-up, and one clean-up is enough.
    if (interrupted) return;
    interrupted = true;
    fatalError = new Error('interrupted');
    console.error(`\n${signal}: stopping child processes`);
    cleanUp().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    // Peers first: installing them is no part of any measurement.
    const notes: string[] = [];
    const peers = new Set(options.peers);
    if (peers.has('portkey')) ensurePortkeyInstalled();
    const nginxFound = peers.has('nginx')
      ? resolveNginx(options.nginxBinary)
      : { binary: null, skipped: null };
    if (nginxFound.skipped) {
      notes.push(`nginx path skipped: nginx is not installed (${nginxFound.skipped})`);
      console.error(`nginx path skipped: ${nginxFound.skipped}`);
    }
    const pinning = pinCpus(options.pin);

    const env = gravityChildEnvironment();
    const started = await startPaths({
      children,
      proxies,
      workDir,
      env,
      proxyPrefix: pinning.proxyPrefix,
      tokensPerResponse: options.tokensPerResponse,
      interTokenDelayMs: options.interTokenDelayMs,
      gravityEntry: options.gravityEntry,
      cpuProfileDir: options.cpuProfileDir,
      portkey: peers.has('portkey'),
      nginxBinary: nginxFound.binary,
      onNginxDir: (dir) => {
        nginxDir = dir;
      },
      onNginx: (startedNginx) => {
        nginx = startedNginx;
      },
      onFatal: (error) => {
        fatalError = error;
      },
    });
    const paths = proxies.map((proxy) => proxy.name);
    const peerVersions = peerPackageVersions();
    const hasPortkey = paths.includes('portkey');
    const versions = {
      node: process.version,
      gravity: versionOf(path.join(repoRoot, 'package.json')),
      gravityEntry: path.relative(repoRoot, options.gravityEntry),
      tsx: started.gravityThroughTsx ? versionOf(path.join(repoRoot, 'node_modules/tsx/package.json')) : null,
      portkeyGateway: hasPortkey ? peerVersions['@portkey-ai/gateway'] : null,
      hono: hasPortkey ? peerVersions.hono : null,
      honoNodeServer: hasPortkey ? peerVersions['@hono/node-server'] : null,
      nginx: nginxFound.binary ? nginxVersion(nginxFound.binary) : null,
    };
    const maxConcurrency = Math.max(...options.concurrencies);
    const client =
      'node:http keep-alive agent in the main thread of this process (a fresh pool per throughput round, ' +
      'primed with one request per connection before the clock starts)';

    console.log('Gateway overhead: Gravity beside Portkey and nginx');
    console.log(`command:  ${command}`);
    console.log(
      `machine:  ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform}`,
    );
    console.log(
      `versions: Node ${versions.node}; Gravity ${versions.gravity} (${versions.gravityEntry}` +
        `${versions.tsx ? ` through tsx ${versions.tsx}` : ', plain node'})` +
        (versions.portkeyGateway
          ? `; @portkey-ai/gateway ${versions.portkeyGateway} (hono ${versions.hono}, @hono/node-server ${versions.honoNodeServer})`
          : '') +
        (versions.nginx ? `; nginx ${versions.nginx}` : ''),
    );
    console.log(`pinning:  ${pinning.description}`);
    console.log(`client:   ${client}`);
    console.log(
      `upstream: bench/support/fake-openai-upstream.ts, ${options.tokensPerResponse} tokens per response: ` +
        `fast (whole stream in one write) at ${started.fastUpstreamUrl}, paced (${options.interTokenDelayMs} ms ` +
        `between tokens) at ${started.pacedUpstreamUrl}`,
    );
    for (const proxy of proxies) console.log(`path:     ${proxy.label.padEnd(7)} ${proxy.commandLine}`);
    console.log(
      'method:   POST /v1/chat/completions, the same body on every path; TTFT = arrival of the first ' +
        `non-empty content delta, ${options.ttftRequests} streams per path at concurrency 1 on the fast ` +
        `upstream; gaps = between content chunks, ${options.gapRequests} streams per path on the paced ` +
        `upstream; req/s = closed loop, median of ${options.rounds} rounds of ${options.roundSeconds} s per ` +
        `path (after a ${options.warmUpSeconds} s warm-up); paths rotate round by round; RSS = VmRSS ` +
        `(MB = 10^6 bytes), idle after the checks and peak sampled every ${rssSampleIntervalMs} ms in the ` +
        `c=${maxConcurrency} rounds; CPU = utime+stime of the proxy processes over the measured requests`,
    );
    if (options.cpuProfileDir)
      console.log(`profile:  node --cpu-prof in the Gravity child, into ${options.cpuProfileDir} (slows it)`);
    for (const note of notes) console.log(`note:     ${note}`);
    console.log('');

    const noise = await probeStalls(pinning.proxyPrefix);
    console.log(
      `noise:    a ${noiseProbeMs} ms spin loop on the client CPU saw ${formatStalls(noise.client)}; ` +
        `on ${pinning.proxyPrefix.length > 0 ? 'the proxy CPU' : 'another process'} ${formatStalls(noise.proxy)} ` +
        '(time the machine took the CPU away: tail latencies include it)',
    );
    await checkPaths(proxies, options.tokensPerResponse);
    console.log(
      `checked:  ${paths.map((name) => pathLabels[name]).join(', ')}: streams and JSON as expected`,
    );
    const rssIdleBytes = new Map(proxies.map((proxy) => [proxy.name, proxyRssBytes(proxy)]));

    const ttft = await latencyPhase({
      proxies,
      upstream: 'fast',
      requestsPerPath: options.ttftRequests,
      warmUpRequests: ttftWarmUpRequests,
      tokensPerResponse: options.tokensPerResponse,
      fatal,
    });
    console.log(`measured: time to first token, ${options.ttftRequests} streams per path`);
    const gaps = await latencyPhase({
      proxies,
      upstream: 'paced',
      requestsPerPath: options.gapRequests,
      warmUpRequests: gapWarmUpRequests,
      tokensPerResponse: options.tokensPerResponse,
      fatal,
    });
    console.log(`measured: inter-chunk gaps, ${options.gapRequests} paced streams per path`);

    const rounds: ThroughputRound[] = [];
    for (const mode of ['stream', 'json'] as const) {
      for (const concurrency of options.concurrencies) {
        const round = (proxy: ProxyPath, seconds: number, index: number) =>
          throughputRound({
            proxy,
            upstreams: started.upstreams,
            mode,
            concurrency,
            seconds,
            round: index,
            tokensPerResponse: options.tokensPerResponse,
            fatal,
          });
        // Warm-up: JIT and connection pools (client to proxy and proxy to upstream) on every path.
        for (const proxy of proxies) await round(proxy, options.warmUpSeconds, -1);
        for (let index = 0; index < options.rounds; index++) {
          for (const proxy of rotated(proxies, index)) {
            const result = await round(proxy, options.roundSeconds, index);
            rounds.push(result);
            console.log(formatRound(result, options.rounds, bytesPerMb));
          }
        }
      }
    }

    // Everything measured: stop the children (Gravity writes its CPU profile as it exits).
    const fatalBeforeStop = fatalError as Error | null;
    if (fatalBeforeStop) throw fatalBeforeStop;
    const gravityPid = proxies.find((proxy) => proxy.name === 'gravity')?.pids()[0];
    await Promise.all([
      children.stopAll(stopGraceMs),
      nginx ? (nginx as NginxProcess).stop(stopGraceMs) : null,
    ]);

    const figures = new Map<PathName, PathFigures>(
      paths.map((name) => [
        name,
        summarizePath({
          path: name,
          ttft,
          gaps,
          rounds,
          concurrencies: options.concurrencies,
          rssIdleBytes: rssIdleBytes.get(name) ?? null,
        }),
      ]),
    );
    console.log('');
    console.log(resultsTable(figures, options.concurrencies, options.interTokenDelayMs));
    console.log('');
    const judged = verdicts(figures, options.concurrencies);
    for (const verdict of judged)
      console.log(formatVerdict(verdict) + (options.cpuProfileDir ? ' (profiled run)' : ''));
    if (maxConcurrency !== 64)
      console.log(
        `note: the throughput targets name c=64; this run's highest concurrency is ${maxConcurrency}`,
      );
    const elapsedSeconds = (performance.now() - startedAt) / 1000;
    console.log(`\nran for ${elapsedSeconds.toFixed(0)} s`);

    const profiles =
      options.cpuProfileDir && gravityPid !== undefined
        ? await gravityProfiles(options.cpuProfileDir, gravityPid)
        : [];

    if (options.jsonPath) {
      const report = {
        command,
        recordedAt: new Date().toISOString(),
        machine,
        versions,
        settings: {
          tokensPerResponse: options.tokensPerResponse,
          ttftRequests: options.ttftRequests,
          gapRequests: options.gapRequests,
          interTokenDelayMs: options.interTokenDelayMs,
          concurrencies: options.concurrencies,
          roundSeconds: options.roundSeconds,
          warmUpSeconds: options.warmUpSeconds,
          rounds: options.rounds,
          pinning: pinning.description,
          client,
          endpoint: '/v1/chat/completions',
          cpuProfileDir: options.cpuProfileDir,
        },
        paths: Object.fromEntries(proxies.map((proxy) => [proxy.name, proxy.commandLine])),
        notes,
        noise,
        figures: Object.fromEntries(figures),
        targets,
        verdicts: judged,
        rounds,
        // In measurement order, so outliers can be placed in time (a round switch, a GC).
        samples: Object.fromEntries(
          paths.map((name) => [
            name,
            {
              ttftMs: ttft.timings.get(name)!.map((timing) => timing.firstContentMs),
              pacedTtftMs: gaps.timings.get(name)!.map((timing) => timing.firstContentMs),
            },
          ]),
        ),
        profiles,
        elapsedSeconds,
      };
      await writeFile(options.jsonPath, `${JSON.stringify(report, null, 2)}\n`);
      console.log(`\nwrote ${options.jsonPath}`);
    }
  } finally {
    if (!interrupted) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await cleanUp();
      process.off('exit', removeTempDirs);
    }
  }
}

main().catch((error: unknown) => {
  if (interrupted) return;
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
