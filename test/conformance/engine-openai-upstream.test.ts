import { openAIUpstreamEngineDefinition } from '../../src/engines/openai-upstream/openai-upstream-definition.js';
import { startHarness } from '../support/gravity-harness.js';
import { describeEngineConformance } from './engine-contract.case.js';

describeEngineConformance(
  'the OpenAI-compatible upstream engine (a second Gravity on loopback)',
  async () => {
    // The upstream is a real Gravity serving one emulated replica over HTTP.
    const upstream = await startHarness(undefined, {
      engines: {
        replica: {
          type: 'emulated',
          hardware: 'h200',
          model: 'llama-3.1-8b',
          weightDtype: 'fp8',
          contextTokens: 512,
        },
      },
      models: { 'llama-3.1-8b': { engine: 'replica' } },
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
      models: [{ id: 'remote-llama', upstreamModel: 'llama-3.1-8b', contextTokens: 512 }],
      dataDir: '.',
      env: {},
    });
    await engine.start();
    return {
      definition,
      engine,
      model: 'remote-llama',
      overlongPrompt: 'word '.repeat(1000),
      // An abort must reach the upstream: its own replica stops and frees the sequence too.
      backend: upstreamEngine,
      close: async () => {
        await engine.close();
        await upstream.close();
      },
    };
  },
);
