import { emulatedEngineDefinition } from '../../src/engines/emulated/emulated-definition.js';
import { describeEngineConformance } from './engine-contract.case.js';

describeEngineConformance('the emulated engine (an 8B model in FP8 on an H200)', async () => {
  const definition = emulatedEngineDefinition;
  // Fast modelled hardware (a few ms per step) keeps the suite quick; a small window makes the
  // overlong prompt short.
  const config = definition.configSchema.parse({
    type: 'emulated',
    hardware: 'h200',
    model: 'llama-3.1-8b',
    weightDtype: 'fp8',
    contextTokens: 512,
  });
  const engine = await definition.create({
    id: 'emulated-0',
    config,
    models: [{ id: 'llama-3.1-8b', upstreamModel: undefined, contextTokens: undefined }],
    dataDir: '.',
    env: {},
  });
  await engine.start();
  return {
    definition,
    engine,
    model: 'llama-3.1-8b',
    // The emulated engine counts about four characters per prompt token.
    overlongPrompt: 'word '.repeat(1000),
    close: () => engine.close(),
  };
});
