import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { llamaCppEngineDefinition } from '../../src/engines/llama-cpp/llama-cpp-definition.js';
import { describeEngineConformance, generationRequest } from './engine-contract.case.js';

describeEngineConformance('the llama.cpp engine (generated gravity-tiny model)', async () => {
  const definition = llamaCppEngineDefinition;
  const config = definition.configSchema.parse({
    type: 'llama-cpp',
    model: { generated: 'gravity-tiny' },
    contextTokens: 256,
    slots: 2,
  });
  const engine = await definition.create({
    id: 'tiny',
    config,
    models: [{ id: 'gravity-tiny', upstreamModel: undefined, contextTokens: undefined }],
    dataDir: mkdtempSync(path.join(tmpdir(), 'gravity-contract-')),
    env: {},
  });
  await engine.start();
  return {
    definition,
    engine,
    model: 'gravity-tiny',
    // Every letter is at least one token: far more than the 256-token window.
    overlongPrompt: 'a b c d e f g h i j k l m n o p q r s t u v w x y z '.repeat(20),
    close: () => engine.close(),
  };
});

describe('the llama.cpp engine closing during an embeddings request', () => {
  it('fails the request with its engine error, while it still tokenizes the inputs', async () => {
    const definition = llamaCppEngineDefinition;
    const engine = await definition.create({
      id: 'closing',
      config: definition.configSchema.parse({
        type: 'llama-cpp',
        model: { generated: 'gravity-tiny' },
        contextTokens: 64,
        slots: 1,
      }),
      models: [{ id: 'gravity-tiny', upstreamModel: undefined, contextTokens: undefined }],
      dataDir: mkdtempSync(path.join(tmpdir(), 'gravity-closing-')),
      env: {},
    });
    await engine.start();
    const parts = engine.generate(
      generationRequest('gravity-tiny', {
        // Many inputs: tokenizing them takes several turns of the event loop.
        input: {
          kind: 'embedding',
          inputs: Array(1000).fill('a b c'),
          encodingFormat: 'float',
          dimensions: null,
        },
        maxTokens: 0,
        features: ['embeddings'],
      }),
      new AbortController().signal,
    );
    const failure = parts.next().then(
      () => new Error('the request went on after the engine closed'),
      (error: unknown) => error,
    );
    await engine.close();
    expect(await failure).toMatchObject({
      status: 500,
      code: 'engine_error',
      message: expect.stringContaining('engine closed'),
    });
  });
});
