import type { GravityConfig } from '../config/config-schema.js';
import { type ConfigOverrides, loadConfig } from '../config/load-config.js';
import { ConfigError } from '../core/config-error.js';

/** The configuration a command runs with; a configuration problem is printed and exits with status 2. */
export function configOrExit(overrides: ConfigOverrides): GravityConfig {
  try {
    return loadConfig(overrides);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`gravity: ${error.message}\n`);
    process.exit(2);
  }
}
