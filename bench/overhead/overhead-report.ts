// Turns the overhead benchmark's raw measurements into per-path figures, the one results table (values,
// ratios against direct and Gravity against each peer) and the PASS/MISS verdicts on the targets.

import { formatTable, percentile } from '../support/report-format.js';
import { type LatencyPhaseResult, mean, median, type ThroughputRound } from './overhead-measure.js';
import { type PathName, pathLabels } from './overhead-paths.js';
import type { ResponseMode } from './sse-load-client.js';

export const bytesPerMb = 1e6;

export const targets = {
  addedTtftP99Ms: 1,
  streamingVersusPortkey: 4,
  streamingVersusNginx: 0.5,
  rssUnderLoadMb: 150,
};

export interface PathFigures {
  path: PathName;
  ttftP50Ms: number;
  ttftP99Ms: number;
  ttftMeanMs: number;
  ttftSamples: number;
  /** Time to first token against the paced upstream (one delay after the request at the upstream). */
  pacedTtftP50Ms: number;
  gapMeanMs: number;
  gapP99Ms: number;
  gapSamples: number;
  /** Median over measured rounds, by mode and concurrency. */
  requestsPerSecond: Record<ResponseMode, Record<number, number>>;
  rssIdleMb: number | null;
  rssPeakUnderLoadMb: number | null;
  /** Proxy CPU seconds per 1000 streamed requests at concurrency 1 (the TTFT requests). */
  cpuSecondsPerThousandRequestsAtConcurrency1: number | null;
  /** Proxy CPU seconds per 1000 completed requests over all measured throughput rounds of a mode. */
  cpuSecondsPerThousandRequests: Record<ResponseMode, number | null>;
}

const modes: ResponseMode[] = ['stream', 'json'];

export function summarizePath(options: {
  path: PathName;
  ttft: LatencyPhaseResult;
  gaps: LatencyPhaseResult;
  rounds: ThroughputRound[];
  concurrencies: number[];
  rssIdleBytes: number | null;
}): PathFigures {
  const { path } = options;
  const ttft = options.ttft.timings
    .get(path)!
    .map((timing) => timing.firstContentMs)
    .sort((a, b) => a - b);
  const paced = options.gaps.timings.get(path)!;
  const gaps = paced.flatMap((timing) => timing.gapsMs).sort((a, b) => a - b);
  const pacedTtft = paced.map((timing) => timing.firstContentMs).sort((a, b) => a - b);
  const own = options.rounds.filter((result) => result.path === path && result.round >= 0);
  const requestsPerSecond = { stream: {}, json: {} } as PathFigures['requestsPerSecond'];
  const cpuSecondsPerThousandRequests = { stream: null, json: null } as Record<ResponseMode, number | null>;
  for (const mode of modes) {
    const ofMode = own.filter((result) => result.mode === mode);
    for (const concurrency of options.concurrencies)
      requestsPerSecond[mode][concurrency] = median(
        ofMode
          .filter((result) => result.concurrency === concurrency)
          .map((result) => result.requestsPerSecond),
      );
    const cpuMs = ofMode.map((result) => result.proxyCpuMs);
    const completed = ofMode.reduce((sum, result) => sum + result.completedRequests, 0);
    // CPU ms per request is CPU seconds per thousand requests.
    cpuSecondsPerThousandRequests[mode] = cpuMs.some((value) => value === null)
      ? null
      : (cpuMs as number[]).reduce((sum, value) => sum + value, 0) / Math.max(1, completed);
  }
  const maxConcurrency = Math.max(...options.concurrencies);
  const peaks = own
    .filter((result) => result.concurrency === maxConcurrency)
    .map((result) => result.proxyPeakRssBytes);
  const ttftCpuMs = options.ttft.cpuMs.get(path) ?? null;
  return {
    path,
    ttftP50Ms: percentile(ttft, 0.5),
    ttftP99Ms: percentile(ttft, 0.99),
    ttftMeanMs: mean(ttft),
    ttftSamples: ttft.length,
    pacedTtftP50Ms: percentile(pacedTtft, 0.5),
    gapMeanMs: mean(gaps),
    gapP99Ms: percentile(gaps, 0.99),
    gapSamples: gaps.length,
    requestsPerSecond,
    rssIdleMb: options.rssIdleBytes === null ? null : options.rssIdleBytes / bytesPerMb,
    rssPeakUnderLoadMb:
      peaks.length === 0 || peaks.some((value) => value === null)
        ? null
        : Math.max(...(peaks as number[])) / bytesPerMb,
    cpuSecondsPerThousandRequestsAtConcurrency1: ttftCpuMs === null ? null : ttftCpuMs / ttft.length,
    cpuSecondsPerThousandRequests,
  };
}

interface TableRow {
  label: string;
  values: Partial<Record<PathName, number | null>>;
  digits: number;
  /** Show proxy/direct ratios (not for added figures, memory or CPU, where direct has no value). */
  againstDirect: boolean;
}

function ratio(numerator: number | null | undefined, denominator: number | null | undefined): string {
  if (numerator == null || denominator == null || !(numerator > 0) || !(denominator > 0)) return '-';
  return `${(numerator / denominator).toFixed(2)}x`;
}

function tableRows(
  figures: Map<PathName, PathFigures>,
  concurrencies: number[],
  interTokenDelayMs: number,
): TableRow[] {
  const byPath = (read: (figure: PathFigures) => number | null) =>
    Object.fromEntries([...figures].map(([name, figure]) => [name, read(figure)])) as TableRow['values'];
  const direct = figures.get('direct')!;
  const added = (read: (figure: PathFigures) => number) =>
    byPath((figure) => (figure.path === 'direct' ? null : read(figure) - read(direct)));
  const proxyOnly = (read: (figure: PathFigures) => number | null) =>
    byPath((figure) => (figure.path === 'direct' ? null : read(figure)));
  const maxConcurrency = Math.max(...concurrencies);
  const row = (label: string, values: TableRow['values'], digits: number, againstDirect: boolean) => ({
    label,
    values,
    digits,
    againstDirect,
  });
  return [
    row(
      'TTFT p50, c=1 (ms)',
      byPath((f) => f.ttftP50Ms),
      3,
      true,
    ),
    row(
      'TTFT p99, c=1 (ms)',
      byPath((f) => f.ttftP99Ms),
      3,
      true,
    ),
    row(
      'added TTFT p50 (ms)',
      added((f) => f.ttftP50Ms),
      3,
      false,
    ),
    row(
      'added TTFT p99 (ms)',
      added((f) => f.ttftP99Ms),
      3,
      false,
    ),
    row(
      `chunk gap mean, ${interTokenDelayMs} ms paced (ms)`,
      byPath((f) => f.gapMeanMs),
      3,
      true,
    ),
    row(
      `chunk gap p99, ${interTokenDelayMs} ms paced (ms)`,
      byPath((f) => f.gapP99Ms),
      3,
      true,
    ),
    row(
      'added chunk gap mean (ms)',
      added((f) => f.gapMeanMs),
      3,
      false,
    ),
    row(
      'added chunk gap p99 (ms)',
      added((f) => f.gapP99Ms),
      3,
      false,
    ),
    ...modes.flatMap((mode) =>
      concurrencies.map((concurrency) =>
        row(
          `req/s ${mode === 'stream' ? 'streaming' : 'non-streaming'} c=${concurrency}`,
          byPath((f) => f.requestsPerSecond[mode][concurrency] ?? null),
          0,
          true,
        ),
      ),
    ),
    row(
      'RSS idle (MB)',
      proxyOnly((f) => f.rssIdleMb),
      1,
      false,
    ),
    row(
      `RSS peak under load c=${maxConcurrency} (MB)`,
      proxyOnly((f) => f.rssPeakUnderLoadMb),
      1,
      false,
    ),
    row(
      'CPU s / 1k req, streaming c=1',
      proxyOnly((f) => f.cpuSecondsPerThousandRequestsAtConcurrency1),
      3,
      false,
    ),
    row(
      'CPU s / 1k req, streaming load',
      proxyOnly((f) => f.cpuSecondsPerThousandRequests.stream),
      3,
      false,
    ),
    row(
      'CPU s / 1k req, non-streaming load',
      proxyOnly((f) => f.cpuSecondsPerThousandRequests.json),
      3,
      false,
    ),
  ];
}

/** The one results table: a column per path, then each proxy against direct and Gravity against each peer. */
export function resultsTable(
  figures: Map<PathName, PathFigures>,
  concurrencies: number[],
  interTokenDelayMs: number,
): string {
  const paths = [...figures.keys()];
  const has = (name: PathName) => figures.has(name);
  const proxies = paths.filter((name) => name !== 'direct');
  const header = ['metric', ...paths.map((name) => pathLabels[name])];
  header.push(...proxies.map((name) => `${pathLabels[name]}/direct`));
  if (has('portkey')) header.push('Gravity/Portkey');
  if (has('nginx')) header.push('Gravity/nginx');
  const cells = tableRows(figures, concurrencies, interTokenDelayMs).map((row) => {
    const value = (name: PathName) => {
      const figure = row.values[name];
      return figure == null || Number.isNaN(figure) ? '-' : figure.toFixed(row.digits);
    };
    const line = [row.label, ...paths.map(value)];
    line.push(
      ...proxies.map((name) => (row.againstDirect ? ratio(row.values[name], row.values.direct) : '-')),
    );
    if (has('portkey')) line.push(ratio(row.values.gravity, row.values.portkey));
    if (has('nginx')) line.push(ratio(row.values.gravity, row.values.nginx));
    return line;
  });
  return formatTable(header, cells);
}

export interface Verdict {
  target: string;
  /** null: not measured in this run (a peer skipped). */
  pass: boolean | null;
  figure: string;
}

/** Beyond this p99/p50 ratio of the direct path, p99 differences say more about the machine than the proxy. */
const noisyTailFactor = 4;

function signed(value: number): string {
  return `${value >= 0 ? '+' : ''}${value.toFixed(3)}`;
}

/** The targets, judged on the highest concurrency measured (c=64 by default). */
export function verdicts(figures: Map<PathName, PathFigures>, concurrencies: number[]): Verdict[] {
  const direct = figures.get('direct')!;
  const gravity = figures.get('gravity')!;
  const maxConcurrency = Math.max(...concurrencies);
  const streaming = (figure: PathFigures) => figure.requestsPerSecond.stream[maxConcurrency] as number;
  const addedTtftP99Ms = gravity.ttftP99Ms - direct.ttftP99Ms;
  const versusPeer = (peer: 'portkey' | 'nginx', factor: number): Verdict => {
    const target = `Gravity streaming req/s at c=${maxConcurrency} >= ${factor}x ${pathLabels[peer]}'s`;
    const figure = figures.get(peer);
    if (!figure) return { target, pass: null, figure: `the ${pathLabels[peer]} path did not run` };
    return {
      target,
      pass: streaming(gravity) >= factor * streaming(figure),
      figure:
        `${streaming(gravity).toFixed(0)} vs ${streaming(figure).toFixed(0)} req/s ` +
        `(${ratio(streaming(gravity), streaming(figure))})`,
    };
  };
  return [
    {
      target: `Gravity added p99 TTFT <= ${targets.addedTtftP99Ms} ms at concurrency 1`,
      pass: addedTtftP99Ms <= targets.addedTtftP99Ms,
      figure:
        `${signed(addedTtftP99Ms)} ms (p99 ${gravity.ttftP99Ms.toFixed(3)} vs direct ${direct.ttftP99Ms.toFixed(3)} ms; ` +
        `added p50 ${signed(gravity.ttftP50Ms - direct.ttftP50Ms)} ms)` +
        // A direct p99 far above its p50 is the machine's stalls, which make a difference of p99s noise.
        (direct.ttftP99Ms > noisyTailFactor * direct.ttftP50Ms
          ? ` (noisy: direct p99 is ${(direct.ttftP99Ms / direct.ttftP50Ms).toFixed(0)}x its p50)`
          : ''),
    },
    versusPeer('portkey', targets.streamingVersusPortkey),
    versusPeer('nginx', targets.streamingVersusNginx),
    {
      target: `Gravity RSS under load < ${targets.rssUnderLoadMb} MB`,
      pass: gravity.rssPeakUnderLoadMb === null ? null : gravity.rssPeakUnderLoadMb < targets.rssUnderLoadMb,
      figure:
        gravity.rssPeakUnderLoadMb === null
          ? 'not measured (no /proc)'
          : `${gravity.rssPeakUnderLoadMb.toFixed(1)} MB peak at c=${maxConcurrency} ` +
            `(idle ${gravity.rssIdleMb?.toFixed(1)} MB)`,
    },
  ];
}

export function formatVerdict(verdict: Verdict): string {
  const word = verdict.pass === null ? 'n/a ' : verdict.pass ? 'PASS' : 'MISS';
  return `${word}  ${verdict.target}: ${verdict.figure}`;
}
