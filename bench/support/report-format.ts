// Helpers every benchmark's report shares: the preamble (command and machine), Markdown tables, verdicts,
// and the command line (options, --quick, --help). Quantiles come from src/core/quantile.ts, the one definition.

import os from 'node:os';
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** A Markdown table: first column left-aligned, the rest right-aligned, as the docs paste them. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)),
  );
  const line = (cells: string[]) =>
    `| ${cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join(' | ')} |`;
  return [
    line(header),
    `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`,
    ...rows.map(line),
  ].join('\n');
}

/** A Markdown table of `rows`, each column given as its title and how a row fills it. */
export function columnsTable<Row>(
  rows: Row[],
  columns: Array<[title: string, cell: (row: Row) => string]>,
): string {
  return formatTable(
    columns.map(([title]) => title),
    rows.map((row) => columns.map(([, cell]) => cell(row))),
  );
}

/** A target's verdict line: PASS, MISS, or n/a when the figure could not be measured. */
export function verdict(pass: boolean | null, text: string): void {
  console.log(`${pass === null ? 'n/a ' : pass ? 'PASS' : 'MISS'}  ${text}`);
}

/** The machine a benchmark ran on, as every report prints it. */
export function describeMachine(): string {
  const cpus = os.cpus();
  const memoryGiB = Math.round((os.totalmem() / 1024 ** 3) * 10) / 10;
  return (
    `${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${cpus.length} cores, ${memoryGiB} GiB, ` +
    `${os.platform()} ${os.release()} ${os.arch()}, Node ${process.version}`
  );
}

/**
 * The lines every report starts with: what ran (as a command to paste back, e.g. `npm run bench:tiers --
 * --quick`), on what machine, and when; then the benchmark's own settings. `script`: an npm script
 * (`bench:tiers`) or a file run with tsx.
 */
export function printPreamble(title: string, script: string, settings: string[] = []): string {
  const args = process.argv.slice(2).map(quoteArgument).join(' ');
  const command = script.startsWith('bench:')
    ? `npm run ${script}${args ? ` -- ${args}` : ''}`
    : `npx tsx ${script}${args ? ` ${args}` : ''}`;
  console.log(`# ${title}, ${new Date().toISOString()}`);
  console.log(`command:  ${command}`);
  console.log(`machine:  ${describeMachine()}`);
  for (const line of settings) console.log(line);
  console.log('');
  return command;
}

/** `1.23x`, or `–` when either side is missing or zero. */
export function ratio(numerator: number | null | undefined, denominator: number | null | undefined): string {
  if (numerator == null || denominator == null || !(numerator > 0) || !(denominator > 0)) return '–';
  return `${(numerator / denominator).toFixed(2)}x`;
}

/** A number with `digits` decimals, or `–` when missing. */
export function fixed(value: number | null | undefined, digits = 0): string {
  return value == null || Number.isNaN(value) ? '–' : value.toFixed(digits);
}

/** An argument as a POSIX shell would need it, so printed commands can be pasted back. */
export function quoteArgument(argument: string): string {
  return /^[\w@%+=:,./-]+$/.test(argument) ? argument : `'${argument.replaceAll("'", "'\\''")}'`;
}

/** One command-line option: its default, its `--quick` value, its help line and how its text is read. */
export interface OptionSpec<Value> {
  fallback: Value;
  quick?: Value;
  help: string;
  /** `<n>`, `<list>` …, or null for a flag. */
  placeholder: string | null;
  read(text: string, flag: string): Value;
}

type OptionExtras<Value> = { quick?: Value; placeholder?: string };

function option<Value>(
  fallback: Value,
  help: string,
  extras: OptionExtras<Value>,
  placeholder: string,
  read: OptionSpec<Value>['read'],
): OptionSpec<Value> {
  return { fallback, help, quick: extras.quick, placeholder: extras.placeholder ?? placeholder, read };
}

/** A positive integer (or, with `min: 0`, a count that may be zero). */
export const integer = (fallback: number, help: string, extras: OptionExtras<number> & { min?: 0 } = {}) =>
  option(fallback, help, extras, '<n>', (text, flag) => checkedNumber(flag, text, true, extras.min ?? 1));

/** A positive number. */
export const number = (fallback: number, help: string, extras: OptionExtras<number> = {}) =>
  option(fallback, help, extras, '<n>', (text, flag) => checkedNumber(flag, text, false, Number.MIN_VALUE));

/** A comma-separated list of distinct positive integers. */
export const integers = (fallback: number[], help: string, extras: OptionExtras<number[]> = {}) =>
  option(fallback, help, extras, '<list>', (text, flag) => [
    ...new Set(text.split(',').map((item) => checkedNumber(flag, item, true, 1))),
  ]);

/** Free text ('' when not given), or one of `choices`. */
export const text = (
  fallback: string,
  help: string,
  extras: OptionExtras<string> & { choices?: string[] } = {},
) =>
  option(
    fallback,
    help,
    extras,
    extras.choices ? `<${extras.choices.join('|')}>` : '<text>',
    (value, flag) => {
      if (extras.choices && !extras.choices.includes(value))
        throw new Error(`${flag}: expected ${extras.choices.join(', ')}, got '${value}'`);
      return value;
    },
  );

/** An option without a value. */
export const flag = (help: string): OptionSpec<boolean> => ({
  fallback: false,
  help,
  placeholder: null,
  read: () => true,
});

function checkedNumber(flag: string, text: string, integer: boolean, min: number): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value)))
    throw new Error(
      `${flag}: expected a ${min === 0 ? 'non-negative' : 'positive'} ${integer ? 'integer' : 'number'}, got '${text}'`,
    );
  return value;
}

/** `ttftRequests` → `--ttft-requests`. */
const flagName = (key: string) => `--${key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;

const shown = (value: unknown) => (Array.isArray(value) ? value.join(',') : String(value));

/**
 * A benchmark's command line from its option specs (keys in camelCase, flags in kebab-case). `--quick`
 * applies each spec's quick value to the options not given explicitly; `--help` prints the usage, made
 * from the specs. `check` may reject a combination. A mistake prints the message and the usage, exit 2.
 */
export function readOptions<Specs extends Record<string, OptionSpec<unknown>>>(
  script: string,
  description: string,
  specs: Specs,
  check: (options: { [Key in keyof Specs]: Specs[Key]['fallback'] }) => void = () => {},
): { [Key in keyof Specs]: Specs[Key]['fallback'] } {
  const entries = Object.entries(specs);
  const quick = entries.flatMap(([key, spec]) =>
    spec.quick === undefined ? [] : [`${flagName(key)} ${shown(spec.quick)}`],
  );
  const lines = [
    ...entries.map(([key, spec]) => {
      const fallback =
        spec.placeholder && shown(spec.fallback) !== '' ? ` (default ${shown(spec.fallback)})` : '';
      return [`${flagName(key)}${spec.placeholder ? ` ${spec.placeholder}` : ''}`, `${spec.help}${fallback}`];
    }),
    ['--quick', `a short run that checks the benchmark end to end: ${quick.join(' ')}`],
    ['--help', 'print this'],
  ];
  const width = Math.max(...lines.map(([name]) => name!.length)) + 2;
  const usage = `Usage: npm run ${script} -- [options]\n\n${description}\n\n${lines
    .map(([name, help]) => `  ${name!.padEnd(width)}${help}`)
    .join('\n')}`;
  const config: ParseArgsConfig['options'] = { quick: { type: 'boolean' }, help: { type: 'boolean' } };
  for (const [key, spec] of entries)
    config[flagName(key).slice(2)] = { type: spec.placeholder ? 'string' : 'boolean' };
  try {
    const { values } = parseArgs({ options: config, strict: true });
    if (values.help) {
      console.log(usage);
      process.exit(0);
    }
    const options = Object.fromEntries(
      entries.map(([key, spec]) => {
        const given = values[flagName(key).slice(2)];
        if (given !== undefined) return [key, spec.read(String(given), flagName(key))];
        return [key, values.quick && spec.quick !== undefined ? spec.quick : spec.fallback];
      }),
    ) as { [Key in keyof Specs]: Specs[Key]['fallback'] };
    check(options);
    return options;
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    process.exit(2);
  }
}
