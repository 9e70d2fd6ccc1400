import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The soak (`npm run soak`, bench/soak/soak.ts) in a short form: `gravity serve` on emulated replicas at
 * 1.5× its capacity for 20 s. What is checked is behaviour, not timing: the server survives, every answer
 * is a success or a shed (429/503), and once the load has gone it holds no more file descriptors than
 * before it (a leaked socket, file or watcher per request would show as hundreds). Memory trends need
 * the full run: `npm run soak` reports them.
 */
describe('the soak, shortened', () => {
  it('survives 20 s at 1.5x capacity, sheds cleanly, and leaks no file descriptors', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        '--import',
        'tsx',
        'bench/soak/soak.ts',
        ...['--duration', '20', '--capacity-seconds', '4', '--sample-seconds', '2'],
      ],
      { cwd: repositoryRoot, timeout: 150_000, maxBuffer: 16 * 1024 * 1024 },
    );
    const line = stdout.split('\n').find((text) => text.startsWith('soak-result: '));
    expect(line, stdout).toBeDefined();
    const result = JSON.parse((line as string).slice('soak-result: '.length)) as {
      crashed: boolean;
      served: number;
      requests: number;
      unexpectedStatuses: number;
      fdsBefore: number | null;
      fdsAfter: number | null;
      fdsMax: number;
    };
    expect(result.crashed).toBe(false);
    expect(result.served).toBeGreaterThan(0);
    expect(result.unexpectedStatuses).toBe(0);
    expect(result.fdsBefore).not.toBeNull();
    // Under load the server held a socket per connection; afterwards it is back where it started.
    expect(result.fdsMax).toBeGreaterThan(result.fdsBefore as number);
    expect(result.fdsAfter).toBeLessThanOrEqual((result.fdsBefore as number) + 2);
  }, 180_000);
});
