import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import type { Batch } from 'openai/resources/batches';
import { describe, expect, it } from 'vitest';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import { type GravityProcess, startGravityProcess } from './support/gravity-process.js';

/**
 * A batch survives its server: a real `gravity serve` on a slow emulated replica (an L4 running Llama 3.1
 * 8B: ~75 ms per token) is killed with SIGKILL mid-batch, restarted on the same data directory, stopped
 * again with SIGTERM, and started a third time. The batch completes with every line exactly once.
 */
const lineCount = 16;

async function serve(dataDir: string): Promise<{ gravity: GravityProcess; client: OpenAI }> {
  // `--data-dir` given last wins over the helper's own temporary directory.
  const gravity = await startGravityProcess(['--emulate', 'l4:llama-3.1-8b:1', '--data-dir', dataDir]);
  const client = new OpenAI({ baseURL: `${gravity.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  return { gravity, client };
}

async function waitForBatch(
  client: OpenAI,
  batchId: string,
  done: (batch: Batch) => boolean,
): Promise<Batch> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const batch = await client.batches.retrieve(batchId);
    if (done(batch)) return batch;
    if (Date.now() > deadline) throw new Error(`batch ${batchId} is still ${batch.status}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const completed = (batch: Batch) => batch.request_counts?.completed ?? 0;

describe('a batch across restarts', () => {
  it('resumes after SIGKILL and SIGTERM and finishes with every line exactly once', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'gravity-batch-restart-'));
    const customIds = Array.from({ length: lineCount }, (_, index) => `line-${index}`);
    const input = customIds
      .map((customId) =>
        JSON.stringify({
          custom_id: customId,
          method: 'POST',
          url: '/v1/chat/completions',
          body: {
            model: 'llama-3.1-8b',
            messages: [{ role: 'user', content: `Summarise item ${customId}.` }],
            max_tokens: 8,
          },
        }),
      )
      .join('\n');

    // First server: the batch starts; SIGKILL while lines are in flight (no chance to clean up).
    const first = await serve(dataDir);
    let batchId: string;
    try {
      const file = await first.client.files.create({
        file: await toFile(Buffer.from(input), 'restart.jsonl'),
        purpose: 'batch',
      });
      batchId = (
        await first.client.batches.create({
          input_file_id: file.id,
          endpoint: '/v1/chat/completions',
          completion_window: '24h',
        })
      ).id;
      await waitForBatch(first.client, batchId, (batch) => completed(batch) >= 4);
    } finally {
      first.gravity.child.kill('SIGKILL');
      await first.gravity.exited;
    }

    // Second server: the lines on record are not run again; SIGTERM lets the lines in flight finish.
    const second = await serve(dataDir);
    try {
      const resumed = await second.client.batches.retrieve(batchId);
      expect(resumed.status).toBe('in_progress');
      expect(completed(resumed)).toBeGreaterThanOrEqual(4);
      expect(completed(resumed)).toBeLessThan(lineCount);
      await waitForBatch(second.client, batchId, (batch) => completed(batch) >= 8);
    } finally {
      second.gravity.child.kill('SIGTERM');
    }
    expect((await second.gravity.exited).code).toBe(0);

    // Third server: runs what is left and writes the files.
    const third = await serve(dataDir);
    try {
      const stopped = await third.client.batches.retrieve(batchId);
      expect(completed(stopped)).toBeLessThan(lineCount);
      const batch = await waitForBatch(third.client, batchId, (candidate) =>
        ['completed', 'failed', 'cancelled', 'expired'].includes(candidate.status),
      );
      expect(batch).toMatchObject({
        status: 'completed',
        request_counts: { total: lineCount, completed: lineCount, failed: 0 },
        error_file_id: null,
      });
      const text = await (await third.client.files.content(batch.output_file_id ?? '')).text();
      const lines = text
        .trim()
        .split('\n')
        .map(
          (line) =>
            JSON.parse(line) as { custom_id: string; response: { status_code: number; request_id: string } },
        );
      expect(lines.map((line) => line.custom_id).sort()).toEqual([...customIds].sort());
      for (const line of lines) expect(line.response.status_code).toBe(200);

      // Each line's answer is on the ledger at the batch tier. A line cut off by SIGKILL ran again, so the
      // ledger holds at most one extra record per line that was in flight then (4: the concurrency).
      const ledger = new SqliteLedgerStore(path.join(dataDir, 'ledger.sqlite'));
      try {
        const records = (await ledger.records({})).filter((record) => record.tier === 'batch');
        const recorded = new Set(records.map((record) => record.requestId));
        for (const line of lines) expect(recorded.has(line.response.request_id)).toBe(true);
        expect(records.length).toBeGreaterThanOrEqual(lineCount);
        expect(records.length).toBeLessThanOrEqual(lineCount + 4);
      } finally {
        await ledger.close();
      }
    } finally {
      third.gravity.child.kill('SIGTERM');
      await third.gravity.exited;
    }
  }, 60_000);
});
