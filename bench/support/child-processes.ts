// Child processes for benchmarks: start one, wait for the line that says it is ready, keep the tail of its
// output for error messages, and make sure none outlives the benchmark (normal end, error or Ctrl-C). Also
// the two children most benchmarks start: the fake OpenAI upstream and `gravity serve`.

import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type GravityBuild, repoRoot } from './ab-rounds.js';
import { probeEnvironmentVariable } from './event-loop-probe.js';

const outputTailBytes = 4096;

export interface ManagedChild {
  name: string;
  process: ChildProcess;
  /** The pattern's match in the ready line. */
  ready: RegExpMatchArray;
  /** The last few KiB of stdout and stderr together, for diagnostics. */
  outputTail(): string;
  /** Set once the child has exited. */
  exitCode: number | null;
  exitSignal: NodeJS.Signals | null;
  exited: Promise<void>;
}

export class ChildProcessGroup {
  private readonly children = new Set<ManagedChild>();
  /** Children being stopped on purpose: their exit is expected. */
  private readonly stopping = new Set<ManagedChild>();
  private readonly onExit = () => this.killAllNow();
  /** Called when a child exits while the group still expects it to run. */
  unexpectedExit: ((child: ManagedChild) => void) | null = null;

  constructor() {
    // Synchronous last resort: whatever way this process ends, no child is left running.
    process.on('exit', this.onExit);
  }

  /**
   * Spawns `command args` and resolves once a stdout line matches `readyPattern`; rejects with the child's
   * output if it exits or stays silent for `startTimeoutMs` first.
   */
  async start(options: {
    name: string;
    command: string;
    args: string[];
    cwd: string;
    env: NodeJS.ProcessEnv;
    readyPattern: RegExp;
    startTimeoutMs: number;
    /** Open an IPC channel (for a preloaded probe such as event-loop-probe.ts). */
    ipc?: boolean;
    /** Look for the ready line on stderr instead (nginx logs there). */
    readyOnStderr?: boolean;
  }): Promise<ManagedChild> {
    const child = spawn(options.command, options.args, {
      cwd: options.cwd,
      env: options.env,
      stdio: options.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    });
    let tail = '';
    const keep = (text: string) => {
      tail = (tail + text).slice(-outputTailBytes);
    };
    let resolveExited: () => void = () => {};
    const managed: ManagedChild = {
      name: options.name,
      process: child,
      ready: [] as unknown as RegExpMatchArray,
      outputTail: () => tail,
      exitCode: null,
      exitSignal: null,
      exited: new Promise<void>((resolve) => {
        resolveExited = resolve;
      }),
    };
    this.children.add(managed);
    let isReady = false;
    child.on('exit', (code, signal) => {
      managed.exitCode = code;
      managed.exitSignal = signal;
      this.children.delete(managed);
      resolveExited();
      if (isReady && !this.stopping.has(managed)) this.unexpectedExit?.(managed);
    });
    const [watched, other] = options.readyOnStderr
      ? [child.stderr!, child.stdout!]
      : [child.stdout!, child.stderr!];
    other.setEncoding('utf8').on('data', keep);

    managed.ready = await new Promise<RegExpMatchArray>((resolve, reject) => {
      let pending = '';
      const timer = setTimeout(() => {
        fail(new Error(`${options.name} did not start within ${options.startTimeoutMs} ms`));
        child.kill('SIGKILL');
      }, options.startTimeoutMs);
      const fail = (error: Error) => {
        clearTimeout(timer);
        reject(new Error(`${error.message}; its output:\n${tail}`));
      };
      child.once('error', fail);
      child.once('exit', (code, signal) => {
        if (!isReady)
          fail(new Error(`${options.name} exited (${signal ?? `code ${code}`}) before it was ready`));
      });
      watched.setEncoding('utf8').on('data', (text: string) => {
        keep(text);
        if (isReady) return;
        pending += text;
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) {
          const match = line.match(options.readyPattern);
          if (!match) continue;
          isReady = true;
          clearTimeout(timer);
          resolve(match);
          return;
        }
      });
    });
    return managed;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the child has exited. */
  async stop(child: ManagedChild, graceMs: number): Promise<void> {
    if (!this.children.has(child)) return;
    this.stopping.add(child);
    child.process.kill('SIGTERM');
    const timer = setTimeout(() => child.process.kill('SIGKILL'), graceMs);
    await child.exited;
    clearTimeout(timer);
  }

  async stopAll(graceMs: number): Promise<void> {
    await Promise.all([...this.children].map((child) => this.stop(child, graceMs)));
  }

  killAllNow(): void {
    for (const child of this.children) {
      this.stopping.add(child);
      child.process.kill('SIGKILL');
    }
  }

  dispose(): void {
    process.off('exit', this.onExit);
  }
}

/** Sends `message` over the child's IPC channel and resolves with the first reply of `replyType`. */
export function askChild<Reply>(
  child: ManagedChild,
  message: { type: string },
  replyType: string,
  timeoutMs: number,
): Promise<Reply> {
  return new Promise<Reply>((resolve, reject) => {
    const onMessage = (reply: { type?: string }) => {
      if (reply?.type !== replyType) return;
      clearTimeout(timer);
      child.process.off('message', onMessage);
      resolve(reply as Reply);
    };
    const timer = setTimeout(() => {
      child.process.off('message', onMessage);
      reject(new Error(`${child.name} did not answer '${message.type}' within ${timeoutMs} ms`));
    }, timeoutMs);
    child.process.on('message', onMessage);
    child.process.send(message);
  });
}

/**
 * The environment for a benchmark's Gravity child: the caller's, without GRAVITY_* variables, which would
 * otherwise change one server's configuration behind the benchmark's back.
 */
export function gravityChildEnvironment(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GRAVITY_')));
}

const startTimeoutMs = 60_000;

/** Starts bench/support/fake-openai-upstream.ts (`tokens` per response, `delayMs` between them); its URL. */
export async function startFakeUpstream(
  children: ChildProcessGroup,
  options: { name: string; tokens: number; delayMs: number },
): Promise<string> {
  const script = fileURLToPath(new URL('./fake-openai-upstream.ts', import.meta.url));
  const upstream = await children.start({
    name: `fake upstream (${options.name})`,
    command: process.execPath,
    args: [
      '--import',
      'tsx',
      script,
      '--tokens',
      String(options.tokens),
      '--delay-ms',
      String(options.delayMs),
    ],
    cwd: repoRoot,
    env: gravityChildEnvironment(),
    readyPattern: /^fake-upstream: listening on (\S+)/,
    startTimeoutMs,
  });
  return upstream.ready[1] as string;
}

/**
 * Starts `gravity serve` on 127.0.0.1 and a free port, from `build` (default: this repository's sources
 * through tsx), with a config file the caller wrote. `prefix` goes before node (taskset), `nodeArgs` after
 * it (--cpu-prof). Returns the child, its port and the command line it ran.
 */
export async function startGravity(
  children: ChildProcessGroup,
  options: {
    name: string;
    configPath: string;
    dataDir: string;
    build?: Pick<GravityBuild, 'dir' | 'entry'>;
    prefix?: string[];
    nodeArgs?: string[];
    ipc?: boolean;
    /** The child's entry preloads bench/support/event-loop-probe.ts: arm it in this process (and IPC). */
    eventLoopProbe?: boolean;
    /** Variables set for this child on purpose (GRAVITY_LEDGER_URL …), over the cleaned environment. */
    env?: NodeJS.ProcessEnv;
    /** How long its engines may take to start (default 60 s; a 16 GB model loading onto a GPU needs more). */
    startTimeoutMs?: number;
  },
): Promise<{ child: ManagedChild; port: number; url: string; argv: string[] }> {
  const { dir, entry } = options.build ?? { dir: repoRoot, entry: ['--import', 'tsx', 'src/cli/main.ts'] };
  const argv = [
    ...(options.prefix ?? []),
    process.execPath,
    ...(options.nodeArgs ?? []),
    ...entry,
    ...['serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'warn'],
    ...['--config', options.configPath, '--data-dir', options.dataDir],
  ];
  const child = await children.start({
    name: options.name,
    command: argv[0] as string,
    args: argv.slice(1),
    cwd: dir,
    env: {
      ...gravityChildEnvironment(),
      ...options.env,
      ...(options.eventLoopProbe && { [probeEnvironmentVariable]: '1' }),
    },
    readyPattern: /^gravity: listening on (\S+) models=/,
    startTimeoutMs: options.startTimeoutMs ?? startTimeoutMs,
    ipc: (options.ipc ?? false) || options.eventLoopProbe === true,
  });
  const url = child.ready[1] as string;
  return { child, port: Number(new URL(url).port), url, argv };
}
