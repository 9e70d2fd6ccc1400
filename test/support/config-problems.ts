import { ConfigError } from '../../src/core/config-error.js';

/** The problems a configuration error lists; fails the test if `run` does not throw a ConfigError. */
export function problemsOf(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}
