// Soak: `gravity serve` on emulated replicas held at 1.5× its measured capacity for a bounded time (10
// minutes by default), sampled every few seconds: resident memory (as is, and after a full collection:
// the server runs with --expose-gc and a preloaded probe collects between samples, so the trend is what
// is retained, not the garbage sawtooth), event-loop delay (p99 per interval, from the same probe) and
// open file descriptors. The verdict: retained memory flat (the slope of a linear fit over the second
// half, in MB per minute, within a tolerance) and no descriptors left over once the load is gone. Overload is the point: the gateway sheds
// what it cannot serve (429/503), and must neither grow nor stall while doing so.
//   npm run soak -- --help
//   npm run soak -- --duration 180
// The last line is `soak-result: <json>`, for test/soak-short.test.ts.

import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { quantileOf } from '../../src/core/quantile.js';
import { SeededRandom } from '../../src/core/seeded-random.js';
import { repoRoot } from '../support/ab-rounds.js';
import { askChild, ChildProcessGroup, type ManagedChild, startGravity } from '../support/child-processes.js';
import {
  type EventLoopDelayStats,
  probeMessages,
  type RetainedMemoryStats,
} from '../support/event-loop-probe.js';
import { chatBody, LoadClient, type LoadRequest, poissonArrivalsMs } from '../support/load-client.js';
import { processRssBytes } from '../support/process-stats.js';
import {
  columnsTable,
  fixed,
  integer,
  number,
  printPreamble,
  readOptions,
  verdict,
} from '../support/report-format.js';

const options = readOptions(
  'soak',
  'Gravity held at a multiple of its capacity: memory, event loop, descriptors.',
  {
    duration: number(600, 'seconds of load at --factor × capacity', { quick: 20 }),
    factor: number(1.5, 'arrival rate, as a multiple of the measured capacity'),
    capacitySeconds: number(10, 'length of the closed-loop phase that measures capacity', { quick: 4 }),
    sampleSeconds: number(5, 'seconds between samples', { quick: 2 }),
    replicas: integer(2, 'emulated replicas behind one model'),
    seed: integer(1, 'seed of the arrival times and the request mix'),
    rssSlopeTolerance: number(2, 'largest |RSS slope| over the second half that passes, MB/min'),
    fdSlack: integer(2, 'descriptors over the pre-load count still accepted once the load is gone', {
      min: 0,
    }),
  },
);

const modelId = 'llama-3.1-8b';
const maxTokens = 64;
const slotsPerReplica = 8;
const eventLoopProbe = fileURLToPath(new URL('../support/event-loop-probe.ts', import.meta.url));

interface Sample {
  atSeconds: number;
  phase: 'idle' | 'capacity' | 'soak' | 'after';
  rssMb: number | null;
  /** After a full collection. */
  retainedRssMb: number | null;
  retainedHeapMb: number | null;
  fds: number | null;
  loopP99Ms: number | null;
  loopMaxMs: number | null;
}

function openFileDescriptors(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

/** Least-squares slope of y over x; null with fewer than three points. */
function slope(points: Array<[number, number]>): number | null {
  if (points.length < 3) return null;
  const meanX = points.reduce((sum, [x]) => sum + x, 0) / points.length;
  const meanY = points.reduce((sum, [, y]) => sum + y, 0) / points.length;
  let numerator = 0;
  let denominator = 0;
  for (const [x, y] of points) {
    numerator += (x - meanX) * (y - meanY);
    denominator += (x - meanX) ** 2;
  }
  return denominator === 0 ? null : numerator / denominator;
}

const children = new ChildProcessGroup();
const workDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-soak-'));
const client = new LoadClient();
let crashed: ManagedChild | null = null;
children.unexpectedExit = (child) => {
  crashed = child;
};

try {
  const configPath = path.join(workDir, 'gravity.json');
  const engines = Object.fromEntries(
    Array.from({ length: options.replicas }, (_, index) => [
      `replica-${index}`,
      {
        type: 'emulated',
        hardware: 'a100-80gb',
        model: modelId,
        maxNumSeqs: slotsPerReplica,
        contextTokens: 4096,
      },
    ]),
  );
  // JSON is YAML. A short queue bound on the default tier: overload is shed within seconds, as a busy
  // deployment would configure it, so the queue itself stays bounded and any growth is a leak.
  await writeFile(
    configPath,
    JSON.stringify({
      engines,
      models: { [modelId]: { engines: Object.keys(engines) } },
      tiers: { default: { ttftMs: 2000, tpotMs: 100, maxQueueWaitMs: 3000 } },
      metering: { ledgerPath: path.join(workDir, 'ledger.sqlite') },
    }),
  );
  const { child, port, argv } = await startGravity(children, {
    name: 'gravity',
    configPath,
    dataDir: path.join(workDir, 'data'),
    build: { dir: repoRoot, entry: ['--import', 'tsx', '--import', eventLoopProbe, 'src/cli/main.ts'] },
    nodeArgs: ['--expose-gc'],
    eventLoopProbe: true,
  });
  const pid = child.process.pid;
  printPreamble('Gravity soak', 'bench/soak/soak.ts', [
    `settings: ${options.replicas} emulated a100-80gb replicas of ${modelId} (${slotsPerReplica} sequences each), ` +
      `${options.duration} s at ${options.factor}× capacity, samples every ${options.sampleSeconds} s, seed ${options.seed}`,
    `server:   ${argv.slice(1).join(' ')}`,
    'load:     Poisson arrivals, half streamed, prompts of 4 sizes, max_tokens 64; default tier bounded at 3 s of queue',
  ]);

  const startedAt = performance.now();
  const samples: Sample[] = [];
  let phase: Sample['phase'] = 'idle';
  const takeSample = async (): Promise<Sample> => {
    let loop: EventLoopDelayStats | null = null;
    let retained: RetainedMemoryStats | null = null;
    // Raw RSS first: the collection below changes it.
    const rss = processRssBytes(pid);
    if (!crashed && child.exitCode === null) {
      loop =
        (
          await askChild<{ stats: EventLoopDelayStats }>(
            child,
            { type: probeMessages.read },
            probeMessages.stats,
            5000,
          ).catch(() => null)
        )?.stats ?? null;
      // Between the read and the reset: the collection's pause is in no interval's figures.
      retained =
        (
          await askChild<{ memory: RetainedMemoryStats }>(
            child,
            { type: probeMessages.memory },
            probeMessages.memoryStats,
            5000,
          ).catch(() => null)
        )?.memory ?? null;
      child.process.send({ type: probeMessages.reset });
    }
    const sample: Sample = {
      atSeconds: (performance.now() - startedAt) / 1000,
      phase,
      rssMb: rss === null ? null : rss / 1024 ** 2,
      retainedRssMb: retained?.collected ? retained.rssBytes / 1024 ** 2 : null,
      retainedHeapMb: retained?.collected ? retained.heapUsedBytes / 1024 ** 2 : null,
      fds: openFileDescriptors(pid),
      loopP99Ms: loop?.p99Ms ?? null,
      loopMaxMs: loop?.maxMs ?? null,
    };
    samples.push(sample);
    return sample;
  };
  const fdsBefore = (await takeSample()).fds;

  const random = new SeededRandom(options.seed);
  const prompts = [1, 4, 16, 48].map((repeat) =>
    'Summarise these notes for the weekly report. '.repeat(repeat),
  );
  const requests: LoadRequest[] = Array.from({ length: 64 }, (_, index) => ({
    port,
    path: '/v1/chat/completions',
    body: chatBody({
      model: modelId,
      prompt: `${prompts[Math.floor(random.uniform() * prompts.length)]} (${index})`,
      maxTokens,
      stream: random.uniform() < 0.5,
    }),
  }));

  // Sampling runs beside the load: the load client has its own thread.
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await new Promise((resolve) => setTimeout(resolve, options.sampleSeconds * 1000));
      if (sampling) await takeSample();
    }
  })();

  phase = 'capacity';
  const capacityRun = await client.run({
    requests,
    concurrency: options.replicas * slotsPerReplica * 2,
    seconds: options.capacitySeconds,
    detail: 'light',
  });
  const capacityPerSecond =
    capacityRun.outcomes.filter((outcome) => outcome.status === 200 && outcome.done).length /
    (capacityRun.wallMs / 1000);

  phase = 'soak';
  const rate = capacityPerSecond * options.factor;
  const arrivalsMs = poissonArrivalsMs(rate, options.duration, random.fork('arrivals'));
  const soakRun = await client.run({ requests, arrivalsMs, detail: 'light' });
  await client.close();

  // The load is gone and its connections closed: what the server still holds is what it leaked.
  phase = 'after';
  await new Promise((resolve) => setTimeout(resolve, 2000));
  sampling = false;
  await sampler;
  const fdsAfter = (await takeSample()).fds;

  const statuses = new Map<number, number>();
  for (const outcome of soakRun.outcomes)
    statuses.set(outcome.status, (statuses.get(outcome.status) ?? 0) + 1);
  const served = soakRun.outcomes.filter((outcome) => outcome.status === 200 && outcome.done).length;
  const unexpected = soakRun.outcomes.filter(
    (outcome) => !(outcome.status === 200 || outcome.status === 429 || outcome.status === 503),
  ).length;

  console.log(
    columnsTable(samples, [
      ['t (s)', (sample) => fixed(sample.atSeconds, 0)],
      ['phase', (sample) => sample.phase],
      ['RSS (MB)', (sample) => fixed(sample.rssMb, 1)],
      ['RSS after GC (MB)', (sample) => fixed(sample.retainedRssMb, 1)],
      ['heap after GC (MB)', (sample) => fixed(sample.retainedHeapMb, 1)],
      ['open fds', (sample) => fixed(sample.fds, 0)],
      ['loop p99 (ms)', (sample) => fixed(sample.loopP99Ms, 1)],
      ['loop max (ms)', (sample) => fixed(sample.loopMaxMs, 1)],
    ]),
  );
  console.log('');

  const soakSamples = samples.filter((sample) => sample.phase === 'soak');
  const secondHalf = soakSamples.slice(Math.floor(soakSamples.length / 2));
  const trend = (value: (sample: Sample) => number | null) =>
    slope(
      secondHalf.flatMap((sample) => {
        const y = value(sample);
        return y === null ? [] : [[sample.atSeconds / 60, y] as [number, number]];
      }),
    );
  const rssSlope = trend((sample) => sample.rssMb);
  const retainedRssSlope = trend((sample) => sample.retainedRssMb);
  const retainedHeapSlope = trend((sample) => sample.retainedHeapMb);
  const fdSlope = trend((sample) => sample.fds);
  const retainedRss = soakSamples.flatMap((sample) =>
    sample.retainedRssMb === null ? [] : [sample.retainedRssMb],
  );
  const loopP99s = soakSamples.flatMap((sample) => (sample.loopP99Ms === null ? [] : [sample.loopP99Ms]));
  const rssValues = soakSamples.flatMap((sample) => (sample.rssMb === null ? [] : [sample.rssMb]));
  const result = {
    durationSeconds: options.duration,
    capacityPerSecond,
    arrivalsPerSecond: rate,
    requests: soakRun.outcomes.length,
    served,
    statuses: Object.fromEntries(statuses),
    unexpectedStatuses: unexpected,
    crashed: crashed !== null || child.exitCode !== null,
    rssStartMb: rssValues[0] ?? null,
    rssEndMb: rssValues.at(-1) ?? null,
    rssMaxMb: rssValues.length ? Math.max(...rssValues) : null,
    rssSlopeMbPerMinute: rssSlope,
    retainedRssStartMb: retainedRss[0] ?? null,
    retainedRssEndMb: retainedRss.at(-1) ?? null,
    retainedRssSlopeMbPerMinute: retainedRssSlope,
    retainedHeapSlopeMbPerMinute: retainedHeapSlope,
    loopP99MedianMs: loopP99s.length ? quantileOf(loopP99s, 0.5) : null,
    loopP99WorstMs: loopP99s.length ? Math.max(...loopP99s) : null,
    fdsBefore,
    fdsAfter,
    fdsMax: Math.max(...samples.flatMap((sample) => (sample.fds === null ? [] : [sample.fds]))),
    fdSlopePerMinute: fdSlope,
  };
  console.log(
    `capacity ${capacityPerSecond.toFixed(1)} req/s; offered ${rate.toFixed(1)} req/s; ${result.requests} requests: ` +
      [...statuses].map(([status, count]) => `${count}× ${status === 0 ? 'no answer' : status}`).join(', '),
  );
  verdict(!result.crashed, 'the server ran to the end');
  verdict(unexpected === 0, `every answer 200, 429 or 503 (${unexpected} others)`);
  verdict(
    retainedRssSlope === null ? null : Math.abs(retainedRssSlope) <= options.rssSlopeTolerance,
    `retained RSS (after GC) flat over the second half: ${fixed(retainedRssSlope, 2)} MB/min (tolerance ` +
      `±${options.rssSlopeTolerance}), ${fixed(result.retainedRssStartMb, 0)} → ${fixed(result.retainedRssEndMb, 0)} MB; ` +
      `heap after GC ${fixed(retainedHeapSlope, 2)} MB/min; raw RSS ${fixed(rssSlope, 2)} MB/min, ` +
      `${fixed(result.rssStartMb, 0)} → ${fixed(result.rssEndMb, 0)} MB, max ${fixed(result.rssMaxMb, 0)} MB`,
  );
  verdict(
    fdsBefore === null || fdsAfter === null ? null : fdsAfter <= fdsBefore + options.fdSlack,
    `open descriptors back to the pre-load count: ${fdsBefore} before, ${fdsAfter} after (max ${result.fdsMax} under load)`,
  );
  verdict(
    null,
    `event-loop delay p99 per ${options.sampleSeconds} s interval: median ${fixed(result.loopP99MedianMs, 1)} ms, worst ${fixed(result.loopP99WorstMs, 1)} ms`,
  );
  console.log(`soak-result: ${JSON.stringify(result)}`);
} finally {
  await client.close().catch(() => {});
  await children.stopAll(5000);
  children.dispose();
  await rm(workDir, { recursive: true, force: true });
}
