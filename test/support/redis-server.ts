import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freeLoopbackPort } from './free-port.js';

/**
 * A real Redis server for tests, from Debian's `redis-server` package (`npm test` installs it when
 * missing): its own folder and an ephemeral loopback port, no persistence. `restart` stops it and starts
 * it again on the same port, empty, as a Redis that crashed and came back does; `stop` leaves it down.
 */
export interface RedisServer {
  url: string;
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startRedis(): Promise<RedisServer> {
  const directory = mkdtempSync(path.join(tmpdir(), 'gravity-redis-'));
  const port = await freeLoopbackPort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  async function start(): Promise<void> {
    const process = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', directory, '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    child = process;
    exited = new Promise((resolve) => process.once('exit', () => resolve()));
    const deadline = Date.now() + 15_000;
    for (;;) {
      const client = new Redis(url, {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      // Refused while the server starts: the loop retries, nothing to report.
      client.on('error', () => {});
      try {
        await client.connect();
        await client.ping();
        client.disconnect();
        return;
      } catch {
        client.disconnect();
        if (process.exitCode !== null || Date.now() > deadline)
          throw new Error(`redis-server did not start on ${port}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  async function stop(): Promise<void> {
    if (child && child.exitCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    child = undefined;
  }

  await start();
  return {
    url,
    port,
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
    async close() {
      await stop();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
