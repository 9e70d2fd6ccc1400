// Linux /proc readings for the processes a benchmark compares: CPU time, resident memory, disk writes, the
// children of a process (nginx's workers) and which CPUs this process may use. Each returns null or an
// empty list off Linux.

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

/** Sum over processes; null for none, or if any cannot be read (a partial sum would look like a real figure). */
export function sumOrNull(pids: number[], read: (pid: number) => number | null): number | null {
  if (pids.length === 0) return null;
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

/** Bytes a process has caused to be written to storage (Linux /proc/<pid>/io), or null. */
export function processDiskWriteBytes(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const match = readFileSync(`/proc/${pid}/io`, 'utf8').match(/^write_bytes: (\d+)$/m);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

// USER_HZ: 100 on every mainstream Linux build, and /proc offers no portable way to read it.
const clockTicksPerSecond = 100;

/**
 * CPU time (user + system, all threads) a process has used, in ms, from /proc; null where /proc is
 * missing (not Linux). Resolution is one clock tick (10 ms on most kernels).
 */
export function processCpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[14 - 3]) + Number(fields[15 - 3]);
  return Number.isFinite(ticks) ? (ticks / clockTicksPerSecond) * 1000 : null;
}
