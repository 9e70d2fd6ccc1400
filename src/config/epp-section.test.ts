import { describe, expect, it } from 'vitest';
import { configFile } from '../../test/support/config-file.js';
import { problemsOf } from '../../test/support/config-problems.js';
import { loadConfig } from './load-config.js';

describe('the epp section', () => {
  it('turns each endpoint into an openai-upstream engine serving every EPP model, and no built-in models', () => {
    const file = configFile(
      [
        'epp:',
        "  endpoints: ['10.0.0.11:8000', '[fd00::1]:8000']",
        '  models: [llama]',
        '  maxConcurrentRequestsPerEndpoint: 8',
      ].join('\n'),
    );
    const config = loadConfig({ configPath: file, extProcPort: 9002 }, {});
    expect(config.epp).toMatchObject({ port: 9002, host: '127.0.0.1' });
    expect(Object.keys(config.engines)).toEqual(['epp-10.0.0.11-8000', 'epp-fd00--1-8000']);
    expect(config.engines['epp-10.0.0.11-8000']).toMatchObject({
      type: 'openai-upstream',
      baseUrl: 'http://10.0.0.11:8000/v1',
      maxConcurrentRequests: 8,
    });
    expect(config.engines['epp-fd00--1-8000']).toMatchObject({ baseUrl: 'http://[fd00::1]:8000/v1' });
    expect(config.models).toEqual({ llama: { engines: ['epp-10.0.0.11-8000', 'epp-fd00--1-8000'] } });
  });

  it('adds the endpoints to a model that engines of its own already serve', () => {
    const file = configFile(
      [
        'engines:',
        '  local: { type: emulated, hardware: h200, model: llama-3.1-8b }',
        'models:',
        '  llama: { engine: local }',
        'epp:',
        "  endpoints: ['10.0.0.11:8000']",
        '  models: [llama]',
      ].join('\n'),
    );
    expect(loadConfig({ configPath: file }, {}).models.llama).toEqual({
      engines: ['local', 'epp-10.0.0.11-8000'],
    });
  });

  it('takes endpoints from DNS alone (no engines until they are found), and needs endpoints or discovery', () => {
    const file = configFile(
      [
        'epp:',
        '  models: [llama]',
        '  discovery:',
        '    dns: { name: vllm.inference.svc.cluster.local, port: 8000 }',
      ].join('\n'),
    );
    const config = loadConfig({ configPath: file }, {});
    expect(config.epp).toMatchObject({
      endpoints: [],
      discovery: { dns: { name: 'vllm.inference.svc.cluster.local', port: 8000, intervalMs: 5000 } },
    });
    expect(config.engines).toEqual({});
    expect(config.models).toEqual({});
    const neither = configFile('epp:\n  models: [llama]\n');
    expect(problemsOf(() => loadConfig({ configPath: neither }, {}))).toEqual([
      'epp.endpoints: give the EPP its endpoints: a static `endpoints` list, `discovery`, or both',
    ]);
  });

  it('takes endpoints from an InferencePool watch, and one discovery source at a time', () => {
    const file = configFile(
      [
        'epp:',
        '  models: [llama]',
        '  discovery:',
        '    kubernetes: { namespace: inference, inferencePool: vllm-pool }',
      ].join('\n'),
    );
    expect(loadConfig({ configPath: file }, {}).epp?.discovery).toEqual({
      kubernetes: { namespace: 'inference', inferencePool: 'vllm-pool' },
    });
    const both = configFile(
      [
        'epp:',
        '  models: [llama]',
        '  discovery:',
        '    dns: { name: vllm.inference.svc.cluster.local, port: 8000 }',
        '    kubernetes: { namespace: inference, inferencePool: vllm-pool }',
      ].join('\n'),
    );
    expect(problemsOf(() => loadConfig({ configPath: both }, {}))).toEqual([
      'epp.discovery: give exactly one discovery source: `dns` or `kubernetes`',
    ]);
  });

  it('names a bad endpoint by its path, and refuses --ext-proc-port without an epp section', () => {
    const bad = configFile("epp:\n  endpoints: ['10.0.0.11']\n  models: [llama]\n");
    expect(problemsOf(() => loadConfig({ configPath: bad }, {}))).toEqual([
      'epp.endpoints.0: expected ip:port (IPv6 as [addr]:port)',
    ]);
    expect(problemsOf(() => loadConfig({ extProcPort: 9002 }, {}))).toEqual([
      '--ext-proc-port: the Endpoint Picker needs an `epp` section (endpoints, models) in the config file',
    ]);
  });
});
