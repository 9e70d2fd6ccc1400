import { z } from 'zod';
import { defaults } from '../../core/defaults.js';
import { engineFlavours } from '../../performance-model/calibration.js';
import { hardwareProfileNames } from '../../performance-model/hardware-profiles.js';
import { modelProfileNames } from '../../performance-model/model-profiles.js';
import { queueOrderingPolicyNames } from '../../performance-model/queue-ordering.js';
import { defineEngineConfigSchema } from '../engine-definition.js';

/**
 * One replica emulated by the performance model (src/performance-model/): it answers with synthetic text
 * at the speed, memory and power the declared hardware and model would have. Whether the model fits the
 * hardware is checked when config is loaded (named profiles) or the engine is created (GGUF files).
 */
export const emulatedConfigSchema = defineEngineConfigSchema('emulated', {
  hardware: z.enum(hardwareProfileNames),
  /** Devices per replica: the tensor-parallel degree. */
  devices: z.number().int().min(1).max(64).default(defaults.emulated.devices),
  /** A model profile name (src/performance-model/model-profiles.ts), or a GGUF file whose shape is read. */
  model: z.union([z.enum(modelProfileNames), z.strictObject({ gguf: z.string().min(1) })]),
  /** Weight precision of a named profile (a GGUF file's own precision is used as stored). */
  weightDtype: z.enum(['bf16', 'fp8', 'int4']).optional(),
  kvDtype: z.enum(['bf16', 'fp8']).optional(),
  /** Which engine's per-step host overhead to model (vllm-v1 on GPUs by default). */
  flavour: z.enum(engineFlavours).optional(),
  /** vLLM's scheduler limits; defaults follow vLLM's per-GPU defaults. */
  maxNumSeqs: z.number().int().min(1).optional(),
  maxNumBatchedTokens: z.number().int().min(1).optional(),
  prefixCaching: z.boolean().default(defaults.emulated.prefixCaching),
  /** Context window; defaults to the model's. */
  contextTokens: z.number().int().min(16).optional(),
  /**
   * Request features this replica serves (core/request-features.ts: `tools`, `response_format`,
   * `logprobs` …); absent: all of them, as vLLM accepts every parameter. Lets a config emulate a mixed
   * fleet where only some replicas serve tools or structured outputs.
   */
  servedFeatures: z.array(z.string().min(1)).optional(),
  /** Which waiting request is admitted next: arrival order, or service tier first. */
  ordering: z.enum(queueOrderingPolicyNames).default(defaults.emulated.ordering),
});

export type EmulatedEngineConfig = z.infer<typeof emulatedConfigSchema>;
