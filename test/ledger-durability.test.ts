import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import { startGravityProcess } from './support/gravity-process.js';

/** Sends requests until stopped; returns the ids of the responses that arrived complete. */
async function loadWorker(url: string, worker: number, stop: AbortSignal): Promise<string[]> {
  const completedIds: string[] = [];
  for (let index = 0; !stop.aborted; index++) {
    const stream = (worker + index) % 2 === 0;
    try {
      const response = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'gravity-tiny-random',
          prompt: `worker ${worker} request ${index}`,
          max_tokens: 24,
          stream,
        }),
      });
      const body = await response.text();
      const complete = stream
        ? body.endsWith('data: [DONE]\n\n')
        : response.status === 200 && JSON.parse(body).choices?.length === 1;
      if (complete) completedIds.push(response.headers.get('x-request-id') ?? '');
    } catch {
      // The server was killed mid-request: that response never completed.
      if (stop.aborted) break;
    }
  }
  return completedIds;
}

describe('the ledger after kill -9 under load', () => {
  it('holds every request whose response completed', async () => {
    const gravity = await startGravityProcess();
    const dataDir = /--data-dir (\S+)/.exec(gravity.child.spawnargs.join(' '))?.[1] as string;
    const stop = new AbortController();
    const workers = Array.from({ length: 8 }, (_, worker) => loadWorker(gravity.url, worker, stop.signal));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    gravity.child.kill('SIGKILL');
    await gravity.exited;
    stop.abort();
    const completedIds = (await Promise.all(workers)).flat();
    expect(completedIds.length).toBeGreaterThan(20);

    // Restart reads the same ledger: every completed response is on record, once.
    const ledger = new SqliteLedgerStore(path.join(dataDir, 'ledger.sqlite'));
    const recordedIds = new Set((await ledger.records({})).map((record) => record.requestId));
    await ledger.close();
    const missing = completedIds.filter((id) => !recordedIds.has(id));
    expect(missing).toEqual([]);
  });
});
