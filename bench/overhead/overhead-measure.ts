// The overhead benchmark's measurements: a full check of every path, latency at concurrency 1 (time to
// first token, gaps between chunks), closed-loop throughput rounds with the proxy's CPU and memory read from
// /proc, and a probe of how often the machine itself takes a CPU away.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { type ManagedChild, processCpuMs } from '../support/child-processes.js';
import { percentile } from '../support/report-format.js';
import {
  fastModel,
  newAgent,
  type PathName,
  type ProxyPath,
  pacedModel,
  pathLabels,
  type UpstreamKind,
} from './overhead-paths.js';
import { processRssBytes, type SpinStalls, spinStalls, sumOrNull } from './process-stats.js';
import {
  closedLoop,
  type ResponseMode,
  type StreamTiming,
  timedStream,
  wholeResponse,
} from './sse-load-client.js';

const prompt = 'Write one short sentence about gravity.';
/** A round stops early after this many failed requests: its numbers would mean nothing. */
const maxErrorsPerRound = 20;
/** Requests at concurrency 1 are split into this many rounds, rotating the paths between rounds. */
const latencyRounds = 5;
export const rssSampleIntervalMs = 100;
export const noiseProbeMs = 1000;
export const stallThresholdMs = 1;

export function mean(values: number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((sum, value) => sum + value, 0) / values.length;
}

export function median(values: number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}

/** The paths in a different order each round, so none always runs first (or right after another). */
export function rotated<T>(items: T[], by: number): T[] {
  const shift = by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

export function requestBody(model: string, mode: ResponseMode, tokensPerResponse: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      model,
      messages: [{ role: 'user', content: prompt }],
      max_tokens: tokensPerResponse,
      ...(mode === 'stream' ? { stream: true } : {}),
    }),
  );
}

/** Parses one complete SSE body: content chunks, their text, and whether it ends with [DONE]. */
function parseStreamText(text: string): { contentChunks: number; content: string; endsWithDone: boolean } {
  let contentChunks = 0;
  let content = '';
  for (const event of text.replaceAll('\r\n', '\n').split('\n\n')) {
    const data = event
      .split('\n')
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(line.startsWith('data: ') ? 6 : 5))
      .join('\n');
    if (!data || data === '[DONE]') continue;
    const chunk = JSON.parse(data) as { choices?: Array<{ delta?: { content?: unknown } }> };
    const delta = chunk.choices?.[0]?.delta?.content;
    if (typeof delta === 'string' && delta !== '') {
      contentChunks++;
      content += delta;
    }
  }
  return { contentChunks, content, endsWithDone: text.trimEnd().endsWith('data: [DONE]') };
}

/**
 * One streamed request per upstream and one JSON request per path, parsed in full: every stream must carry
 * one content chunk per token and end with [DONE], and every path must return the same text.
 */
export async function checkPaths(proxies: ProxyPath[], tokensPerResponse: number): Promise<void> {
  const failures: string[] = [];
  let expectedContent: string | null = null;
  for (const proxy of proxies) {
    const problems: string[] = [];
    for (const upstream of ['fast', 'paced'] as const) {
      const model = upstream === 'fast' ? fastModel : pacedModel;
      const { status, text } = await wholeResponse(
        proxy.target(upstream),
        proxy.agent,
        requestBody(model, 'stream', tokensPerResponse),
      );
      if (status !== 200) {
        problems.push(`${upstream} stream: HTTP ${status}: ${text.slice(0, 300)}`);
        continue;
      }
      try {
        const parsed = parseStreamText(text);
        if (parsed.contentChunks !== tokensPerResponse)
          problems.push(
            `${upstream} stream: ${parsed.contentChunks} content chunks, expected ${tokensPerResponse}`,
          );
        if (!parsed.endsWithDone) problems.push(`${upstream} stream: does not end with data: [DONE]`);
        expectedContent ??= parsed.content;
        if (parsed.content !== expectedContent)
          problems.push(`${upstream} stream: content '${parsed.content}', expected '${expectedContent}'`);
      } catch (error) {
        problems.push(`${upstream} stream: ${(error as Error).message}: ${text.slice(0, 300)}`);
      }
    }
    const { status, text } = await wholeResponse(
      proxy.target('fast'),
      proxy.agent,
      requestBody(fastModel, 'json', tokensPerResponse),
    );
    if (status !== 200) problems.push(`json: HTTP ${status}: ${text.slice(0, 300)}`);
    else {
      try {
        const parsed = JSON.parse(text) as { choices?: Array<{ message?: { content?: unknown } }> };
        const content = parsed.choices?.[0]?.message?.content;
        if (typeof content !== 'string' || content === '' || content !== expectedContent)
          problems.push(`json: content ${JSON.stringify(content)}, expected '${expectedContent}'`);
      } catch (error) {
        problems.push(`json: ${(error as Error).message}: ${text.slice(0, 300)}`);
      }
    }
    for (const problem of problems) failures.push(`${proxy.label}: ${problem}`);
  }
  if (failures.length > 0) throw new Error(`path check failed:\n  ${failures.join('\n  ')}`);
}

/**
 * How often the machine takes a CPU away for over a millisecond, on the client's CPU (in this process) and
 * on the proxies' (in a child pinned there), at the same time: the floor under every p99 this run reports.
 */
export async function probeStalls(
  proxyPrefix: string[],
): Promise<{ client: SpinStalls; proxy: SpinStalls | null }> {
  const code = `process.stdout.write(JSON.stringify((${spinStalls.toString()})(${noiseProbeMs}, ${stallThresholdMs})))`;
  const [command, ...args] = [...proxyPrefix, process.execPath, '-e', code];
  const child = spawn(command as string, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  const exited = once(child, 'close');
  // Let the child's runtime start, so both spins overlap.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const client = spinStalls(noiseProbeMs, stallThresholdMs);
  await exited;
  let proxy: SpinStalls | null = null;
  try {
    proxy = JSON.parse(output) as SpinStalls;
  } catch {}
  return { client, proxy };
}

export function formatStalls(stalls: SpinStalls | null): string {
  return stalls === null
    ? 'n/a'
    : `${stalls.stalls} stalls > ${stallThresholdMs} ms (max ${stalls.maxStallMs.toFixed(1)} ms, ` +
        `${stalls.stalledMs.toFixed(0)} ms lost)`;
}

/** Summed VmRSS of a path's proxy processes, in bytes; null for direct or without /proc. */
export function proxyRssBytes(proxy: ProxyPath): number | null {
  const pids = proxy.pids();
  return pids.length === 0 ? null : sumOrNull(pids, processRssBytes);
}

/** Samples the proxy's summed RSS while a round runs; the returned function stops and gives the peak. */
function startRssSampler(proxy: ProxyPath): () => number | null {
  if (proxy.pids().length === 0) return () => null;
  let peak: number | null = null;
  const sample = () => {
    const bytes = proxyRssBytes(proxy);
    if (bytes !== null) peak = Math.max(peak ?? 0, bytes);
  };
  sample();
  const timer = setInterval(sample, rssSampleIntervalMs);
  return () => {
    clearInterval(timer);
    sample();
    return peak;
  };
}

export interface LatencyPhaseResult {
  timings: Map<PathName, StreamTiming[]>;
  /** Proxy CPU over the measured requests only: one request's cost with nothing else in flight. */
  cpuMs: Map<PathName, number | null>;
}

/** Sequential streamed requests, `requestsPerPath` measured per path, in rounds that rotate the paths. */
export async function latencyPhase(options: {
  proxies: ProxyPath[];
  upstream: UpstreamKind;
  requestsPerPath: number;
  warmUpRequests: number;
  tokensPerResponse: number;
  fatal: () => Error | null;
}): Promise<LatencyPhaseResult> {
  const { proxies } = options;
  const body = requestBody(
    options.upstream === 'fast' ? fastModel : pacedModel,
    'stream',
    options.tokensPerResponse,
  );
  const timings = new Map<PathName, StreamTiming[]>(proxies.map((proxy) => [proxy.name, []]));
  const cpuMs = new Map<PathName, number | null>(
    proxies.map((proxy) => [proxy.name, proxy.pids().length === 0 ? null : 0]),
  );
  const run = async (proxy: ProxyPath, count: number, keep: boolean) => {
    for (let index = 0; index < count; index++) {
      const fatal = options.fatal();
      if (fatal) throw fatal;
      const timing = await timedStream(proxy.target(options.upstream), proxy.agent, body);
      if (timing.contentChunks !== options.tokensPerResponse || !timing.done)
        throw new Error(
          `${proxy.label}: a stream had ${timing.contentChunks} content chunks${timing.done ? '' : ' and no [DONE]'}`,
        );
      if (keep) timings.get(proxy.name)!.push(timing);
    }
  };
  for (const proxy of proxies) await run(proxy, options.warmUpRequests, false);
  const perRound = Math.ceil(options.requestsPerPath / latencyRounds);
  for (let round = 0; round < latencyRounds; round++) {
    for (const proxy of rotated(proxies, round)) {
      const remaining = options.requestsPerPath - timings.get(proxy.name)!.length;
      // One unmeasured request first: a socket the server closed while idle is not the proxy's latency.
      await run(proxy, 1, false);
      const before = sumOrNull(proxy.pids(), processCpuMs);
      await run(proxy, Math.min(perRound, remaining), true);
      const after = sumOrNull(proxy.pids(), processCpuMs);
      const total = cpuMs.get(proxy.name);
      cpuMs.set(
        proxy.name,
        total == null || before === null || after === null ? null : total + after - before,
      );
    }
  }
  return { timings, cpuMs };
}

export interface ThroughputRound {
  path: PathName;
  mode: ResponseMode;
  concurrency: number;
  /** 0-based; -1 for a warm-up round. */
  round: number;
  wallMs: number;
  completedRequests: number;
  failedRequests: number;
  requestsPerSecond: number;
  p50LatencyMs: number;
  p99LatencyMs: number;
  /** The proxy's CPU over the round; null for direct or without /proc. */
  proxyCpuMs: number | null;
  proxyCpuCores: number | null;
  upstreamCpuCores: number | null;
  clientCpuCores: number;
  /** Highest sampled RSS of the proxy's processes during the round, in bytes. */
  proxyPeakRssBytes: number | null;
}

/** Opens `count` connections with one request each (retried once: a server may close an idle socket). */
async function prime(proxy: ProxyPath, body: Buffer, count: number): Promise<void> {
  const once = () => wholeResponse(proxy.target('fast'), proxy.agent, body);
  await Promise.all(
    Array.from({ length: count }, async () => {
      const result = await once().catch(once);
      if (result.status !== 200)
        throw new Error(`${proxy.label}: HTTP ${result.status} while priming: ${result.text.slice(0, 300)}`);
    }),
  );
}

/** One closed-loop round against the fast upstream, on a fresh, primed connection pool. */
export async function throughputRound(options: {
  proxy: ProxyPath;
  upstreams: ManagedChild[];
  mode: ResponseMode;
  concurrency: number;
  seconds: number;
  round: number;
  tokensPerResponse: number;
  fatal: () => Error | null;
}): Promise<ThroughputRound> {
  const { proxy } = options;
  const body = requestBody(fastModel, options.mode, options.tokensPerResponse);
  proxy.refresh();
  proxy.agent.destroy();
  proxy.agent = newAgent();
  await prime(proxy, body, options.concurrency);
  const proxyCpuBefore = sumOrNull(proxy.pids(), processCpuMs);
  const upstreamPids = options.upstreams.map((child) => child.process.pid as number);
  const upstreamCpuBefore = sumOrNull(upstreamPids, processCpuMs);
  const clientCpuBefore = process.cpuUsage();
  const stopSampler = startRssSampler(proxy);
  const result = await closedLoop({
    target: proxy.target('fast'),
    agent: proxy.agent,
    body,
    mode: options.mode,
    concurrency: options.concurrency,
    seconds: options.seconds,
    maxErrors: maxErrorsPerRound,
    stop: () => options.fatal() !== null,
  });
  const proxyPeakRssBytes = stopSampler();
  const proxyCpuAfter = sumOrNull(proxy.pids(), processCpuMs);
  const upstreamCpuAfter = sumOrNull(upstreamPids, processCpuMs);
  const clientCpu = process.cpuUsage(clientCpuBefore);
  const fatal = options.fatal();
  if (fatal) throw fatal;
  if (result.failedRequests >= maxErrorsPerRound)
    throw new Error(
      `${proxy.label}, ${options.mode} c=${options.concurrency}: ${result.failedRequests} requests failed: ${result.lastError?.message}`,
    );
  const sorted = result.latenciesMs.sort((a, b) => a - b);
  const proxyCpuMs =
    proxy.pids().length === 0 || proxyCpuBefore === null || proxyCpuAfter === null
      ? null
      : proxyCpuAfter - proxyCpuBefore;
  return {
    path: proxy.name,
    mode: options.mode,
    concurrency: options.concurrency,
    round: options.round,
    wallMs: result.wallMs,
    completedRequests: result.completedRequests,
    failedRequests: result.failedRequests,
    requestsPerSecond: result.completedRequests / (result.wallMs / 1000),
    p50LatencyMs: percentile(sorted, 0.5),
    p99LatencyMs: percentile(sorted, 0.99),
    proxyCpuMs,
    proxyCpuCores: proxyCpuMs === null ? null : proxyCpuMs / result.wallMs,
    upstreamCpuCores:
      upstreamCpuBefore === null || upstreamCpuAfter === null
        ? null
        : (upstreamCpuAfter - upstreamCpuBefore) / result.wallMs,
    clientCpuCores: (clientCpu.user + clientCpu.system) / 1000 / result.wallMs,
    proxyPeakRssBytes,
  };
}

export function formatRound(result: ThroughputRound, rounds: number, bytesPerMb: number): string {
  const optional = (value: number | null, digits: number) => (value === null ? '-' : value.toFixed(digits));
  return (
    `  ${result.mode.padEnd(6)} c=${String(result.concurrency).padEnd(3)} round ${result.round + 1}/${rounds} ` +
    `${pathLabels[result.path].padEnd(7)} ${result.requestsPerSecond.toFixed(0).padStart(6)} req/s  ` +
    `latency p50 ${result.p50LatencyMs.toFixed(1)} p99 ${result.p99LatencyMs.toFixed(1)} ms  ` +
    `CPU cores: proxy ${optional(result.proxyCpuCores, 2)}, upstream ${optional(result.upstreamCpuCores, 2)}, ` +
    `client ${result.clientCpuCores.toFixed(2)}` +
    (result.proxyPeakRssBytes === null
      ? ''
      : `  proxy RSS ${(result.proxyPeakRssBytes / bytesPerMb).toFixed(0)} MB`) +
    (result.failedRequests > 0 ? `  ${result.failedRequests} failed` : '')
  );
}
