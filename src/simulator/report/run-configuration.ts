import type { SimulationResult } from '../simulation-result.js';

/**
 * What distinguishes one run from another in a report: the sweep point's keys, read from what the run
 * actually simulated (the fleet) where the fleet records it, so a run that took a value from the scenario
 * rather than the sweep still shows it. `scenario` comes first so reports over several scenarios group.
 */
export const configurationKeys = [
  'scenario',
  'ratePerSecond',
  'concurrency',
  'replicas',
  'hardware',
  'devices',
  'routing',
  'ordering',
  'scheduler',
] as const;
export type ConfigurationKey = (typeof configurationKeys)[number];
export type RunConfiguration = Record<ConfigurationKey, string | number | undefined>;

/** Keys that set the offered load: runs differing only in these lie on one latency curve. */
export const loadKeys: readonly ConfigurationKey[] = ['ratePerSecond', 'concurrency'];

export const configurationHeaders: Record<ConfigurationKey, string> = {
  scenario: 'scenario',
  ratePerSecond: 'rate req/s',
  concurrency: 'users',
  replicas: 'replicas',
  hardware: 'hardware',
  devices: 'devices',
  routing: 'routing',
  ordering: 'ordering',
  scheduler: 'scheduler',
};

export function runConfiguration(result: SimulationResult): RunConfiguration {
  return {
    scenario: result.scenario,
    ratePerSecond: result.point.ratePerSecond,
    concurrency: result.point.concurrency,
    replicas: result.fleet.replicas,
    hardware: result.fleet.hardware,
    devices: result.fleet.devicesPerReplica,
    routing: result.fleet.routing,
    ordering: result.fleet.ordering,
    scheduler: result.fleet.scheduler,
  };
}

/** The configuration keys whose values differ between runs, in `configurationKeys` order. */
export function varyingKeys(results: readonly SimulationResult[]): ConfigurationKey[] {
  const configurations = results.map(runConfiguration);
  return configurationKeys.filter(
    (key) => new Set(configurations.map((configuration) => configuration[key])).size > 1,
  );
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** A short label for the given keys of a run, e.g. `rate 4/s · h100-sxm · 2 devices`. */
export function configurationLabel(
  configuration: RunConfiguration,
  keys: readonly ConfigurationKey[],
): string {
  return keys
    .map((key) => {
      const value = configuration[key];
      if (value === undefined) return `${key} –`;
      switch (key) {
        case 'ratePerSecond':
          return `rate ${value}/s`;
        case 'concurrency':
          return `${value} users`;
        case 'replicas':
          return plural(Number(value), 'replica');
        case 'devices':
          return plural(Number(value), 'device');
        default:
          return String(value);
      }
    })
    .join(' · ');
}

/** Labels that tell runs apart; `run N` when nothing varies but there are several runs. */
export function runLabels(results: readonly SimulationResult[]): string[] {
  const keys = varyingKeys(results);
  return results.map((result, index) => {
    if (keys.length > 0) return configurationLabel(runConfiguration(result), keys);
    return results.length === 1 ? result.scenario : `run ${index + 1}`;
  });
}

/** The configuration every run shares, for a heading: `model llama-3.1-8b; h100-sxm; 2 replicas; …`. */
export function sharedConfigurationLine(results: readonly SimulationResult[]): string {
  const first = results[0];
  if (!first) return '';
  const varying = new Set(varyingKeys(results));
  const parts: string[] = [];
  if (!varying.has('scenario')) parts.push(`scenario ${first.scenario} (seed ${first.seed})`);
  const models = new Set(results.map((result) => result.fleet.model));
  parts.push(`model ${[...models].join(', ')}`);
  if (!varying.has('hardware')) parts.push(first.fleet.hardware);
  if (!varying.has('replicas')) parts.push(plural(first.fleet.replicas, 'replica'));
  if (!varying.has('devices')) parts.push(`${plural(first.fleet.devicesPerReplica, 'device')} per replica`);
  if (!varying.has('routing')) parts.push(`${first.fleet.routing} routing`);
  if (!varying.has('ordering')) parts.push(`${first.fleet.ordering} ordering`);
  if (!varying.has('ratePerSecond') && first.point.ratePerSecond !== undefined)
    parts.push(`rate ${first.point.ratePerSecond} req/s`);
  if (!varying.has('concurrency') && first.point.concurrency !== undefined)
    parts.push(`${first.point.concurrency} users`);
  return parts.join('; ');
}
