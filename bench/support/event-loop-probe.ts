// Preloaded into a benchmark's child process (`node --import <this file> …`, with an IPC channel and
// `probeEnvironmentVariable` set: `startGravity`'s `eventLoopProbe`) to
// report the child's event-loop delay without changing its code: the benchmark resets the histogram when a
// round starts and reads it when the round ends. A stall (a synchronous fsync, a long GC) shows up as a
// large maximum even when CPU time barely moves.

import { monitorEventLoopDelay } from 'node:perf_hooks';

export interface EventLoopDelayStats {
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Memory after a full collection (when the child runs with --expose-gc), for leak trends. */
export interface RetainedMemoryStats {
  rssBytes: number;
  heapUsedBytes: number;
  /** Whether a full collection ran first (--expose-gc); otherwise the figures include garbage. */
  collected: boolean;
}

export const probeMessages = {
  reset: 'event-loop-probe:reset',
  read: 'event-loop-probe:read',
  stats: 'event-loop-probe:stats',
  memory: 'event-loop-probe:memory',
  memoryStats: 'event-loop-probe:memory-stats',
} as const;

const nsPerMs = 1e6;
// Coarse enough to cost nothing measurable, fine enough to see multi-millisecond stalls.
const resolutionMs = 10;

/**
 * Set (to `1`) in the environment of the one process to probe. The probe clears it on load, so that
 * processes that one forks (node-llama-cpp forks a child to test its binding over IPC, and the child
 * inherits the `--import` flags) load the probe but leave their own IPC channel alone: unreferencing
 * it let that child exit before its first message, and the server died at start (EPIPE).
 */
export const probeEnvironmentVariable = 'BENCH_EVENT_LOOP_PROBE';

const probed = process.env[probeEnvironmentVariable] === '1';
delete process.env[probeEnvironmentVariable];

if (probed && process.send && process.channel) {
  const histogram = monitorEventLoopDelay({ resolution: resolutionMs });
  histogram.enable();
  process.on('message', (message: { type?: string } | null) => {
    if (message?.type === probeMessages.reset) histogram.reset();
    else if (message?.type === probeMessages.read) {
      // The histogram holds the time between timer ticks; the delay is what exceeds the tick.
      const delayMs = (ns: number) => (histogram.count === 0 ? 0 : Math.max(0, ns / nsPerMs - resolutionMs));
      const stats: EventLoopDelayStats = {
        meanMs: delayMs(histogram.mean),
        p50Ms: delayMs(histogram.percentile(50)),
        p99Ms: delayMs(histogram.percentile(99)),
        maxMs: delayMs(histogram.max),
      };
      process.send?.({ type: probeMessages.stats, stats });
    } else if (message?.type === probeMessages.memory) {
      // A full collection first, so the figures are what is retained rather than where the sawtooth of
      // garbage happens to be. It pauses the loop: ask between a read and a reset, so no histogram sees it.
      const collect = (globalThis as { gc?: () => void }).gc;
      collect?.();
      const usage = process.memoryUsage();
      const memory: RetainedMemoryStats = {
        rssBytes: usage.rss,
        heapUsedBytes: usage.heapUsed,
        collected: collect !== undefined,
      };
      process.send?.({ type: probeMessages.memoryStats, memory });
    }
  });
  // The channel must not keep the child alive: it exits exactly as it would without the probe.
  process.channel.unref();
}
