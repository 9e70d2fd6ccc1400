import { describe, expect, it } from 'vitest';
import { keysPathOf, refuseOpenModeOffLoopback } from '../src/admission/open-mode.js';
import { SqliteKeyStore } from '../src/admission/sqlite-key-store.js';
import { createKey } from '../src/cli/keys-command.js';
import { loadConfig } from '../src/config/load-config.js';
import { problemsOf } from './support/config-problems.js';

describe('open mode at start', () => {
  it('is allowed on loopback, and refused on a reachable host unless keys exist or it is meant', () => {
    const keys = new SqliteKeyStore(':memory:');
    const onHost = (host: string, auth: Record<string, unknown> = {}) =>
      loadConfig({ document: { auth }, host }, {});
    expect(() => refuseOpenModeOffLoopback(onHost('127.0.0.1'), keys)).not.toThrow();
    expect(() => refuseOpenModeOffLoopback(onHost('localhost'), keys)).not.toThrow();
    const [problem] = problemsOf(() => refuseOpenModeOffLoopback(onHost('0.0.0.0'), keys));
    expect(problem).toMatch(/server\.host is 0\.0\.0\.0.*no API keys in .*keys\.sqlite/);
    expect(problem).toMatch(/gravity keys create --tenant/);
    expect(() => refuseOpenModeOffLoopback(onHost('0.0.0.0', { allowOpen: true }), keys)).not.toThrow();
    expect(() => refuseOpenModeOffLoopback(onHost('0.0.0.0', { required: true }), keys)).not.toThrow();
    createKey(keys, { tenant: 'acme' });
    expect(() => refuseOpenModeOffLoopback(onHost('::'), keys)).not.toThrow();
    keys.close();
  });
});

describe('auth and tenants configuration', () => {
  it('defaults to an open loopback server with keys in <dataDir>/keys.sqlite', () => {
    const config = loadConfig({ dataDir: '/srv/gravity' }, {});
    expect(config.auth).toEqual({
      required: false,
      allowOpen: false,
      keyCacheMs: 1000,
      unboundedCompletionReserveTokens: 1024,
    });
    expect(config.tenants).toEqual({});
    expect(keysPathOf(config)).toBe('/srv/gravity/keys.sqlite');
  });

  it('reads tenant limits, with month as the default budget period', () => {
    const config = loadConfig({ document: { tenants: { acme: { rpm: 600, spendUsd: 50 } } } }, {});
    expect(config.tenants.acme).toEqual({ rpm: 600, spendUsd: 50, period: 'month' });
  });

  it('names the path of a wrong setting', () => {
    const problems = problemsOf(() =>
      loadConfig(
        {
          document: {
            auth: { alowOpen: true },
            tenants: { acme: { rpm: 0, period: 'week' }, 'bad name': {} },
          },
        },
        {},
      ),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        'auth.alowOpen: unknown setting',
        expect.stringMatching(/^tenants\.acme\.rpm: /),
        expect.stringMatching(/^tenants\.acme\.period: /),
        expect.stringMatching(/^tenants\.bad name/),
      ]),
    );
  });
});
