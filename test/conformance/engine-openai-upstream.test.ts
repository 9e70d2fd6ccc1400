import { openAIUpstreamEngineDefinition } from '../../src/engines/openai-upstream/openai-upstream-definition.js';
import { startHarness } from '../support/gravity-harness.js';
import { describeEngineConformance, type EngineUnderTest } from './engine-contract.case.js';

/**
 * The upstream engine pointed at a real Gravity on loopback that serves `upstreamModel` from the engine
 * `upstreamEngineConfig` describes: the suite's aborts must reach that Gravity's own engine too.
 */
async function upstreamEngineUnderTest(options: {
  upstreamModel: string;
  upstreamEngineConfig: Record<string, unknown>;
  overlongPrompt: string;
}): Promise<EngineUnderTest> {
  const upstream = await startHarness(undefined, {
    engines: { replica: options.upstreamEngineConfig },
    models: { [options.upstreamModel]: { engine: 'replica' } },
  });
  const upstreamEngine = upstream.server.gateway.engines[0];
  if (!upstreamEngine) throw new Error('the upstream Gravity has no engine');
  const definition = openAIUpstreamEngineDefinition;
  const config = definition.configSchema.parse({
    type: 'openai-upstream',
    baseUrl: `${upstream.url}/v1`,
    maxConcurrentRequests: 4,
  });
  const engine = await definition.create({
    id: 'remote',
    config,
    models: [{ id: 'remote-model', upstreamModel: options.upstreamModel, contextTokens: undefined }],
    dataDir: '.',
    env: {},
  });
  await engine.start();
  return {
    definition,
    engine,
    model: 'remote-model',
    overlongPrompt: options.overlongPrompt,
    backend: upstreamEngine,
    close: async () => {
      await engine.close();
      await upstream.close();
    },
  };
}

describeEngineConformance('the OpenAI-compatible upstream engine (a Gravity with an emulated replica)', () =>
  upstreamEngineUnderTest({
    upstreamModel: 'llama-3.1-8b',
    upstreamEngineConfig: {
      type: 'emulated',
      hardware: 'h200',
      model: 'llama-3.1-8b',
      weightDtype: 'fp8',
      contextTokens: 512,
    },
    overlongPrompt: 'word '.repeat(1000),
  }),
);

// llama.cpp upstream: its stop sequences and multi-token deltas exercise the usage reconciliation.
describeEngineConformance('the OpenAI-compatible upstream engine (a Gravity on llama.cpp)', () =>
  upstreamEngineUnderTest({
    upstreamModel: 'gravity-tiny',
    upstreamEngineConfig: {
      type: 'llama-cpp',
      model: { generated: 'gravity-tiny' },
      contextTokens: 256,
      slots: 2,
    },
    overlongPrompt: 'a b c d e f g h i j k l m n o p q r s t u v w x y z '.repeat(20),
  }),
);
