import { z } from 'zod';
import { defaults } from '../core/defaults.js';
import { serviceBands } from '../core/service-tiers.js';
import { engineFlavours } from '../performance-model/calibration.js';
import { hardwareProfileNames } from '../performance-model/hardware-profiles.js';
import { queueOrderingPolicyNames } from '../performance-model/queue-ordering.js';
import { routingConfigSchema } from '../routing/routing-config.js';
import { builtInProfileNames } from '../routing/routing-profile.js';
import { schedulingSettingsShape } from '../scheduling/scheduling-config.js';

/**
 * A simulation scenario as written in YAML (scenarios/*.yaml): the fleet, the policies, the workload,
 * the SLOs per tier, and optionally a sweep. Strict, like Gravity's config: a typo is an error with its
 * path, never a silent default.
 */

/** A token-count distribution. Draws are rounded and clamped to [min, max]. */
export const lengthDistributionSchema = z.union([
  z.strictObject({ fixed: z.number().int().min(1) }),
  z.strictObject({ uniform: z.tuple([z.number().int().min(1), z.number().int().min(1)]) }),
  z.strictObject({
    lognormal: z.strictObject({ mean: z.number().positive(), cv: z.number().min(0) }),
    min: z.number().int().min(1).default(1),
    max: z.number().int().min(1).default(1_000_000),
  }),
  z.strictObject({
    exponential: z.strictObject({ mean: z.number().positive() }),
    min: z.number().int().min(1).default(1),
    max: z.number().int().min(1).default(1_000_000),
  }),
]);
export type LengthDistribution = z.infer<typeof lengthDistributionSchema>;

/** Seconds, drawn per use: think times between turns. */
const secondsDistributionSchema = z.union([
  z.number().min(0),
  z.strictObject({ exponential: z.strictObject({ mean: z.number().min(0) }) }),
]);
export type SecondsDistribution = z.infer<typeof secondsDistributionSchema>;

const requestClassSchema = z.strictObject({
  name: z.string().min(1),
  /** Share of arrivals of this class. */
  weight: z.number().positive().default(1),
  tenant: z.string().min(1).default('default'),
  tier: z.enum(serviceBands).default('default'),
  /** Prompt tokens (for sessions: the new user message of each turn). */
  input: lengthDistributionSchema,
  output: lengthDistributionSchema,
  /** Requests of this class start with one of `groups` system prompts of `tokens` tokens each. */
  sharedPrefix: z
    .strictObject({ groups: z.number().int().min(1), tokens: z.number().int().min(1) })
    .optional(),
  /** Multi-turn sessions: each arrival opens a session; later turns carry the whole conversation. */
  session: z
    .strictObject({ turns: lengthDistributionSchema, thinkSeconds: secondsDistributionSchema.default(0) })
    .optional(),
  /**
   * Request features beyond plain text (core/request-features.ts: `tools`, `response_format`,
   * `logprobs`, `image_url` …) and the share of this class's requests that use each, drawn independently
   * per request: `{ tools: 0.6, response_format: 0.2 }`. Routing's `serves-features` filter sends such a
   * request only to replicas whose group serves the feature.
   */
  features: z.record(z.string().min(1), z.number().min(0).max(1)).optional(),
});
export type RequestClass = z.infer<typeof requestClassSchema>;

const arrivalsSchema = z.discriminatedUnion('process', [
  z.strictObject({ process: z.literal('poisson'), ratePerSecond: z.number().positive() }),
  /** Bursty open loop: gamma inter-arrival times; cv > 1 is burstier than Poisson (cv = 1). */
  z.strictObject({
    process: z.literal('gamma'),
    ratePerSecond: z.number().positive(),
    cv: z.number().positive(),
  }),
  z.strictObject({
    process: z.literal('closed-loop'),
    concurrency: z.number().int().min(1),
    thinkSeconds: secondsDistributionSchema.default(0),
  }),
  /** Replays a JSONL trace: one request per line (see docs/simulator.md for the fields). */
  z.strictObject({
    process: z.literal('trace'),
    path: z.string().min(1),
    /** Multiplies inter-arrival times: 0.5 replays twice as fast. */
    timeScale: z.number().positive().default(1),
    /** Tokens per entry of a line's `hash_ids` (Mooncake traces use 512). */
    hashBlockTokens: z.number().int().min(1).default(512),
  }),
  /**
   * Replays Gravity's own ledger, a SQLite file or a PostgreSQL URL (`postgres://…`), read through its
   * store: every completed request at its recorded arrival time.
   */
  z.strictObject({
    process: z.literal('ledger'),
    path: z.string().min(1),
    timeScale: z.number().positive().default(1),
  }),
]);
export type ArrivalsConfig = z.infer<typeof arrivalsSchema>;

const sloSchema = z.strictObject({
  ttftMs: z.number().positive(),
  tpotMs: z.number().positive(),
  /** With `scheduling`: how long a request may wait in the gateway's queue before it is refused. */
  maxQueueWaitMs: z.number().positive().optional(),
});

export const fleetSchema = z.strictObject({
  hardware: z.enum(hardwareProfileNames),
  /** Devices per replica (tensor-parallel degree). */
  devices: z.number().int().min(1).default(1),
  replicas: z.number().int().min(1).default(1),
  model: z.string().min(1),
  weightDtype: z.enum(['bf16', 'fp8', 'int4']).default('bf16'),
  kvDtype: z.enum(['bf16', 'fp8']).default('bf16'),
  flavour: z.enum(engineFlavours).default('vllm-v1'),
  maxNumSeqs: z.number().int().min(1).optional(),
  maxNumBatchedTokens: z.number().int().min(1).optional(),
  prefixCaching: z.boolean().default(true),
  /**
   * Request features every replica serves (core/request-features.ts); absent: all of them. `groups`
   * says it per group instead.
   */
  servedFeatures: z.array(z.string().min(1)).optional(),
  /**
   * The replicas split into groups of the same hardware that serve different request features (a mixed
   * fleet: some replicas serve tools, others plain text only). The fleet's replicas are then the groups'
   * sum: `replicas` and the sweep and plan dimensions that vary it do not apply.
   */
  groups: z
    .array(
      z.strictObject({
        /** The replicas' `group` label (default `group-<n>`), which routing explanations and labels use. */
        name: z.string().min(1).optional(),
        replicas: z.number().int().min(1),
        /** Request features this group's replicas serve (names or `<family>.*`, e.g. `tools.*`); absent: all. */
        servedFeatures: z.array(z.string().min(1)).optional(),
      }),
    )
    .min(1)
    .optional(),
});
export type FleetConfig = z.infer<typeof fleetSchema>;

/** Tier targets default to Gravity's own (`tiers:` in its config), so a scenario simulates what serve runs. */
const defaultSlo = (tier: keyof typeof defaults.tiers) => ({
  ttftMs: defaults.tiers[tier].ttftMs,
  tpotMs: defaults.tiers[tier].tpotMs,
});

export const scenarioSchema = z
  .strictObject({
    name: z.string().min(1),
    description: z.string().optional(),
    seed: z.number().int().default(1),
    fleet: fleetSchema,
    policies: z
      .strictObject({
        /** Which waiting request an engine admits next: arrival order, or tier order (vLLM's `priority`). */
        ordering: z.enum(queueOrderingPolicyNames).default('fcfs'),
      })
      .prefault({}),
    /**
     * The gateway's SLO scheduler in front of each replica (src/scheduling/), exactly as `gravity serve`
     * runs it: the same settings and defaults as Gravity's `scheduling:` config, on by default as there.
     */
    scheduling: z
      .strictObject({
        /** `slo`: tier bands, VTC and shedding as configured below; `fcfs`: one first-come queue (the baseline); `off`: none. */
        mode: z.enum(['off', 'fcfs', 'slo']).default('slo'),
        /** As in Gravity's config (`slotsPerReplica` defaults to each replica's maxNumSeqs). */
        ...schedulingSettingsShape,
      })
      .prefault({}),
    /**
     * Routing exactly as Gravity's config writes it (docs/routing.md): `policy` (a built-in profile or one
     * of `profiles`), `tierProfiles`, `profiles`, labels per replica under `replicas` (ids `<hardware>-<n>`,
     * e.g. `h100-sxm-0`), `residency` per tenant, `prefixIndex`, `health` and `retries`. `sweep.routing`
     * and `plan.routing` vary `policy`.
     */
    routing: routingConfigSchema.prefault({}),
    /**
     * Gateway replicas (`gravity serve` processes) behind a load balancer, all routing to the same
     * replicas. Each learns its own prefix index and latency figures, as separate processes do, unless
     * `routingState: shared` (one view for all: what a shared store could at best give). Queues in front
     * of each replica stay one per replica. Default: one gateway.
     */
    gateways: z
      .strictObject({
        count: z.number().int().min(1).default(1),
        /** How the load balancer spreads requests (each turn of a session included). */
        balancer: z.enum(['round-robin', 'random']).default('round-robin'),
        routingState: z.enum(['per-gateway', 'shared']).default('per-gateway'),
      })
      .prefault({}),
    workload: z.strictObject({
      arrivals: arrivalsSchema,
      /** Stop creating requests after this many (sessions count each turn). */
      requests: z.number().int().min(1).optional(),
      /** …or after this many simulated seconds of arrivals. */
      durationSeconds: z.number().positive().optional(),
      /** Ignored for trace and ledger replay, whose lines say what each request is. */
      mix: z
        .array(requestClassSchema)
        .min(1)
        .default([
          {
            name: 'chat',
            weight: 1,
            tenant: 'default',
            tier: 'default',
            // ShareGPT averages ~202 input / ~179 output tokens (vLLM blog, "vLLM v0.6.0: 2.7x Throughput
            // Improvement and 5x Latency Reduction", 2024-09-05).
            input: { lognormal: { mean: 202, cv: 1 }, min: 4, max: 4096 },
            output: { lognormal: { mean: 179, cv: 1 }, min: 1, max: 2048 },
          },
        ]),
    }),
    /** DistServe goodput: a request counts when it meets both its tier's TTFT and TPOT targets. */
    slo: z
      .strictObject({
        priority: sloSchema.default(defaultSlo('priority')),
        default: sloSchema.default(defaultSlo('default')),
        flex: sloSchema.default(defaultSlo('flex')),
        batch: sloSchema.default(defaultSlo('batch')),
        /** Share of a tier's requests that must meet the SLO for the tier to pass (`gravity plan`). */
        attainment: z.number().min(0).max(1).default(0.9),
      })
      .prefault({}),
    /** Runs the scenario once per combination of these values. */
    sweep: z
      .strictObject({
        ratePerSecond: z.array(z.number().positive()).min(1).optional(),
        concurrency: z.array(z.number().int().min(1)).min(1).optional(),
        replicas: z.array(z.number().int().min(1)).min(1).optional(),
        hardware: z.array(z.enum(hardwareProfileNames)).min(1).optional(),
        devices: z.array(z.number().int().min(1)).min(1).optional(),
        routing: z.array(z.string().min(1)).min(1).optional(),
        ordering: z.array(z.enum(queueOrderingPolicyNames)).min(1).optional(),
        /** The gateway scheduler: off, one FCFS queue, or the SLO scheduler (tier bands, VTC, shedding). */
        scheduler: z
          .array(z.enum(['off', 'fcfs', 'slo']))
          .min(1)
          .optional(),
      })
      .optional(),
    /** The capacity question for `gravity plan`: candidates to search. */
    plan: z
      .strictObject({
        hardware: z.array(z.enum(hardwareProfileNames)).min(1),
        devices: z.array(z.number().int().min(1)).min(1).default([1]),
        maxReplicas: z.number().int().min(1).default(64),
        routing: z.array(z.string().min(1)).min(1).default(['least-loaded']),
        ordering: z.array(z.enum(queueOrderingPolicyNames)).min(1).default(['fcfs']),
      })
      .optional(),
  })
  .superRefine((scenario, context) => {
    // Every routing name must exist: `sweep.routing.1: unknown routing policy …` (the routing section
    // checks its own profiles, `policy` and `tierProfiles`).
    const known = new Set([...builtInProfileNames, ...Object.keys(scenario.routing.profiles)]);
    const names: Array<[string, Array<string | number>]> = [
      ...(scenario.sweep?.routing ?? []).map((name, index): [string, Array<string | number>] => [
        name,
        ['sweep', 'routing', index],
      ]),
      ...(scenario.plan?.routing ?? []).map((name, index): [string, Array<string | number>] => [
        name,
        ['plan', 'routing', index],
      ]),
    ];
    for (const [name, path] of names)
      if (!known.has(name))
        context.addIssue({
          code: 'custom',
          path,
          message: `unknown routing policy '${name}' (known: ${[...known].join(', ')})`,
        });
    // Groups fix the fleet's size and what each replica serves: nothing may vary the replica count.
    if (scenario.fleet.groups) {
      if (scenario.fleet.servedFeatures)
        context.addIssue({
          code: 'custom',
          path: ['fleet', 'servedFeatures'],
          message: 'set servedFeatures per group when the fleet has groups',
        });
      if (scenario.sweep?.replicas)
        context.addIssue({
          code: 'custom',
          path: ['sweep', 'replicas'],
          message: 'a fleet with groups has the groups’ replicas; sweeping replicas does not apply',
        });
      if (scenario.plan)
        context.addIssue({
          code: 'custom',
          path: ['plan'],
          message: 'gravity plan varies the replica count, which a fleet with groups fixes',
        });
    }
  });
export type Scenario = z.infer<typeof scenarioSchema>;
export type SloTargets = Scenario['slo'];
