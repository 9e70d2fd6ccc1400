import { medianOf } from '../../core/quantile.js';
import { parseScenario } from '../load-scenario.js';
import { runScenario } from '../run-scenario.js';
import type { SimulationResult } from '../simulation-result.js';
import { type PublishedPoint, publishedPoints } from './published-points.js';

export interface ValidationRow {
  point: PublishedPoint;
  simulated: number;
  /** (simulated − published) / published. */
  error: number;
}

/** Runs every published point's scenario once (points sharing a scenario share the run). */
export function validateModel(points: readonly PublishedPoint[] = publishedPoints): ValidationRow[] {
  const runs = new Map<string, SimulationResult>();
  return points.map((point) => {
    const key = JSON.stringify(point.scenario);
    let result = runs.get(key);
    if (!result) {
      // The published figures measured engines directly: no gateway queue in front of them.
      result = runScenario(parseScenario({ scheduling: { mode: 'off' }, ...point.scenario }, point.id));
      runs.set(key, result);
    }
    const simulated = point.read(result);
    return { point, simulated, error: (simulated - point.published) / point.published };
  });
}

export function medianAbsoluteError(rows: readonly ValidationRow[]): number {
  return medianOf(rows.map((row) => Math.abs(row.error))) ?? Number.NaN;
}
