import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { getLlama, LlamaLogLevel, type LlamaModel } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddingContexts, type EmbeddingContextsOptions } from './embedding-contexts.js';
import { vocabularySize } from './sampling-options.js';
import { ensureTinyModel } from './tiny-model.js';

let model: LlamaModel;
let options: EmbeddingContextsOptions;

beforeAll(async () => {
  const llama = await getLlama({
    gpu: false,
    build: 'never',
    logLevel: LlamaLogLevel.error,
    progressLogs: false,
  });
  const modelPath = await ensureTinyModel('alphabet', mkdtempSync(path.join(tmpdir(), 'gravity-embedding-')));
  model = await llama.loadModel({ modelPath });
  options = {
    engineId: 'tiny',
    contexts: 2,
    contextTokens: 64,
    threads: 1,
    vocabulary: vocabularySize(model),
  };
});
afterAll(async () => {
  await model?.dispose();
});

describe('EmbeddingContexts', () => {
  it('frees the contexts of a creation that was still running when it was disposed', async () => {
    const contexts = new EmbeddingContexts(model, options);
    // The first acquire starts the creation; dispose overtakes it.
    const acquired = contexts.acquire(new AbortController().signal);
    await contexts.dispose();
    const context = await acquired;
    expect(context.disposed).toBe(true);
    await expect(contexts.acquire(new AbortController().signal)).rejects.toMatchObject({
      code: 'engine_error',
      message: expect.stringContaining('engine closed'),
    });
  });

  it('hands out created contexts until disposed, then frees them', async () => {
    const contexts = new EmbeddingContexts(model, options);
    const first = await contexts.acquire(new AbortController().signal);
    const second = await contexts.acquire(new AbortController().signal);
    expect(contexts.busy).toBe(2);
    expect((await contexts.inputTokens('a b', 0)).evaluatedTokens).toBeGreaterThan(0);
    await expect(contexts.inputTokens([1, options.vocabulary], 3)).rejects.toMatchObject({
      status: 400,
      param: 'input',
      message: `Invalid value for 'input[3]': token ${options.vocabulary} is not in the model's vocabulary (0 to ${options.vocabulary - 1}).`,
    });
    contexts.release(first);
    contexts.release(second);
    await contexts.dispose();
    expect([first.disposed, second.disposed]).toEqual([true, true]);
  });
});
