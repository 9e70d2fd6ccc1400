// Linux /proc readings for the processes a benchmark compares: resident memory, the children of a process
// (nginx's workers) and which CPUs this process may use. Each returns null or an empty list off Linux.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** VmRSS of one process, in bytes; null once it has exited or without /proc. */
export function processRssBytes(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const match = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB$/m);
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Sum over processes; null if any of them cannot be read (a partial sum would look like a real figure). */
export function sumOrNull(pids: number[], read: (pid: number) => number | null): number | null {
  let total = 0;
  for (const pid of pids) {
    const value = read(pid);
    if (value === null) return null;
    total += value;
  }
  return total;
}

function parentPid(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 4, after the command name (which may hold spaces and parentheses).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[1]);
  } catch {
    return null;
  }
}

/** Direct children of `pid`, found by scanning /proc (no dependency on CONFIG_PROC_CHILDREN). */
export function childPids(pid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  return entries
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((candidate) => parentPid(candidate) === pid);
}

/** The CPU ids this process may run on (`Cpus_allowed_list`), or null without /proc. */
export function allowedCpus(): number[] | null {
  try {
    const match = readFileSync('/proc/self/status', 'utf8').match(/^Cpus_allowed_list:\s+(\S+)$/m);
    if (!match) return null;
    const cpus: number[] = [];
    for (const part of (match[1] as string).split(',')) {
      const [first, last] = part.split('-').map(Number) as [number, number | undefined];
      for (let cpu = first; cpu <= (last ?? first); cpu++) cpus.push(cpu);
    }
    return cpus;
  } catch {
    return null;
  }
}

/** Restricts every thread of this process (and so the children it starts later) to `cpus`; false if taskset fails. */
export function pinThisProcess(cpus: number[]): boolean {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpus.join(','), String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface SpinStalls {
  stalls: number;
  maxStallMs: number;
  stalledMs: number;
}

/**
 * Spins for `durationMs` and counts the times the clock jumped by more than `thresholdMs` between two
 * reads: time the CPU was taken away (the hypervisor, the kernel, another process). It sets the floor of
 * any tail latency measured on that CPU. Self-contained, so it can also run in a child via `node -e`.
 */
export function spinStalls(durationMs: number, thresholdMs: number): SpinStalls {
  const end = performance.now() + durationMs;
  let last = performance.now();
  let stalls = 0;
  let maxStallMs = 0;
  let stalledMs = 0;
  for (let now = last; now < end; now = performance.now()) {
    const gap = now - last;
    if (gap > thresholdMs) {
      stalls++;
      stalledMs += gap;
      maxStallMs = Math.max(maxStallMs, gap);
    }
    last = now;
  }
  return { stalls, maxStallMs, stalledMs };
}
