import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface GravityProcess {
  child: ChildProcess;
  url: string;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs `gravity <args>` as a real process from the TypeScript sources (what `npm run gravity` runs). */
export function spawnGravity(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: repositoryRoot,
    env: { ...process.env, GRAVITY_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Starts `gravity serve` on an ephemeral port and waits for its "listening" line. */
export async function startGravityProcess(
  extraArgs: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<GravityProcess> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'gravity-process-'));
  const started = spawnGravity(['serve', '--port', '0', '--data-dir', dataDir, ...extraArgs], env);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const match = /gravity: listening on (\S+)/.exec(started.stdout());
    if (match?.[1]) return { ...started, url: match[1] };
    if (started.child.exitCode !== null) throw new Error(`gravity exited early: ${started.stderr()}`);
    if (Date.now() > deadline) throw new Error(`gravity did not start: ${started.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
