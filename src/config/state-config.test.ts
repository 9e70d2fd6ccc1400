import { describe, expect, it } from 'vitest';
import { configFile } from '../../test/support/config-file.js';
import { problemsOf } from '../../test/support/config-problems.js';
import { loadConfig } from './load-config.js';

describe('the state section', () => {
  it('keeps limits in memory unless told otherwise, and fails open by default', () => {
    expect(loadConfig({}, {}).state).toEqual({
      store: 'memory',
      onUnavailable: 'open',
      timeoutMs: 250,
      leaseMs: 30_000,
      syncIntervalMs: 250,
    });
  });

  it('takes the Redis URL from GRAVITY_STATE_URL, which also selects the redis store', () => {
    const file = configFile('state:\n  onUnavailable: closed\n');
    expect(loadConfig({ configPath: file }, { GRAVITY_STATE_URL: 'redis://:pw@cache:6379/0' }).state).toEqual(
      {
        store: 'redis',
        url: 'redis://:pw@cache:6379/0',
        onUnavailable: 'closed',
        timeoutMs: 250,
        leaseMs: 30_000,
        syncIntervalMs: 250,
      },
    );
    expect(problemsOf(() => loadConfig({ configPath: configFile('state:\n  store: redis\n') }, {}))).toEqual([
      'state.url: store: redis needs a url (or GRAVITY_STATE_URL)',
    ]);
    expect(
      problemsOf(() => loadConfig({ configPath: configFile('state:\n  url: redis://cache\n') }, {})),
    ).toEqual(['state.url: a url is for store: redis']);
  });
});
