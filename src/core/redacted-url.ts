/**
 * A connection URL fit for messages and logs: its password replaced by `***`. One for every service a
 * replica connects to (the PostgreSQL ledger, the shared-state Redis).
 */
export function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    // Not a URL (e.g. a key=value connection string): print none of it rather than a password.
    return '(unparsable URL)';
  }
}
