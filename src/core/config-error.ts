/**
 * A configuration problem, with the path of every offending setting. Printed as is at start. In core
 * because every stage that validates its own slice of the configuration (engines, admission, routing)
 * throws it, and a stage must not import `config/`, which composes them.
 */
export class ConfigError extends Error {
  constructor(
    readonly problems: string[],
    source: string,
  ) {
    super(`invalid configuration (${source}):\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}
