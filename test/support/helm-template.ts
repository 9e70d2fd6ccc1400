import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { New, type Template } from '@mdfriday/text-template';
import { parseAllDocuments, parse as parseYaml, stringify as stringifyYaml } from 'yaml';

/**
 * `helm template` for Gravity's chart, where no `helm` binary can be had (Debian does not package it).
 * Go's template language comes from a TypeScript port of `text/template`; what Helm adds on top is here:
 * values coalesced over values.yaml, the `.Release`/`.Chart`/`.Template` objects, and the Sprig and Helm
 * functions the chart uses, with Helm's semantics (Go's notion of empty, sorted YAML keys, `toYaml`
 * without its final newline, `required` and `fail` aborting the render). A function the chart starts to
 * use that is not listed here fails the render, so the chart cannot drift past what this checks.
 */
export interface RenderedChart {
  /** Every manifest, in template order (`_*.tpl` and NOTES.txt excluded), parsed. */
  manifests: KubernetesObject[];
  /** The rendered NOTES.txt. */
  notes: string;
  /** The values after coalescing, as the templates saw them. */
  values: Record<string, unknown>;
}

export interface KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

export interface Release {
  name: string;
  namespace: string;
}

export class ChartRenderError extends Error {}

export async function renderChart(
  chartDirectory: string,
  release: Release,
  overrides: Record<string, unknown> = {},
): Promise<RenderedChart> {
  const chart = parseYaml(readFileSync(path.join(chartDirectory, 'Chart.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  const defaults = parseYaml(readFileSync(path.join(chartDirectory, 'values.yaml'), 'utf8')) ?? {};
  const values = coalesce(structuredClone(defaults), overrides) as Record<string, unknown>;
  const templatesDirectory = path.join(chartDirectory, 'templates');
  const files = readdirSync(templatesDirectory).sort();

  // One template set, as Helm parses every file of the chart into one namespace of named templates.
  let root: Template;
  const include = async (name: string, data: unknown) => {
    const [output, error] = await root.ExecuteTemplate(name, data);
    if (error) throw error;
    return output;
  };
  root = New(chart.name as string)
    .Funcs(new Map(Object.entries({ ...sprigAndHelmFunctions, include })))
    .Option('missingkey=zero');
  for (const file of files) {
    const [, error] = root
      .New(`${chart.name}/templates/${file}`)
      .Parse(readFileSync(path.join(templatesDirectory, file), 'utf8'));
    if (error) throw new ChartRenderError(`${file}: ${error.message}`);
  }

  const manifests: KubernetesObject[] = [];
  let notes = '';
  for (const file of files) {
    if (file.startsWith('_')) continue;
    const name = `${chart.name}/templates/${file}`;
    const [output, error] = await root.ExecuteTemplate(name, {
      Values: values,
      Release: { Name: release.name, Namespace: release.namespace, Service: 'Helm', IsInstall: true },
      Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion },
      Template: { Name: name, BasePath: `${chart.name}/templates` },
    });
    if (error) throw new ChartRenderError(`${file}: ${error.message}`);
    // Helm prints a missing value as "<no value>" and then blanks it.
    const text = output.replaceAll('<no value>', '');
    if (file === 'NOTES.txt') {
      notes = text;
      continue;
    }
    for (const document of parseAllDocuments(text)) {
      if (document.errors.length > 0)
        throw new ChartRenderError(`${file}: YAML: ${document.errors[0]?.message}\n${text}`);
      const object = document.toJS();
      if (object !== null && object !== undefined) manifests.push(object as KubernetesObject);
    }
  }
  return { manifests, notes, values };
}

/** Go's truth: false, 0, nil, "" and empty collections are false. */
function isEmpty(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0 || value === '') return true;
  if (Array.isArray(value)) return value.length === 0;
  if (typeof value === 'object') return Object.keys(value).length === 0;
  return false;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Helm's values coalescing: maps merge key by key, anything else (lists included) is replaced; null deletes. */
function coalesce(base: unknown, override: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(override)) return structuredClone(override);
  for (const [key, value] of Object.entries(override)) {
    if (value === null) delete base[key];
    else base[key] = key in base ? coalesce(base[key], value) : structuredClone(value);
  }
  return base;
}

/** Sprig's mergeOverwrite: the sources' keys win, maps merge deeply, into (and returning) `target`. */
function mergeOverwrite(target: Record<string, unknown>, ...sources: Record<string, unknown>[]) {
  for (const source of sources)
    for (const [key, value] of Object.entries(source))
      target[key] =
        isPlainObject(target[key]) && isPlainObject(value)
          ? mergeOverwrite(target[key] as Record<string, unknown>, value)
          : structuredClone(value);
  return target;
}

/** Helm's toYaml writes sorted keys (sigs.k8s.io/yaml) and drops the final newline. */
function toYaml(value: unknown): string {
  return stringifyYaml(value ?? null, { sortMapEntries: true, lineWidth: 0 }).replace(/\n$/, '');
}

function indentLines(spaces: number, text: unknown): string {
  const pad = ' '.repeat(spaces);
  return String(text)
    .split('\n')
    .map((line) => pad + line)
    .join('\n');
}

/** Go's %v of a value as Sprig's string functions receive it. */
function goString(value: unknown): string {
  if (value === undefined || value === null) return '';
  return String(value);
}

const sprigAndHelmFunctions: Record<string, (...args: never[]) => unknown> = {
  toYaml,
  nindent: (spaces: number, text: unknown) => `\n${indentLines(spaces, text)}`,
  indent: (spaces: number, text: unknown) => indentLines(spaces, text),
  quote: (...values: unknown[]) =>
    values
      .filter((value) => value !== undefined && value !== null)
      .map((value) => JSON.stringify(goString(value)))
      .join(' '),
  default: (fallback: unknown, value?: unknown) => (isEmpty(value) ? fallback : value),
  required: (message: string, value: unknown) => {
    if (value === undefined || value === null || value === '') throw new ChartRenderError(message);
    return value;
  },
  fail: (message: string) => {
    throw new ChartRenderError(message);
  },
  not: (value: unknown) => isEmpty(value),
  trunc: (length: number, text: unknown) => goString(text).slice(0, length),
  trimSuffix: (suffix: string, text: unknown) => {
    const value = goString(text);
    return value.endsWith(suffix) ? value.slice(0, value.length - suffix.length) : value;
  },
  replace: (from: string, to: string, text: unknown) => goString(text).replaceAll(from, to),
  contains: (part: string, text: unknown) => goString(text).includes(part),
  int: (value: unknown) => Math.trunc(Number(value ?? 0)),
  dict: (...pairs: unknown[]) => {
    const map: Record<string, unknown> = {};
    for (let index = 0; index + 1 < pairs.length; index += 2) map[goString(pairs[index])] = pairs[index + 1];
    return map;
  },
  set: (map: Record<string, unknown>, key: string, value: unknown) => {
    map[key] = value;
    return map;
  },
  deepCopy: (value: unknown) => structuredClone(value ?? {}),
  mustMergeOverwrite: (target: Record<string, unknown>, ...sources: Record<string, unknown>[]) =>
    mergeOverwrite(target, ...sources),
  sha256sum: (text: unknown) => createHash('sha256').update(goString(text)).digest('hex'),
};
