import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The crash run (`npm run crash`, bench/soak/crash.ts) in a short form: `gravity serve` under streamed
 * and non-streamed load, killed with SIGKILL three times at seeded random moments and restarted on the
 * same data. After each restart the ledger holds every response a client saw complete, exactly once.
 * From the sources (`--tsx`), so a stale dist/ cannot stand in for the code under test.
 */
describe('the ledger after kill -9 under load', () => {
  it('holds every response a client saw complete, once, across three kills and restarts', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', 'bench/soak/crash.ts', '--kills', '3', '--max-uptime-ms', '1500', '--tsx'],
      { cwd: repositoryRoot, timeout: 150_000, maxBuffer: 16 * 1024 * 1024 },
    );
    const line = stdout.split('\n').find((text) => text.startsWith('crash-result: '));
    expect(line, stdout).toBeDefined();
    const result = JSON.parse((line as string).slice('crash-result: '.length)) as {
      completed: number;
      completedPerRound: number[];
      missing: string[];
      duplicated: string[];
    };
    // Each round served something before its kill, so each kill landed under load.
    expect(result.completedPerRound).toHaveLength(3);
    for (const completed of result.completedPerRound) expect(completed).toBeGreaterThan(0);
    expect(result.missing).toEqual([]);
    expect(result.duplicated).toEqual([]);
  }, 180_000);
});
