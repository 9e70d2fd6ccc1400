import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Gravity's shared vocabulary lives once, in src/core: the service tiers and their ranks
 * (service-tiers.ts), seeded randomness (seeded-random.ts), and the prompt-size and prefix-block rules
 * (prompt-size.ts). Copies drift (the tier ranks once sat in three tables, the prefix block was written
 * two ways), so this checks that no other source file spells them out again.
 */
const sourceRoot = path.join(import.meta.dirname, '..', 'src');

function sourceFiles(folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(folder, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [full] : [];
  });
}

const files = sourceFiles(sourceRoot).map((file) => ({
  file: path.relative(sourceRoot, file),
  text: readFileSync(file, 'utf8'),
}));

function offenders(pattern: RegExp, home: string): string[] {
  return files.filter(({ file, text }) => file !== home && pattern.test(text)).map(({ file }) => file);
}

describe('shared vocabulary', () => {
  it('lists the service tiers and their ranks only in core/service-tiers.ts', () => {
    // Three or more tier names in one array or enum literal, in any order.
    const tierName = `'(?:auto|priority|default|flex|batch|scale)'`;
    const tierList = new RegExp(`\\[\\s*${tierName}(?:\\s*,\\s*${tierName}){2,}`);
    expect(offenders(tierList, 'core/service-tiers.ts')).toEqual([]);
    expect(offenders(/priority:\s*0,\s*default:\s*1/, 'core/service-tiers.ts')).toEqual([]);
  });

  it('has one seeded random generator', () => {
    expect(offenders(/class \w*Random\b/, 'core/seeded-random.ts')).toEqual([]);
  });

  it('states the prompt-size and prefix-block rules once', () => {
    expect(offenders(/charactersPerToken\s*=/, 'core/prompt-size.ts')).toEqual([]);
    expect(offenders(/(?:blockCharacters|prefixBlockTokens)\s*=\s*\d/, 'core/prompt-size.ts')).toEqual([]);
  });
});
