import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { spawnGravity, startGravityProcess } from './support/gravity-process.js';

function clientFor(url: string) {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
}

function writeConfig(yaml: string): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'gravity-serve-')), 'gravity.yaml');
  writeFileSync(file, yaml);
  return file;
}

describe('gravity serve as a process', () => {
  it('finishes an in-flight stream on SIGTERM, refuses new work, then exits cleanly', async () => {
    const gravity = await startGravityProcess();
    const client = clientFor(gravity.url);
    const stream = await client.chat.completions.create({
      model: 'gravity-tiny-random',
      messages: [{ role: 'user', content: 'a long answer' }],
      max_tokens: 1500,
      stream: true,
    });
    let chunks = 0;
    let finishReason: string | null | undefined;
    let signalled = false;
    for await (const chunk of stream) {
      chunks++;
      finishReason = chunk.choices[0]?.finish_reason ?? finishReason;
      if (chunks === 3 && !signalled) {
        signalled = true;
        gravity.child.kill('SIGTERM');
        // Give the signal time to land; then a new request must not be served.
        await new Promise((resolve) => setTimeout(resolve, 100));
        const refused = await fetch(`${gravity.url}/v1/models`).then(
          (response) => response.status,
          () => 'connection refused',
        );
        expect(refused).not.toBe(200);
      }
    }
    expect(finishReason).toBe('length');
    expect(chunks).toBeGreaterThan(100);
    expect(await gravity.exited).toEqual({ code: 0, signal: null });
  });

  it('cancels streams still running when the grace period ends, with an error event', async () => {
    const config = writeConfig('server:\n  shutdownGraceMs: 200\n');
    const gravity = await startGravityProcess(['--config', config, '--context', '32768']);
    const stream = await clientFor(gravity.url).chat.completions.create({
      model: 'gravity-tiny-random',
      messages: [{ role: 'user', content: 'never stop' }],
      max_tokens: 30_000,
      stream: true,
    });
    let chunks = 0;
    const consumed = (async () => {
      for await (const _chunk of stream) {
        if (++chunks === 3) gravity.child.kill('SIGTERM');
      }
    })();
    await expect(consumed).rejects.toThrow(/shutting down/);
    expect(await gravity.exited).toEqual({ code: 0, signal: null });
  });

  it('refuses to start on an invalid config and names the offending path', async () => {
    const config = writeConfig('server:\n  prot: 80\nmodels:\n  m1: {engine: missing}\nengines: {}\n');
    const run = spawnGravity(['serve', '--config', config]);
    const { code } = await run.exited;
    expect(code).toBe(2);
    expect(run.stderr()).toContain('server.prot: unknown setting');
    expect(run.stderr()).not.toContain('    at '); // a message, not a stack trace
  });

  it('refuses to start a CUDA engine where no CUDA build of llama.cpp exists, and says how to get one', async () => {
    // CI machines have no CUDA build (only the CPU binary is installed): the start must fail at once.
    const config = writeConfig(
      'engines:\n  gpu: { type: llama-cpp, model: { generated: gravity-tiny }, device: cuda }\nmodels:\n  tiny: { engine: gpu }\n',
    );
    const run = spawnGravity(['serve', '--config', config, '--port', '0']);
    const { code } = await run.exited;
    expect(code).toBe(1);
    expect(run.stderr()).toContain("engine 'gpu': no llama.cpp build for device cuda");
    expect(run.stderr()).toContain('node-llama-cpp source build --gpu cuda');
    expect(run.stderr()).not.toContain('    at '); // a message, not a stack trace
  });
});
