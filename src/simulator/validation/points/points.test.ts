import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { PublishedMeasurement, PublishedTrace } from './published-measurement.js';
import { fnv1a32, type PointSet, splitOf } from './split.js';

const here = (relative: string) => fileURLToPath(new URL(relative, import.meta.url));
const load = (set: PointSet) =>
  (JSON.parse(readFileSync(here(`./${set}.json`), 'utf8')) as { points: PublishedMeasurement[] }).points;

const calibration = load('calibration');
const validation = load('validation');
const all = [...calibration, ...validation];

describe('published measurements: the validation protocol', () => {
  it('holds at least 60 points from at least 5 independent sources', () => {
    expect(all.length).toBeGreaterThanOrEqual(60);
    expect(new Set(all.map((point) => point.source.name)).size).toBeGreaterThanOrEqual(5);
  });

  it('gives every point a unique kebab-case id and never lists one in both files', () => {
    const ids = all.map((point) => point.id);
    expect(new Set(ids).size).toBe(ids.length);
    const calibrationIds = new Set(calibration.map((point) => point.id));
    expect(validation.filter((point) => calibrationIds.has(point.id)).map((point) => point.id)).toEqual([]);
    for (const point of all) {
      expect(point.id, point.id).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
      expect(point.run, point.id).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
      expect(point.id.startsWith(`${point.run}-`), point.id).toBe(true);
    }
  });

  it('gives every point its source URL, locator, setup and metric definition', () => {
    for (const point of all) {
      expect(point.source.url, point.id).toMatch(/^https:\/\//);
      expect(point.source.locator.length, point.id).toBeGreaterThan(10);
      expect(point.metric.name.length, point.id).toBeGreaterThan(0);
      expect(point.metric.definition.length, point.id).toBeGreaterThan(10);
      expect(Number.isFinite(point.value) && point.value > 0, point.id).toBe(true);
      const { setup } = point;
      for (const field of ['engine', 'engineVersion', 'hardware', 'model', 'precision'] as const)
        expect(setup[field].length, `${point.id} setup.${field}`).toBeGreaterThan(0);
      expect(Number.isInteger(setup.gpus) && setup.gpus >= 1, point.id).toBe(true);
      expect(Number.isInteger(setup.tensorParallel) && setup.tensorParallel >= 1, point.id).toBe(true);
      for (const field of ['workload', 'load', 'batching'] as const)
        expect(typeof setup[field], `${point.id} setup.${field}`).toBe('object');
    }
  });

  it('keeps every point of one run in one source and one file', () => {
    const runs = new Map<string, { source: string; sets: Set<PointSet> }>();
    for (const [set, points] of [
      ['calibration', calibration],
      ['validation', validation],
    ] as const) {
      for (const point of points) {
        const run = runs.get(point.run) ?? { source: point.source.name, sets: new Set<PointSet>() };
        expect(point.source.name, point.id).toBe(run.source);
        run.sets.add(set);
        runs.set(point.run, run);
      }
    }
    for (const [runId, run] of runs) expect(run.sets.size, runId).toBe(1);
  });

  it('places every point in the file the declared split rule names', () => {
    for (const point of calibration) expect(splitOf(point.run), point.id).toBe('calibration');
    for (const point of validation) expect(splitOf(point.run), point.id).toBe('validation');
  });

  it('calibrates on a third to a half of the points', () => {
    const share = calibration.length / all.length;
    expect(share).toBeGreaterThanOrEqual(1 / 3);
    expect(share).toBeLessThanOrEqual(1 / 2);
  });

  it('states the split rule in the README as split.ts implements it', () => {
    const readme = readFileSync(here('./README.md'), 'utf8');
    expect(readme).toContain('FNV-1a');
    expect(readme).toContain('% 5 < 2');
    // The published FNV-1a test vectors pin the hash itself, so the README's rule can be recomputed anywhere.
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
  });

  it('has every referenced trace, with one input and one output length per request', () => {
    const traced = all.filter((point) => point.setup.workload.trace !== undefined);
    expect(traced.length).toBeGreaterThan(0);
    for (const point of traced) {
      const path = here(`../${point.setup.workload.trace}`);
      expect(existsSync(path), point.id).toBe(true);
      expect(statSync(path).size, point.id).toBeLessThan(50_000);
      const trace = JSON.parse(readFileSync(path, 'utf8')) as PublishedTrace;
      expect(trace.inputLens.length, point.id).toBe(point.setup.workload.prompts);
      expect(trace.outputLens.length, point.id).toBe(trace.inputLens.length);
      for (const length of [...trace.inputLens, ...trace.outputLens])
        expect(Number.isInteger(length) && length >= 0, point.id).toBe(true);
      // The totals the source prints next to the lengths: a transcription check.
      const sum = (lengths: number[]) => lengths.reduce((total, length) => total + length, 0);
      expect(sum(trace.inputLens), point.id).toBe(point.setup.workload.inputTokens);
      expect(sum(trace.outputLens), point.id).toBe(point.setup.workload.outputTokens);
    }
  });
});
