import path from 'node:path';
import { ConfigError } from '../core/config-error.js';
import type { AuthConfig } from './admission-config.js';
import type { KeyStore } from './key-store.js';

/** What open mode needs to know of the configuration. */
interface OpenModeSettings {
  server: { host: string };
  auth: AuthConfig;
  dataDir: string;
}

import { isLoopbackHost } from './loopback.js';

/** Where the key store lives: `auth.keysPath`, or `<dataDir>/keys.sqlite`. */
export function keysPathOf(config: Pick<OpenModeSettings, 'auth' | 'dataDir'>): string {
  return config.auth.keysPath ?? path.join(config.dataDir, 'keys.sqlite');
}

/**
 * Open mode (no keys: anyone may call) is for a developer's own machine. Listening anywhere else without
 * keys is refused at start, before the port opens, unless `auth.allowOpen` says it is meant.
 */
export function refuseOpenModeOffLoopback(config: OpenModeSettings, keys: KeyStore): void {
  const { host } = config.server;
  if (config.auth.required || config.auth.allowOpen || isLoopbackHost(host) || keys.count() > 0) return;
  throw new ConfigError(
    [
      `server.host is ${host}, which other machines can reach, and there are no API keys in ${keysPathOf(config)}: ` +
        'anyone could use this server. Create a key first (gravity keys create --tenant <name>), listen on ' +
        '127.0.0.1, or set auth.allowOpen: true to serve without keys on purpose.',
    ],
    'auth',
  );
}

/** The warning `gravity serve` logs at start in open mode. */
export function openModeWarning(config: Pick<OpenModeSettings, 'auth' | 'dataDir'>): string {
  return (
    `no API keys in ${keysPathOf(config)}: the server is open, every request is anonymous and unlimited ` +
    `(create one with gravity keys create --tenant <name>)`
  );
}
