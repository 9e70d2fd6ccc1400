import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';

/**
 * Gravity's data files hold tenants' prompts, usage and key hashes: only the user Gravity runs as may
 * read them, whatever the umask. Folders are created 0700 and files 0600.
 */
export const privateDirectoryMode = 0o700;
export const privateFileMode = 0o600;

/**
 * Creates `directory` (and missing parents) 0700. A folder that already exists is left as it is (it may
 * be the operator's, e.g. the working directory), unless `owned`: a folder only Gravity writes (the batch
 * store's `files/`), which an older Gravity may have made world-readable, is narrowed to 0700.
 */
export function makePrivateDirectory(directory: string, options: { owned?: boolean } = {}): void {
  mkdirSync(directory, { recursive: true, mode: privateDirectoryMode });
  if (options.owned) narrowMode(directory, privateDirectoryMode);
}

/**
 * Creates a SQLite database file 0600 before SQLite opens it, in a private folder: SQLite gives its
 * `-wal` and `-shm` files the main file's mode. A file written by an older Gravity (and its WAL files)
 * is narrowed to 0600 too.
 */
export function preparePrivateDatabaseFile(file: string): void {
  if (file === ':memory:' || file === '') return;
  const resolved = path.resolve(file);
  makePrivateDirectory(path.dirname(resolved));
  closeSync(openSync(resolved, 'a', privateFileMode));
  for (const companion of [resolved, `${resolved}-wal`, `${resolved}-shm`])
    if (existsSync(companion)) narrowMode(companion, privateFileMode);
}

function narrowMode(target: string, mode: number): void {
  try {
    chmodSync(target, mode);
  } catch (error) {
    // Another user's file that this one may still open: narrowing it is that user's call.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
  }
}
