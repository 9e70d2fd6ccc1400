// Summarises the V8 .cpuprofile files a benchmark's `--cpu-prof-dir` collects (`node --cpu-prof`): where
// the busy time went, by function (self time) and by src/ file (inclusive), optionally narrowed to one
// folder such as src/metering/.

import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoRoot } from './ab-rounds.js';

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

/** `file:///repo/src/a.ts` → `src/a.ts`; native and internal frames keep a readable label. */
function fileLabel(url: string): string {
  if (!url) return '(native)';
  let file = url;
  if (url.startsWith('file://')) {
    try {
      file = fileURLToPath(url);
    } catch {}
  }
  const relative = path.relative(repoRoot, file);
  return relative.startsWith('..') || path.isAbsolute(relative) ? file : relative;
}

function functionLabel(node: ProfileNode): string {
  const frame = node.callFrame;
  const name = frame.functionName || '(anonymous)';
  if (!frame.url) return name;
  const file = fileLabel(frame.url);
  // Positions in TypeScript run through tsx are those of the transformed code, not the source: omit them.
  if (/\.[cm]?ts$/.test(file)) return `${name} ${file}`;
  // V8 line numbers are 0-based.
  return `${name} ${file}:${frame.lineNumber + 1}`;
}

/**
 * Where a profile's busy time went: top functions by self time, src/ files by inclusive time and, with
 * `focus`, that folder's functions by inclusive time. Null when the thread ran no code from src/.
 */
function summarizeCpuProfile(profile: CpuProfile, options: { top?: number; focus?: string }): string | null {
  const top = options.top ?? 15;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const labels = new Map(profile.nodes.map((node) => [node.id, functionLabel(node)]));
  const files = new Map(profile.nodes.map((node) => [node.id, fileLabel(node.callFrame.url)]));

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
  const share = (ms: number) => `${((busyMs > 0 ? ms / busyMs : 0) * 100).toFixed(1)}%`;
  const ranked = (map: Map<string, number>) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => `  ${ms.toFixed(0).padStart(7)} ms ${share(ms).padStart(6)}  ${name}`);
  const srcFiles = new Map([...inclusiveFiles].filter(([file]) => file.startsWith('src/')));
  if (srcFiles.size === 0) return null;
  const lines = [
    `sampled ${sampledMs.toFixed(0)} ms: busy ${busyMs.toFixed(0)} ms, idle ${idleMs.toFixed(0)} ms, ` +
      `GC ${garbageCollectionMs.toFixed(0)} ms (shares below are of busy time)`,
    'top functions by self time:',
    ...ranked(self),
    'src/ files by inclusive time:',
    ...ranked(srcFiles),
  ];
  if (options.focus)
    lines.push(
      `${options.focus}: ${focusMs.toFixed(0)} ms inclusive, ${share(focusMs)} of busy time; by function (inclusive):`,
      ...ranked(focusFunctions),
    );
  return lines.join('\n');
}

/**
 * Prints a summary of each profile in `dir` that `select` accepts (by file name) and that ran code from src/
 * (a profile per thread: the module loader's runs none of Gravity's code), under `title` and its path.
 */
export async function printCpuProfiles(
  dir: string,
  options: { title: string; select?: (file: string) => boolean; top?: number; focus?: string },
): Promise<void> {
  const files = await readdir(dir).catch(() => [] as string[]);
  for (const file of files.filter(
    (name) => name.endsWith('.cpuprofile') && (options.select?.(name) ?? true),
  )) {
    const profile = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as CpuProfile;
    const summary = summarizeCpuProfile(profile, options);
    if (summary !== null) console.log(`\n${options.title}: ${path.join(dir, file)}\n${summary}`);
  }
}
