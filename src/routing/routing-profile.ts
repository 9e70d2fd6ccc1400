import { z } from 'zod';
import { filterPlugins, pickerPlugins, scorerPlugins } from './plugin-registry.js';
import { PrefixIndex } from './prefix-index.js';
import { ReplicaStatistics } from './replica-statistics.js';
import { RoutingPipeline } from './routing-pipeline.js';
import type {
  ReplicaFilter,
  ReplicaPicker,
  ReplicaScorer,
  ResidencyPolicy,
  RoutingState,
} from './routing-plugin.js';
import type { RoutingPolicy } from './routing-policy.js';

/**
 * A routing profile: which filters run, which scorers weigh in and how much, and which picker chooses.
 * Weights live here, never in the scorers. Profiles are named (`routing.profiles.<name>` in config or a
 * scenario) and chosen per tier; the built-in ones below are always available.
 */
const pluginReference = z.union([
  z.string().min(1),
  z.strictObject({ type: z.string().min(1), params: z.record(z.string(), z.unknown()).default({}) }),
]);

export const routingProfileSchema = z.strictObject({
  /** Default: residency, healthy, serves-features, context-fits. */
  filters: z.array(pluginReference).optional(),
  scorers: z
    .array(
      z.strictObject({
        type: z.string().min(1),
        weight: z.number().min(0).default(1),
        params: z.record(z.string(), z.unknown()).default({}),
      }),
    )
    .default([]),
  picker: pluginReference.default('max-score'),
});
export type RoutingProfileConfig = z.input<typeof routingProfileSchema>;
type RoutingProfile = z.output<typeof routingProfileSchema>;

export const defaultFilters = ['residency', 'healthy', 'serves-features', 'context-fits'];

/**
 * The built-in profiles. `round-robin`, `random` and `least-loaded` are the baselines every comparison
 * needs; `prefix-only` follows prefix affinity alone (llm-d found it piles hot prefixes onto one
 * replica); `prefix-load` weighs affinity against load with a bounded-load rule; `prefix-hash` sends a
 * prefix to its consistent-hashing home, the same from every gateway replica without shared state, with
 * load as the tie-breaker and for prompts shorter than one block; `latency` and
 * `cost-energy` are the suggested profiles for the priority and batch tiers.
 */
export const builtInProfiles: Record<string, RoutingProfileConfig> = {
  'round-robin': { picker: 'round-robin' },
  random: { picker: 'random' },
  'least-loaded': { scorers: [{ type: 'queue-depth', weight: 1 }] },
  'prefix-only': {
    scorers: [{ type: 'prefix-affinity', weight: 1, params: { loadBound: null } }],
  },
  'prefix-load': {
    scorers: [
      { type: 'prefix-affinity', weight: 2 },
      { type: 'queue-depth', weight: 1 },
    ],
  },
  // Weight 1.5 against queue-depth's 1: the home (1) loses to the next replica in hash order (1/2) only
  // when their loads differ by more than three quarters of the candidates' range, before the bound spills
  // it anyway. Measured best of 1, 1.25, 1.5, 2, 3 (bench:prefix-sharing); 3 never lets load override.
  'prefix-hash': {
    scorers: [
      { type: 'prefix-hash', weight: 1.5 },
      { type: 'queue-depth', weight: 1 },
    ],
  },
  latency: {
    scorers: [
      { type: 'queue-depth', weight: 2 },
      { type: 'latency', weight: 1 },
      { type: 'prefix-affinity', weight: 1 },
    ],
  },
  'cost-energy': {
    scorers: [
      { type: 'cost', weight: 2 },
      { type: 'energy', weight: 1 },
      { type: 'queue-depth', weight: 1 },
    ],
  },
};
export const builtInProfileNames = Object.keys(builtInProfiles) as [string, ...string[]];

export interface PrefixIndexSettings {
  capacityBlocks: number;
  ttlSeconds: number;
}
export const prefixIndexSettingsSchema = z
  .strictObject({
    /** Blocks the index remembers before dropping the oldest. */
    capacityBlocks: z.number().int().min(1).default(200_000),
    /** A block not routed again within this long no longer counts as cached. */
    ttlSeconds: z.number().positive().default(600),
  })
  .prefault({});

export interface RoutingPolicyContext {
  /** Uniform in [0, 1): seeded in the simulator, Math.random live. */
  random: () => number;
  /** Profiles beside the built-in ones (config or scenario). */
  profiles?: Readonly<Record<string, RoutingProfileConfig>> | undefined;
  /** Residency policies by tenant. */
  residency?: Readonly<Record<string, ResidencyPolicy>> | undefined;
  prefixIndex?: PrefixIndexSettings | undefined;
  /** Share learnt state between policies (one per tier): pass the first policy's state. */
  state?: RoutingState | undefined;
}

/** A fresh router state: an empty prefix index and no latency samples. */
export function createRoutingState(context: RoutingPolicyContext): RoutingState {
  const index = context.prefixIndex ?? { capacityBlocks: 200_000, ttlSeconds: 600 };
  return {
    random: context.random,
    prefixIndex: new PrefixIndex({ capacityBlocks: index.capacityBlocks, ttlMs: index.ttlSeconds * 1000 }),
    statistics: new ReplicaStatistics(),
    residency: new Map(Object.entries(context.residency ?? {})),
  };
}

/** A configuration problem: where (path segments) and what. */
export interface RoutingConfigProblem {
  path: Array<string | number>;
  message: string;
}

/**
 * Problems with profiles, each with its path below `at` (e.g. ['routing', 'profiles']): unknown plugin
 * types (`routing.profiles.fast.scorers.0: unknown scorer 'prefix-affinty'`) and bad params.
 */
export function routingProfileProblems(
  profiles: Readonly<Record<string, RoutingProfileConfig>>,
  at: Array<string | number>,
): RoutingConfigProblem[] {
  const problems: RoutingConfigProblem[] = [];
  for (const [name, raw] of Object.entries(profiles)) {
    const parsed = routingProfileSchema.safeParse(raw);
    if (!parsed.success) {
      for (const issue of parsed.error.issues)
        problems.push({ path: [...at, name, ...issue.path.map(String)], message: issue.message });
      continue;
    }
    const profile = parsed.data;
    const check = (
      kind: string,
      registry: ReadonlyMap<string, { params: z.ZodType<unknown, unknown> }>,
      reference: { type: string; params: Record<string, unknown> },
      path: Array<string | number>,
    ) => {
      const definition = registry.get(reference.type);
      if (!definition) {
        problems.push({
          path,
          message: `unknown ${kind} '${reference.type}' (known: ${[...registry.keys()].join(', ')})`,
        });
        return;
      }
      const params = definition.params.safeParse(reference.params);
      if (!params.success)
        for (const issue of params.error.issues)
          problems.push({ path: [...path, 'params', ...issue.path.map(String)], message: issue.message });
    };
    (profile.filters ?? defaultFilters).forEach((filter, index) => {
      check('filter', filterPlugins, normalise(filter), [...at, name, 'filters', index]);
    });
    profile.scorers.forEach((scorer, index) => {
      check('scorer', scorerPlugins, scorer, [...at, name, 'scorers', index]);
    });
    check('picker', pickerPlugins, normalise(profile.picker), [...at, name, 'picker']);
  }
  return problems;
}

function normalise(reference: string | { type: string; params: Record<string, unknown> }) {
  return typeof reference === 'string' ? { type: reference, params: {} } : reference;
}

/**
 * The policy named `name`: a built-in profile or one of `context.profiles`. Throws on an unknown name or
 * plugin (config and scenarios are validated first with routingProfileProblems, so this means a bug).
 */
export function createRoutingPolicy(name: string, context: RoutingPolicyContext): RoutingPolicy {
  const raw = context.profiles?.[name] ?? builtInProfiles[name];
  if (!raw) {
    const known = [...builtInProfileNames, ...Object.keys(context.profiles ?? {})];
    throw new Error(`unknown routing policy '${name}' (known: ${known.join(', ')})`);
  }
  const problems = routingProfileProblems({ [name]: raw }, ['routing', 'profiles']);
  if (problems.length > 0)
    throw new Error(problems.map((problem) => `${problem.path.join('.')}: ${problem.message}`).join('; '));
  const profile: RoutingProfile = routingProfileSchema.parse(raw);
  const state = context.state ?? createRoutingState(context);
  const filters: ReplicaFilter[] = (profile.filters ?? defaultFilters).map((reference) => {
    const { type, params } = normalise(reference);
    const definition = filterPlugins.get(type)!;
    return definition.create(definition.params.parse(params) as never, state);
  });
  const scorers: Array<{ scorer: ReplicaScorer; weight: number }> = profile.scorers.map((reference) => {
    const definition = scorerPlugins.get(reference.type)!;
    return {
      scorer: definition.create(definition.params.parse(reference.params) as never, state),
      weight: reference.weight,
    };
  });
  const pickerReference = normalise(profile.picker);
  const pickerDefinition = pickerPlugins.get(pickerReference.type)!;
  const picker: ReplicaPicker = pickerDefinition.create(
    pickerDefinition.params.parse(pickerReference.params) as never,
    state,
  );
  return new RoutingPipeline({ name, filters, scorers, picker, state });
}
