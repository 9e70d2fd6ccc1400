// The one A/B-rounds harness: two or more variants (Gravity built from two commits, peers such as nginx,
// two configurations) measured in alternating rounds of the same run, then reported as per-variant medians
// and ratios. The machine is shared and noisy (rounds of one variant differ by 10–60%): only figures taken
// side by side, minutes or seconds apart, compare. Rounds rotate the order, so no variant always runs
// first or right after another.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { medianOf } from '../../src/core/quantile.js';
import { fixed, formatTable } from './report-format.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** The items in a different order each round: `by` places later items first. */
function rotated<T>(items: readonly T[], by: number): T[] {
  const shift = by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/**
 * Runs `measure` for every variant in each of `rounds` rounds, rotating the order; `warmUpRounds` rounds
 * first are run and dropped. Returns each variant's results in round order.
 */
export async function alternatingRounds<Variant extends { name: string }, Result>(options: {
  variants: readonly Variant[];
  rounds: number;
  warmUpRounds?: number;
  /** `round` is 0-based; negative for a warm-up round. */
  measure: (variant: Variant, round: number) => Promise<Result>;
  onResult?: (variant: Variant, round: number, result: Result) => void;
}): Promise<Map<string, Result[]>> {
  const results = new Map<string, Result[]>(options.variants.map((variant) => [variant.name, []]));
  const warmUp = options.warmUpRounds ?? 0;
  for (let round = -warmUp; round < options.rounds; round++) {
    for (const variant of rotated(options.variants, round + warmUp)) {
      const result = await options.measure(variant, round);
      if (round < 0) continue;
      results.get(variant.name)!.push(result);
      options.onResult?.(variant, round, result);
    }
  }
  return results;
}

export interface Comparison {
  variant: string;
  median: number | null;
  /** median(variant) / median(baseline). */
  ratio: number | null;
  /** Median over rounds of variant / baseline in the same round: cancels drift between rounds. */
  pairedRatio: number | null;
  /** max / min − 1 over the variant's rounds: how much the machine moved its figure by itself. */
  spread: number | null;
}

/** Each variant's median of one figure per round, and its ratios to `baseline`'s. */
export function compare(perRound: Map<string, Array<number | null>>, baseline: string): Comparison[] {
  const base = perRound.get(baseline) ?? [];
  const present = (values: Array<number | null>) => values.filter((value): value is number => value !== null);
  const baseMedian = medianOf(present(base));
  return [...perRound].map(([variant, values]) => {
    const own = present(values);
    const median = medianOf(own);
    const paired = values.flatMap((value, round) => {
      const other = base[round];
      return value === null || other == null || other === 0 ? [] : [value / other];
    });
    return {
      variant,
      median,
      ratio: median === null || !baseMedian ? null : median / baseMedian,
      pairedRatio: medianOf(paired),
      spread: own.length < 2 ? null : Math.max(...own) / Math.min(...own) - 1,
    };
  });
}

/** A Markdown table of comparisons: figure, median, ratio, paired ratio and spread per variant. */
export function comparisonTable(figure: string, baseline: string, rows: Comparison[], digits = 3): string {
  return formatTable(
    [figure, 'median', `/ ${baseline}`, `paired / ${baseline}`, 'spread'],
    rows.map((row) => [
      row.variant,
      fixed(row.median, digits),
      row.ratio === null ? '–' : `${row.ratio.toFixed(2)}x`,
      row.pairedRatio === null ? '–' : `${row.pairedRatio.toFixed(2)}x`,
      row.spread === null ? '–' : `${(row.spread * 100).toFixed(0)}%`,
    ]),
  );
}

export interface GravityBuild {
  /** The short commit, with `+` for a working tree that differs from it: `ea2509f+`, `a82827d`. */
  label: string;
  /** The folder to run Gravity in (the repository, or a temporary worktree of the commit). */
  dir: string;
  /** Arguments to `node` that start the CLI, relative to `dir`. */
  entry: string[];
  remove(): void;
}

function git(args: string[], cwd = repoRoot): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/**
 * Gravity from a commit (a temporary `git worktree` with this repository's node_modules linked in) or, for
 * null, the working tree. `compiled`: built with tsc and run with plain node, as shipped; otherwise run
 * from the sources through tsx (faster to set up; the same code once loaded).
 */
export function gravityBuild(commit: string | null, compiled: boolean): GravityBuild {
  const head = git(['rev-parse', '--short', 'HEAD']);
  let dir = repoRoot;
  // `+`: the working tree differs from its commit.
  let label = `${head}${git(['status', '--porcelain', '--', 'src']) ? '+' : ''}`;
  let remove = () => {};
  if (commit !== null) {
    const sha = git(['rev-parse', '--short', `${commit}^{commit}`]);
    const parent = mkdtempSync(path.join(os.tmpdir(), 'gravity-bench-build-'));
    dir = path.join(parent, sha);
    git(['worktree', 'add', '--detach', dir, sha]);
    symlinkSync(path.join(repoRoot, 'node_modules'), path.join(dir, 'node_modules'));
    label = sha;
    remove = () => {
      try {
        git(['worktree', 'remove', '--force', dir]);
      } catch {}
      rmSync(parent, { recursive: true, force: true });
    };
  }
  const tsc = path.join(repoRoot, 'node_modules/typescript/bin/tsc');
  try {
    if (compiled) {
      execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
        cwd: dir,
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      if (!existsSync(path.join(dir, 'dist/cli/main.js'))) throw new Error(`no dist/cli/main.js in ${dir}`);
    }
  } catch (error) {
    remove();
    throw error;
  }
  return {
    label,
    dir,
    entry: compiled ? ['dist/cli/main.js'] : ['--import', 'tsx', 'src/cli/main.ts'],
    remove,
  };
}
