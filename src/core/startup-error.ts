/**
 * Something Gravity needs at start is not there (its PostgreSQL ledger cannot be reached, its schema is
 * behind): printed as is, and the process exits non-zero instead of serving without it. In core so that
 * any stage can throw it and the CLI can tell it from a bug.
 */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}
