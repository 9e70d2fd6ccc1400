import type { Scenario } from './scenario-schema.js';
import type { SweepPoint } from './simulation-result.js';

/** Every combination of the scenario's sweep values, in a stable order ([{}] without a sweep). */
export function expandSweep(scenario: Scenario): SweepPoint[] {
  let points: SweepPoint[] = [{}];
  const sweep = scenario.sweep ?? {};
  for (const [key, values] of Object.entries(sweep) as Array<[keyof SweepPoint, unknown[] | undefined]>) {
    if (!values) continue;
    points = points.flatMap((point) => values.map((value) => ({ ...point, [key]: value })));
  }
  return points;
}
