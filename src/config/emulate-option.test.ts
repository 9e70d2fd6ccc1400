import { describe, expect, it } from 'vitest';
import { problemsOf } from '../../test/support/config-problems.js';
import { emulatedFleetDocument, parseEmulateOption } from './emulate-option.js';
import { loadConfig } from './load-config.js';

describe('--emulate', () => {
  it('parses <hardware>:<model>:<replicas>[x<devices>] and the short hardware aliases', () => {
    expect(parseEmulateOption('h100-sxm:llama-3.1-8b:4')).toEqual({
      hardware: 'h100-sxm',
      model: 'llama-3.1-8b',
      replicas: 4,
      devices: 1,
    });
    expect(parseEmulateOption('h100:llama-3.1-70b:2x4')).toEqual({
      hardware: 'h100-sxm',
      model: 'llama-3.1-70b',
      replicas: 2,
      devices: 4,
    });
    expect(parseEmulateOption('a100:qwen2.5-7b')).toMatchObject({ hardware: 'a100-80gb', replicas: 1 });
  });

  it('says what is wrong with a malformed value', () => {
    expect(() => parseEmulateOption('h100')).toThrow(/expected <hardware>:<model>/);
    expect(() => parseEmulateOption('tpu:llama-3.1-8b:1')).toThrow(/unknown hardware 'tpu' \(known: .*h100/);
    expect(() => parseEmulateOption('h100:gpt-5:1')).toThrow(/unknown model profile 'gpt-5'/);
    expect(() => parseEmulateOption('h100:llama-3.1-8b:0')).toThrow(/replicas must look like/);
    expect(() => parseEmulateOption('h100:llama-3.1-8b:2y4')).toThrow(/replicas must look like/);
  });

  it('builds one emulated engine per replica, all serving the model under its profile name', () => {
    const config = loadConfig({ emulate: 'h100:llama-3.1-70b:2x4' }, {});
    expect(Object.keys(config.engines)).toEqual(['emulated-0', 'emulated-1']);
    expect(config.engines['emulated-1']).toMatchObject({
      type: 'emulated',
      hardware: 'h100-sxm',
      devices: 4,
      model: 'llama-3.1-70b',
      prefixCaching: true,
      ordering: 'fcfs',
      metering: { cost: { hourlyUsd: 10 } },
    });
    expect(config.models).toEqual({ 'llama-3.1-70b': { engines: ['emulated-0', 'emulated-1'] } });
    expect(config.routing.policy).toBe('least-loaded');
    expect(emulatedFleetDocument(parseEmulateOption('h100:llama-3.1-8b:3')).models).toEqual({
      'llama-3.1-8b': { engines: ['emulated-0', 'emulated-1', 'emulated-2'] },
    });
  });

  it('is read from GRAVITY_EMULATE too, and replaces the generated models', () => {
    const config = loadConfig({}, { GRAVITY_EMULATE: 'l40s:mistral-7b:1' });
    expect(Object.keys(config.models)).toEqual(['mistral-7b']);
  });

  it('rejects a bad value, and --model with it, as configuration errors', () => {
    expect(problemsOf(() => loadConfig({ emulate: 'h100:nope:1' }, {}))[0]).toMatch(
      /^--emulate: unknown model profile 'nope'/,
    );
    expect(problemsOf(() => loadConfig({ emulate: 'h100:llama-3.1-8b:1', modelPath: 'x.gguf' }, {}))).toEqual(
      ['--model and --emulate cannot be combined: choose one'],
    );
  });
});

describe('emulated engines and replicas in config', () => {
  it('rejects a model that does not fit its hardware, naming the engine', () => {
    expect(problemsOf(() => loadConfig({ emulate: 'l4:llama-3.1-70b:1' }, {}))).toEqual([
      'engines.emulated-0: llama-3.1-70b (141.2 GB of weights) does not fit 1× l4 (24 GB); use more devices per replica',
    ]);
    const problems = problemsOf(() =>
      loadConfig(
        {
          document: {
            engines: { big: { type: 'emulated', hardware: 'h100-sxm', model: 'llama-3.1-70b' } },
            models: { m: { engine: 'big' } },
          },
        },
        {},
      ),
    );
    expect(problems[0]).toMatch(/^engines\.big: llama-3\.1-70b .* does not fit 1× h100-sxm/);
  });

  it('validates hardware, model and ordering names with their paths', () => {
    const problems = problemsOf(() =>
      loadConfig(
        {
          document: {
            engines: { e: { type: 'emulated', hardware: 'h1000', model: 'llama-9', ordering: 'lifo' } },
            models: { m: { engine: 'e' } },
          },
        },
        {},
      ),
    );
    expect(problems.map((problem) => problem.split(':')[0])).toEqual([
      'engines.e.hardware',
      'engines.e.model',
      'engines.e.ordering',
    ]);
  });

  it('accepts engines: [a, b] for one model, and checks every entry', () => {
    const engine = { type: 'emulated', hardware: 'h100-sxm', model: 'llama-3.1-8b' };
    const config = loadConfig(
      {
        document: {
          engines: { a: engine, b: engine },
          models: { m: { engines: ['a', 'b'] } },
          routing: { policy: 'round-robin' },
        },
      },
      {},
    );
    expect(config.models.m?.engines).toEqual(['a', 'b']);
    expect(config.routing.policy).toBe('round-robin');

    const problems = problemsOf(() =>
      loadConfig(
        {
          document: {
            engines: { a: engine },
            models: { m: { engines: ['a', 'c'] }, n: { engine: 'a', engines: ['a'] } },
            routing: { policy: 'fastest' },
          },
        },
        {},
      ),
    );
    expect(problems[0]).toMatch(/^routing\.policy: /);
    const references = problemsOf(() =>
      loadConfig(
        {
          document: {
            engines: { a: engine },
            models: { m: { engines: ['a', 'c'] }, n: { engine: 'a', engines: ['a'] } },
          },
        },
        {},
      ),
    );
    expect(references).toEqual([
      "models.m.engines references unknown engine 'c'",
      'models.n: give either engine (one engine) or engines (a list), not both or neither',
    ]);
  });
});
