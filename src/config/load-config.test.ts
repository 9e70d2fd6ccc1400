import { describe, expect, it } from 'vitest';
import { configFile } from '../../test/support/config-file.js';
import { problemsOf } from '../../test/support/config-problems.js';
import { engineDefinitions, engineTypesWith } from '../engines/engine-registry.js';
import { loadConfig } from './load-config.js';

describe('loadConfig', () => {
  it('serves the two generated models on loopback port 8080 by default', () => {
    const config = loadConfig({}, {});
    expect(config.server).toMatchObject({ host: '127.0.0.1', port: 8080 });
    expect(Object.keys(config.models)).toEqual(['gravity-tiny', 'gravity-tiny-random']);
    expect(config.engines.tiny).toMatchObject({ type: 'llama-cpp', threads: 1, slots: 4 });
  });

  it('lets the command line win over the environment, and the environment over the file', () => {
    const file = configFile('server:\n  port: 7000\n  host: 0.0.0.0\n');
    const fromFile = loadConfig({ configPath: file }, {});
    expect(fromFile.server).toMatchObject({ port: 7000, host: '0.0.0.0' });
    const fromEnv = loadConfig({ configPath: file }, { GRAVITY_PORT: '7100', GRAVITY_THREADS: '2' });
    expect(fromEnv.server.port).toBe(7100);
    expect(fromEnv.engines.tiny).toMatchObject({ threads: 2 });
    const fromFlags = loadConfig({ configPath: file, port: 7200 }, { GRAVITY_PORT: '7100' });
    expect(fromFlags.server.port).toBe(7200);
  });

  it('keeps the ledger in SQLite by default, in PostgreSQL with a URL from the file or the environment', () => {
    expect(loadConfig({}, {}).ledger).toEqual({ store: 'sqlite', migrate: true });
    const file = configFile('ledger:\n  store: postgres\n  migrate: false\n');
    // The file names the store and leaves the URL (and its password) to the environment.
    const fromEnv = loadConfig(
      { configPath: file },
      { GRAVITY_LEDGER_URL: 'postgres://g:pw@db:5432/gravity' },
    );
    expect(fromEnv.ledger).toEqual({
      store: 'postgres',
      url: 'postgres://g:pw@db:5432/gravity',
      migrate: false,
    });
    // The environment's URL alone is enough.
    expect(loadConfig({}, { GRAVITY_LEDGER_URL: 'postgres://db/gravity' }).ledger.store).toBe('postgres');
    expect(problemsOf(() => loadConfig({ configPath: file }, {}))).toEqual([
      'ledger.url: store: postgres needs a url (or GRAVITY_LEDGER_URL)',
    ]);
    expect(
      problemsOf(() => loadConfig({ configPath: configFile('ledger:\n  retentionDays: 30\n') }, {})),
    ).toEqual([
      'ledger.retentionDays: retentionDays is for store: postgres (a SQLite ledger keeps everything)',
    ]);
  });

  it('serves a user GGUF under its file name with --model', () => {
    const config = loadConfig({ modelPath: '/models/Llama-3.2-1B.Q4_K_M.gguf' }, {});
    expect(config.models).toEqual({ 'Llama-3.2-1B.Q4_K_M': { engine: 'local' } });
    expect(config.engines.local).toMatchObject({
      type: 'llama-cpp',
      model: { path: '/models/Llama-3.2-1B.Q4_K_M.gguf' },
    });
  });

  it('names the path of an unknown key', () => {
    const problems = problemsOf(() => loadConfig({ configPath: configFile('server:\n  prot: 80\n') }, {}));
    expect(problems).toEqual(['server.prot: unknown setting']);
  });

  it('names the path of a value of the wrong type', () => {
    const problems = problemsOf(() =>
      loadConfig(
        {
          configPath: configFile(
            'engines:\n  e1:\n    type: llama-cpp\n    model: {generated: gravity-tiny}\n    slots: many\nmodels:\n  m: {engine: e1}\n',
          ),
        },
        {},
      ),
    );
    expect(problems[0]).toMatch(/^engines\.e1\.slots: /);
  });

  it('reports a model that references an unknown engine', () => {
    const yaml =
      'engines:\n  e1: {type: llama-cpp, model: {generated: gravity-tiny}}\nmodels:\n  m1: {engine: e1}\n  m2: {engine: e2}\n';
    expect(problemsOf(() => loadConfig({ configPath: configFile(yaml) }, {}))).toContain(
      "models.m2.engine references unknown engine 'e2'",
    );
  });

  it('reports an engine type that does not exist and an upstream URL that is not http', () => {
    const yaml =
      'engines:\n  e1: {type: vllm-magic}\n  e2: {type: openai-upstream, baseUrl: "ftp://x"}\nmodels:\n  m1: {engine: e1}\n  m2: {engine: e2}\n';
    const problems = problemsOf(() => loadConfig({ configPath: configFile(yaml) }, {}));
    expect(problems.some((problem) => problem.startsWith('engines.e1.type'))).toBe(true);
    expect(problems.some((problem) => problem.startsWith('engines.e2.baseUrl'))).toBe(true);
  });

  it('rejects a bad environment override with the variable name', () => {
    expect(problemsOf(() => loadConfig({}, { GRAVITY_PORT: 'eighty' }))).toEqual([
      "GRAVITY_PORT: expected an integer, got 'eighty'",
    ]);
  });

  it('reports YAML syntax errors', () => {
    expect(problemsOf(() => loadConfig({ configPath: configFile('server: [unclosed\n') }, {}))[0]).toMatch(
      /^YAML syntax/,
    );
  });
});

describe('loadConfig with the registered engine types', () => {
  it('names every registered type when config asks for one that is not', () => {
    const document = { engines: { x: { type: 'vllm' } }, models: { m: { engine: 'x' } } };
    expect(() => loadConfig({ document }, {})).toThrow(
      `engines.x.type: Invalid discriminator value. Expected ${engineDefinitions.map((definition) => `'${definition.type}'`).join(' | ')}`,
    );
  });

  it('says where a setting applies from the capabilities definitions declare', () => {
    expect(engineTypesWith('upstreamModelNames')).toEqual(
      engineDefinitions
        .filter((definition) => definition.capabilities.upstreamModelNames)
        .map((definition) => definition.type),
    );
    const document = {
      engines: { tiny: { type: 'llama-cpp', model: { generated: 'gravity-tiny' } } },
      models: { m: { engine: 'tiny', upstreamModel: 'other' } },
    };
    expect(() => loadConfig({ document }, {})).toThrow(
      `models.m.upstreamModel applies to ${engineTypesWith('upstreamModelNames').join(' and ')} engines, not 'tiny' (llama-cpp)`,
    );
  });

  it('applies command-line tuning only to engines whose definition takes it', () => {
    const document = {
      engines: {
        tiny: { type: 'llama-cpp', model: { generated: 'gravity-tiny' } },
        remote: { type: 'openai-upstream', baseUrl: 'http://127.0.0.1:8000/v1' },
      },
      models: { a: { engine: 'tiny' }, b: { engine: 'remote' } },
    };
    const config = loadConfig({ document, threads: 3, slots: 5, contextTokens: 1024 }, {});
    expect(config.engines.tiny).toMatchObject({ threads: 3, slots: 5, contextTokens: 1024 });
    expect(config.engines.remote).not.toHaveProperty('threads');
  });
});
