import { z } from 'zod';
import { defaults } from '../core/defaults.js';
import { hardwareProfileNames } from '../performance-model/hardware-profiles.js';

/**
 * The `metering` block every engine entry in config carries: how the replica's energy and cost are
 * measured or modelled, and how its requests' work is weighed. It lives here, beside the engine
 * definitions, because it is part of each engine's config schema; metering reads it (metering imports
 * engines, never the other way round).
 */
export const engineMeteringConfigSchema = z
  .strictObject({
    energy: z
      .strictObject({
        /**
         * `auto`: the engine's own power model when it has one, RAPL for an engine on this host's CPU when
         * readable, else the declared power model. `nvml` and `rapl` are used only when asked for.
         */
        source: z.enum(['auto', 'power-model', 'rapl', 'nvml']).default('auto'),
        /** Declared hardware for the power model (src/performance-model/hardware-profiles.ts). */
        hardware: z.enum(hardwareProfileNames).optional(),
        /** How many of `hardware` the replica uses (GPUs, or CPU cores). */
        count: z.number().int().min(1).optional(),
        idleWatts: z.number().min(0).optional(),
        maxWatts: z.number().min(0).optional(),
        gpuIndices: z.array(z.number().int().min(0)).min(1).default([0]),
        /** Concurrent requests at which the replica is fully utilised, for the power model. */
        saturationRequests: z.number().int().min(1).optional(),
      })
      .prefault({}),
    /** Hourly hardware cost amortised over what the replica served, or a paid API's per-token prices. */
    cost: z
      .union([
        z.strictObject({ hourlyUsd: z.number().min(0) }),
        z.strictObject({
          inputPerMillionUsd: z.number().min(0),
          cachedInputPerMillionUsd: z.number().min(0).optional(),
          outputPerMillionUsd: z.number().min(0),
          /** `/v1/embeddings` input tokens; absent: `inputPerMillionUsd`. */
          embeddingInputPerMillionUsd: z.number().min(0).optional(),
        }),
      ])
      .optional(),
    /** Relative work of one prefill token and one decode token, for splitting energy and cost. */
    work: z
      .strictObject({
        prefillTokenWeight: z.number().min(0).default(defaults.metering.prefillTokenWeight),
        decodeTokenWeight: z.number().min(0).default(defaults.metering.decodeTokenWeight),
      })
      .prefault({}),
  })
  .prefault({});

export type EngineMeteringConfig = z.infer<typeof engineMeteringConfigSchema>;
