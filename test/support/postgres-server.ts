import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll } from 'vitest';
import { freeLoopbackPort } from './free-port.js';

/**
 * A real PostgreSQL server for tests: its own cluster in a temporary folder, on an ephemeral loopback
 * port, started from Debian's `postgresql` package (`.ci/run` installs it when missing) and removed when
 * closed. Each `createDatabase` gives a test a fresh, empty database on it, so that stores under test
 * never see each other's tables.
 *
 * PostgreSQL refuses to run as root; as root (CI, this project's machines) the cluster belongs to the
 * `postgres` user the package creates, and its commands run through `setpriv`.
 */
export interface PostgresServer {
  /** `postgres://gravity@127.0.0.1:<port>/postgres`: the maintenance database. */
  url: string;
  port: number;
  /** A new empty database; its URL. */
  createDatabase(): Promise<string>;
  close(): Promise<void>;
}

/** The folder of `initdb` and `postgres`: Debian keeps them out of PATH, under /usr/lib/postgresql/<v>/bin. */
export function postgresBinDir(): string {
  const debianRoot = '/usr/lib/postgresql';
  if (existsSync(debianRoot)) {
    const versions = readdirSync(debianRoot)
      .filter((name) => existsSync(path.join(debianRoot, name, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return path.join(debianRoot, versions[0], 'bin');
  }
  try {
    return path.dirname(execFileSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).trim());
  } catch {
    throw new Error('PostgreSQL is not installed: apt-get install -y postgresql (.ci/run does it)');
  }
}

const asRoot = process.getuid?.() === 0;

/** The command line that runs `binary` as the cluster's owner. */
function asOwner(binary: string, args: string[]): [string, string[]] {
  // setpriv execs the binary in its own process (runuser forks and keeps the pid), so a signal to the
  // child is a signal to PostgreSQL.
  return asRoot
    ? ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', binary, ...args]]
    : [binary, args];
}

export async function startPostgres(): Promise<PostgresServer> {
  const binDir = postgresBinDir();
  const root = mkdtempSync(path.join(tmpdir(), 'gravity-postgres-'));
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    chownSync(root, uid, gid);
  }
  const dataDir = path.join(root, 'data');
  const [initCommand, initArgs] = asOwner(path.join(binDir, 'initdb'), [
    ...['-D', dataDir, '-U', 'gravity', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--locale=C'],
  ]);
  execFileSync(initCommand, initArgs, { stdio: 'pipe' });

  const port = await freeLoopbackPort();
  // A test cluster: no fsync (the tests kill Gravity, not the machine), a socket folder of its own.
  const [serverCommand, serverArgs] = asOwner(path.join(binDir, 'postgres'), [
    ...['-D', dataDir, '-p', String(port), '-h', '127.0.0.1', '-k', root],
    ...['-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200'],
  ]);
  const server: ChildProcess = spawn(serverCommand, serverArgs, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  server.stderr?.on('data', (data: Buffer) => {
    log = (log + data.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));

  const url = `postgres://gravity@127.0.0.1:${port}/postgres`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const sql = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} });
    try {
      await sql`SELECT 1`;
      await sql.end();
      break;
    } catch (error) {
      await sql.end({ timeout: 0 });
      if (server.exitCode !== null || Date.now() > deadline)
        throw new Error(`PostgreSQL did not start on port ${port}: ${(error as Error).message}\n${log}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  let databases = 0;
  return {
    url,
    port,
    async createDatabase() {
      const name = `gravity_test_${++databases}`;
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      try {
        await sql.unsafe(`CREATE DATABASE ${name}`);
      } finally {
        await sql.end();
      }
      return `postgres://gravity@127.0.0.1:${port}/${name}`;
    },
    async close() {
      // Immediate shutdown: a test cluster has nothing to keep.
      if (server.exitCode === null) {
        server.kill('SIGQUIT');
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/**
 * One PostgreSQL for a test file: started before its tests (beforeAll), removed after them (afterAll).
 * Returns a getter, since the server exists only once the tests run.
 */
export function usePostgresServer(): () => PostgresServer {
  let server: PostgresServer | undefined;
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.close();
  });
  return () => server as PostgresServer;
}
