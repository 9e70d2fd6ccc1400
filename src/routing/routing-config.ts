import { z } from 'zod';
import { defaults } from '../core/defaults.js';
import { serviceBands } from '../core/service-tiers.js';
import {
  builtInProfileNames,
  prefixIndexSettingsSchema,
  routingProfileProblems,
  routingProfileSchema,
} from './routing-profile.js';

/**
 * The `routing` section of Gravity's config and of a simulation scenario (docs/routing.md), with its
 * defaults taken from src/core/defaults.ts; cross-references to engines (`replicas`, `aliases`) are checked
 * where Gravity's config is loaded (src/config/load-config.ts), since a scenario has no engines.
 */

const residencyPolicySchema = z.strictObject({
  /** Allowed replica regions (label `region`); absent: any region. */
  regions: z.array(z.string().min(1)).optional(),
  /** Allowed replica providers (label `provider`); absent: any provider. */
  providers: z.array(z.string().min(1)).optional(),
});

const replicaSchema = z.strictObject({
  region: z.string().min(1).optional(),
  provider: z.string().min(1).optional(),
  hardware: z.string().min(1).optional(),
  costPerMillionTokensUsd: z.number().min(0).optional(),
  energyJoulesPerToken: z.number().min(0).optional(),
  /**
   * Scrape the replica's Prometheus metrics (vLLM, SGLang, or another Gravity) for queue and KV figures.
   * `url` is the full metrics URL, e.g. `http://10.0.0.5:8000/metrics`.
   */
  metrics: z
    .strictObject({
      url: z.url({ protocol: /^https?$/ }),
      intervalMs: z.number().int().min(50).default(1000),
      /** Figures older than this are stale: routing falls back to Gravity's own counts. */
      staleAfterMs: z.number().int().min(50).default(5000),
    })
    .optional(),
});

export const routingConfigSchema = z
  .strictObject({
    /** The profile every tier uses unless `tierProfiles` says otherwise. */
    policy: z.string().min(1).default(defaults.routing.policy),
    /** A profile per tier, e.g. `{ priority: latency, batch: cost-energy }`. */
    tierProfiles: z.partialRecord(z.enum(serviceBands), z.string().min(1)).default({}),
    /** Profiles beside the built-in ones. */
    profiles: z.record(z.string().min(1), routingProfileSchema).default({}),
    /** Labels and signal sources per replica (engine id). */
    replicas: z.record(z.string().min(1), replicaSchema).default({}),
    /** Data-residency policy per tenant (`anonymous` for requests without a key). */
    residency: z.record(z.string().min(1), residencyPolicySchema).default({}),
    /** Model aliases: a name clients may send → the model id that serves it. */
    aliases: z.record(z.string().min(1), z.string().min(1)).default({}),
    prefixIndex: prefixIndexSettingsSchema,
    health: z
      .strictObject({
        /** Consecutive failures that eject a replica (passive outlier detection). */
        consecutiveFailures: z.number().int().min(1).default(3),
        /** First ejection; doubles on each re-ejection, up to `maxEjectionMs`. */
        ejectionMs: z.number().int().min(1).default(5000),
        maxEjectionMs: z.number().int().min(1).default(60_000),
        /** Active checks for engines that can be probed (upstreams: GET /models); 0 turns them off. */
        intervalMs: z.number().int().min(0).default(5000),
        timeoutMs: z.number().int().min(1).default(2000),
      })
      .prefault({}),
    retries: z
      .strictObject({
        /** Attempts per request, the first included; retries go to the next best replica. */
        maxAttempts: z.number().int().min(1).default(3),
        /** Retry budget: retries may add at most this share of requests (over 10 s)… */
        budgetRatio: z.number().min(0).default(0.2),
        /** …but at least this many retries per second are always allowed. */
        minRetriesPerSecond: z.number().min(0).default(5),
      })
      .prefault({}),
  })
  .superRefine((routing, context) => {
    for (const problem of routingProfileProblems(routing.profiles, ['profiles']))
      context.addIssue({ code: 'custom', ...problem });
    const known = new Set([...builtInProfileNames, ...Object.keys(routing.profiles)]);
    const names: Array<[string, Array<string | number>]> = [
      [routing.policy, ['policy']],
      ...Object.entries(routing.tierProfiles).map(([tier, name]): [string, Array<string | number>] => [
        name as string,
        ['tierProfiles', tier],
      ]),
    ];
    for (const [name, path] of names)
      if (!known.has(name))
        context.addIssue({
          code: 'custom',
          path,
          message: `unknown routing profile '${name}' (known: ${[...known].join(', ')})`,
        });
  });
export type RoutingConfig = z.output<typeof routingConfigSchema>;
export type ReplicaConfig = z.output<typeof replicaSchema>;
