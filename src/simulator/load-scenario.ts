import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { type Scenario, scenarioSchema } from './scenario-schema.js';
import { isPostgresLedgerUrl } from './workload/ledger-replay.js';

export class ScenarioError extends Error {}

/** Parses and validates a scenario; problems are reported with their paths. Relative paths in it resolve against its folder. */
export function parseScenario(document: unknown, source: string, baseDir = process.cwd()): Scenario {
  const parsed = scenarioSchema.safeParse(document);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `  - ${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
    throw new ScenarioError(`invalid scenario (${source}):\n${problems.join('\n')}`);
  }
  const scenario = parsed.data;
  const arrivals = scenario.workload.arrivals;
  // A ledger may be a PostgreSQL URL rather than a file.
  if (arrivals.process === 'trace' || (arrivals.process === 'ledger' && !isPostgresLedgerUrl(arrivals.path)))
    arrivals.path = path.resolve(baseDir, arrivals.path);
  if (
    (arrivals.process === 'poisson' || arrivals.process === 'gamma' || arrivals.process === 'closed-loop') &&
    scenario.workload.requests === undefined &&
    scenario.workload.durationSeconds === undefined
  )
    throw new ScenarioError(`invalid scenario (${source}):\n  - workload: give requests or durationSeconds`);
  return scenario;
}

export function loadScenario(filePath: string): Scenario {
  let text: string;
  try {
    text = readFileSync(filePath, 'utf8');
  } catch (error) {
    throw new ScenarioError(`cannot read scenario ${filePath}: ${(error as Error).message}`);
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new ScenarioError(`${filePath}: not valid YAML: ${(error as Error).message}`);
  }
  return parseScenario(document, filePath, path.dirname(path.resolve(filePath)));
}
