import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A configuration file with `yaml` in a folder of its own; its path. */
export function configFile(yaml: string): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'gravity-config-')), 'gravity.yaml');
  writeFileSync(file, yaml);
  return file;
}
