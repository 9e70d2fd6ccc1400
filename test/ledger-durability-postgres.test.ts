import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The crash run with a shared PostgreSQL ledger (`npm run crash -- --ledger postgres --replicas 3`,
 * bench/soak/crash.ts) in a short form: three `gravity serve` replicas sharing a throwaway PostgreSQL
 * through GRAVITY_LEDGER_URL, clients spread over them; three times one replica, chosen by seed, is
 * killed with SIGKILL mid-load and restarted while the others serve on. After each restart the ledger
 * holds every response a client saw complete, exactly once. From the sources (`--tsx`), so a stale dist/
 * cannot stand in for the code under test.
 */
describe('a PostgreSQL ledger shared by three replicas, after kill -9 of one under load', () => {
  it('holds every response a client saw complete, once, across three kills and restarts', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        ...['--import', 'tsx', 'bench/soak/crash.ts', '--ledger', 'postgres', '--replicas', '3'],
        ...['--kills', '3', '--max-uptime-ms', '1200', '--tsx'],
      ],
      { cwd: repositoryRoot, timeout: 150_000, maxBuffer: 16 * 1024 * 1024 },
    );
    const line = stdout.split('\n').find((text) => text.startsWith('crash-result: '));
    expect(line, stdout).toBeDefined();
    const result = JSON.parse((line as string).slice('crash-result: '.length)) as {
      ledger: string;
      replicas: number;
      completedPerRound: number[];
      completedOnKilledPerRound: number[];
      missing: string[];
      duplicated: string[];
    };
    expect(result).toMatchObject({ ledger: 'postgres', replicas: 3 });
    // Each killed replica had served its clients before the kill: each kill landed under load.
    expect(result.completedPerRound).toHaveLength(3);
    for (const completed of result.completedOnKilledPerRound) expect(completed).toBeGreaterThan(0);
    expect(result.missing).toEqual([]);
    expect(result.duplicated).toEqual([]);
  }, 180_000);
});
