// Helpers every benchmark's report shares: the preamble (command and machine), Markdown tables, and
// command-line values. Quantiles come from src/core/quantile.ts, the one definition.

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

/** A command-line value that must be a positive number (or integer); the message names the flag. */
export function positiveNumber(name: string, text: string, integer: boolean): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value)))
    throw new Error(`--${name}: expected a positive ${integer ? 'integer' : 'number'}, got '${text}'`);
  return value;
}

/** An argument as a POSIX shell would need it, so printed commands can be pasted back. */
export function quoteArgument(argument: string): string {
  return /^[\w@%+=:,./-]+$/.test(argument) ? argument : `'${argument.replaceAll("'", "'\\''")}'`;
}

/**
 * A benchmark's command line. `defaults` names every option (a string value, or false for a flag); `--quick`
 * applies `quick` to the options not given explicitly; `--help` prints `usage`. Returns `read(values)`; a
 * mistake in the options (found by parseArgs or by `read`) prints the message and the usage, exit code 2.
 */
export function readOptions<Values extends Record<string, string | boolean>, Result>(
  usage: string,
  defaults: Values,
  quick: Partial<Values>,
  read: (values: Values) => Result,
): Result {
  const options: ParseArgsConfig['options'] = { quick: { type: 'boolean' }, help: { type: 'boolean' } };
  for (const [name, value] of Object.entries(defaults))
    options[name] = { type: typeof value === 'boolean' ? 'boolean' : 'string' };
  try {
    const { values } = parseArgs({ options, strict: true });
    if (values.help) {
      console.log(usage);
      process.exit(0);
    }
    return read({ ...defaults, ...(values.quick ? quick : {}), ...values } as Values);
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    process.exit(2);
  }
}
