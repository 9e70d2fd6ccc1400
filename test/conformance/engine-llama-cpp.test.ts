import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { llamaCppEngineDefinition } from '../../src/engines/llama-cpp/llama-cpp-definition.js';
import { describeEngineConformance } from './engine-contract.case.js';

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
