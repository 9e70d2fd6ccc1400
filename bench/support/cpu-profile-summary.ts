// Summarises a V8 .cpuprofile (from `node --cpu-prof`): where the busy time went, by function (self and
// inclusive) and by source file, optionally narrowed to one folder such as src/metering/. Run as:
//   npx tsx bench/support/cpu-profile-summary.ts <file.cpuprofile> [--top 15] [--focus src/metering/]

import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface TimeEntry {
  name: string;
  ms: number;
  /** Share of the busy (non-idle) time, 0..1. */
  share: number;
}

export interface CpuProfileSummary {
  sampledMs: number;
  idleMs: number;
  busyMs: number;
  garbageCollectionMs: number;
  topSelf: TimeEntry[];
  topInclusiveFiles: TimeEntry[];
  /** Only when a focus folder is given. */
  focus: { folder: string; inclusiveMs: number; share: number; functions: TimeEntry[] } | null;
}

/** `file:///repo/src/a.ts` → `src/a.ts`; native and internal frames keep a readable label. */
function fileLabel(url: string, rootDir: string): string {
  if (!url) return '(native)';
  let file = url;
  if (url.startsWith('file://')) {
    try {
      file = fileURLToPath(url);
    } catch {}
  }
  const relative = path.relative(rootDir, file);
  return relative.startsWith('..') || path.isAbsolute(relative) ? file : relative;
}

function functionLabel(node: ProfileNode, rootDir: string): string {
  const frame = node.callFrame;
  const name = frame.functionName || '(anonymous)';
  if (!frame.url) return name;
  const file = fileLabel(frame.url, rootDir);
  // Positions in TypeScript run through tsx are those of the transformed code, not the source: omit them.
  if (/\.[cm]?ts$/.test(file)) return `${name} ${file}`;
  // V8 line numbers are 0-based.
  return `${name} ${file}:${frame.lineNumber + 1}`;
}

export function summarizeCpuProfile(
  profile: CpuProfile,
  options: { rootDir: string; top?: number; focus?: string },
): CpuProfileSummary {
  const top = options.top ?? 15;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const labels = new Map(profile.nodes.map((node) => [node.id, functionLabel(node, options.rootDir)]));
  const files = new Map(
    profile.nodes.map((node) => [node.id, fileLabel(node.callFrame.url, options.rootDir)]),
  );

  const self = new Map<string, number>();
  const inclusiveFiles = new Map<string, number>();
  const focusFunctions = new Map<string, number>();
  let sampledMs = 0;
  let idleMs = 0;
  let garbageCollectionMs = 0;
  let focusMs = 0;
  const add = (map: Map<string, number>, key: string, ms: number) => map.set(key, (map.get(key) ?? 0) + ms);

  for (let index = 0; index < profile.samples.length; index++) {
    // A sample's delta is the time until it was taken; attributing it to the sample is V8's convention.
    const ms = (profile.timeDeltas[index] ?? 0) / 1000;
    const leafId = profile.samples[index] as number;
    const leaf = nodes.get(leafId);
    if (!leaf) continue;
    sampledMs += ms;
    const leafName = leaf.callFrame.functionName;
    // `(program)` is native work V8 cannot attribute (libuv, the HTTP parser): busy, not idle.
    if (leafName === '(idle)') {
      idleMs += ms;
      continue;
    }
    if (leafName === '(garbage collector)') garbageCollectionMs += ms;
    add(self, labels.get(leafId) as string, ms);
    // Inclusive time counts each function or file once per sample, however often it recurses.
    const seenFiles = new Set<string>();
    const seenFocus = new Set<string>();
    for (let id: number | undefined = leafId; id !== undefined; id = parents.get(id)) {
      const file = files.get(id) as string;
      seenFiles.add(file);
      if (options.focus && file.startsWith(options.focus)) seenFocus.add(labels.get(id) as string);
    }
    for (const file of seenFiles) add(inclusiveFiles, file, ms);
    for (const name of seenFocus) add(focusFunctions, name, ms);
    if (seenFocus.size > 0) focusMs += ms;
  }

  const busyMs = sampledMs - idleMs;
  const ranked = (map: Map<string, number>, count: number): TimeEntry[] =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([name, ms]) => ({ name, ms, share: busyMs > 0 ? ms / busyMs : 0 }));
  return {
    sampledMs,
    idleMs,
    busyMs,
    garbageCollectionMs,
    topSelf: ranked(self, top),
    topInclusiveFiles: ranked(new Map([...inclusiveFiles].filter(([file]) => file.startsWith('src/'))), top),
    focus: options.focus
      ? {
          folder: options.focus,
          inclusiveMs: focusMs,
          share: busyMs > 0 ? focusMs / busyMs : 0,
          functions: ranked(focusFunctions, top),
        }
      : null,
  };
}

export function formatCpuProfileSummary(summary: CpuProfileSummary): string {
  const entry = (item: TimeEntry) =>
    `  ${item.ms.toFixed(0).padStart(7)} ms ${(item.share * 100).toFixed(1).padStart(5)}%  ${item.name}`;
  const lines = [
    `sampled ${summary.sampledMs.toFixed(0)} ms: busy ${summary.busyMs.toFixed(0)} ms, idle ${summary.idleMs.toFixed(0)} ms, ` +
      `GC ${summary.garbageCollectionMs.toFixed(0)} ms (shares below are of busy time)`,
    'top functions by self time:',
    ...summary.topSelf.map(entry),
    'src/ files by inclusive time:',
    ...summary.topInclusiveFiles.map(entry),
  ];
  if (summary.focus) {
    lines.push(
      `${summary.focus.folder}: ${summary.focus.inclusiveMs.toFixed(0)} ms inclusive, ` +
        `${(summary.focus.share * 100).toFixed(1)}% of busy time; by function (inclusive):`,
      ...summary.focus.functions.map(entry),
    );
  }
  return lines.join('\n');
}

export function readCpuProfile(file: string): CpuProfile {
  return JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
}

function isMainModule(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMainModule()) {
  const { values, positionals } = parseArgs({
    options: {
      top: { type: 'string', default: '15' },
      focus: { type: 'string' },
      root: { type: 'string', default: process.cwd() },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length === 0) {
    console.error(
      'Usage: npx tsx bench/support/cpu-profile-summary.ts <file.cpuprofile>... [--top 15] [--focus src/metering/] [--root <repo>]',
    );
    process.exit(2);
  }
  for (const file of positionals) {
    console.log(`${file}:`);
    const summary = summarizeCpuProfile(readCpuProfile(file), {
      rootDir: values.root,
      top: Number(values.top),
      ...(values.focus ? { focus: values.focus } : {}),
    });
    console.log(formatCpuProfileSummary(summary));
  }
}
