/**
 * Every tunable constant of the performance model, in one place, with where it came from.
 *
 * Constants marked "fitted" are set by `npm run validate:model` (src/simulator/validation/) on calibration
 * points only (src/simulator/validation/points/calibration.json, split declared in points/README.md), by a
 * deterministic coordinate search minimising the median absolute log error (plus a quarter of the mean as a
 * tie-break). `npm run validate:model -- --sources` lists, for each fitted constant, the calibration runs
 * it was fitted on; the rule is given beside each constant here. No validation point ever sets a constant.
 * docs/simulator-validation.md reports the resulting in-sample, held-out and leave-one-source-out errors.
 */
import { prefixBlockTokens } from '../core/prompt-size.js';

/**
 * Device generations: compute efficiency and the speed of the host that drives the device differ by
 * generation (kernels, and the CPUs such servers ship with), so they are fitted per generation.
 */
export type DeviceGeneration = 'ampere' | 'hopper' | 'ada' | 'cpu';

export function deviceGeneration(hardware: { name: string; kind: 'gpu' | 'cpu' }): DeviceGeneration {
  if (hardware.kind === 'cpu') return 'cpu';
  if (hardware.name.startsWith('a100')) return 'ampere';
  if (hardware.name.startsWith('l4')) return 'ada';
  return 'hopper';
}

export interface RooflineEfficiency {
  prefillMfu: number;
  decodeMbu: number;
  /** KV reads by paged-attention kernels stream less efficiently than weight GEMMs. */
  kvReadMbu: number;
  /** Multiplies the engine's host overheads: hopper servers are the reference (1). */
  hostTimeScale: number;
}

/**
 * How much of the roofline an engine achieves, per device generation. `prefillMfu`, `kvReadMbu` and
 * `hostTimeScale` of hopper and ampere are fitted on the simulable calibration runs on H100 and A100 (Lambda
 * vLLM 0.5.4 tables and JSON runs, SGLang's vLLM 0.6.0 runs, ML.ENERGY V2 throughput and V3 throughput and
 * power). `decodeMbu` (weights streamed per decode step) is not fitted: 0.725, the middle of commonly quoted
 * ranges (60–85%; Databricks measured about 60% end to end at batch 1 on 2×H100), because fitted it traded
 * off against host time and moved out of sample the wrong way (docs/simulator-validation.md, steps table).
 * The fit leaves ampere's host time at its bound (4× hopper's) and hopper's prefill at 22% MFU: the points
 * cannot separate host time from kernel efficiency well (docs/simulator-validation.md). Ada (L40S, L4) has
 * no simulable published point: the middles of the quoted ranges (prefill 40–60% MFU), as assumptions. CPU
 * cores: the same assumptions, with KV reads at 0.56 (bench/engine), not fitted.
 */
export const rooflineEfficiency: Record<DeviceGeneration, RooflineEfficiency> = {
  hopper: { prefillMfu: 0.2185, decodeMbu: 0.725, kvReadMbu: 0.3837, hostTimeScale: 1 },
  ampere: { prefillMfu: 0.3438, decodeMbu: 0.725, kvReadMbu: 0.6838, hostTimeScale: 4 },
  ada: { prefillMfu: 0.5, decodeMbu: 0.725, kvReadMbu: 0.725, hostTimeScale: 1 },
  cpu: { prefillMfu: 0.5, decodeMbu: 0.725, kvReadMbu: 0.56, hostTimeScale: 1 },
};

/**
 * Host-side time per engine step that the GPU does not overlap: scheduling, input preparation, sampling
 * and detokenisation bookkeeping. It is what separates engine generations at the same GPU work (vLLM
 * blog 2024-09-05: in vLLM 0.5 the GPU was busy only 38% of the time on Llama-3-8B / H100).
 *
 * `stepMs` is paid once per step, `perSequenceMs` per sequence in the batch. Fitted per flavour on the
 * calibration runs of that flavour: vLLM 0.5 on Lambda's vLLM 0.5.4 runs and ML.ENERGY V2 throughput
 * (V2 ran the HTTP server in the engine process: `inProcessApiServerHostFactor` below); V1 on ML.ENERGY V3
 * (vLLM 0.11.1); 0.6 multi-step on SGLang's vLLM 0.6.0 Poisson runs. llama.cpp is not fitted
 * (bench/engine).
 */
export const engineOverheads = {
  'vllm-v1': { stepMs: 0.053, perSequenceMs: 0.0007609, scheduleEverySteps: 1, chunkedPrefill: true },
  /**
   * vLLM 0.5 without chunked prefill (its default below 32k context): a step either prefills waiting
   * prompts whole or decodes, and decodes wait while prompts are prefilled.
   */
  'vllm-0.5': { stepMs: 4.04, perSequenceMs: 0.04, scheduleEverySteps: 1, chunkedPrefill: false },
  /**
   * vLLM 0.6 with `--num-scheduler-steps 10`: host work amortised over ten decode steps, and waiting
   * requests join only between ten-step runs.
   */
  'vllm-0.6-multistep': {
    stepMs: 0.06875,
    perSequenceMs: 0.0222,
    scheduleEverySteps: 10,
    // 0.6.0's multi-step scheduler did not support chunked prefill: decodes pause while prompts prefill.
    chunkedPrefill: false,
  },
  /** llama.cpp on CPU: one native call per step plus per-sequence sampling in JavaScript (bench/engine). */
  'llama-cpp': { stepMs: 0.1, perSequenceMs: 0.05, scheduleEverySteps: 1, chunkedPrefill: true },
} as const;
/**
 * Host time when the HTTP API server runs in the engine's own process (vLLM before 0.5.4, or 0.5.4+ with
 * `--disable-frontend-multiprocessing`), relative to the engine's host time alone. vLLM's profile of 0.5.3
 * on Llama-3-8B / H100 (vLLM blog, 2024-09-05): API server 33% of the time, scheduling and input
 * preparation 29%, GPU 38%; the API server's share is taken to scale with the batch as the scheduler's
 * does, so an in-process server multiplies the host time by 1 + 33/29. A published ratio, not fitted.
 */
export const inProcessApiServerHostFactor = 1 + 33 / 29;
export type EngineFlavour = keyof typeof engineOverheads;
export const engineFlavours = Object.keys(engineOverheads) as [EngineFlavour, ...EngineFlavour[]];

export interface EngineOverhead {
  stepMs: number;
  perSequenceMs: number;
  scheduleEverySteps: number;
  /** Prompts chunked into decode steps (Sarathi-style); false: prefill-only steps, decodes paused. */
  chunkedPrefill: boolean;
}

/**
 * Tensor parallelism splits weights, KV and FLOPs across GPUs but adds two all-reduces per layer per
 * step. Their bandwidth cost is a 10–20% efficiency loss (estimate, middle taken); their latency is a
 * fixed cost per all-reduce that grows with the ring's log₂(degree) and does not shrink with more GPUs,
 * which is why decode steps of a 70B model stop getting faster beyond TP 4. The latency is fitted on every
 * calibration run with TP > 1 (Lambda TP 2–8, SGLang 70B TP 4, ML.ENERGY 70B TP 4); the bandwidth loss is
 * an estimate, not fitted. The fit puts the latency at under 1 µs per all-reduce, below NCCL's published
 * small-message latency (several µs): the calibration runs are host-bound at TP > 1 and do not pin it.
 */
export const tensorParallel = {
  efficiency: 0.85,
  allReduceLatencyMs: 0.0008406,
};

/**
 * Power: idle + (max − idle) × activity while the device computes; host overhead time counts as idle. A
 * compute-bound (prefill) step has activity 1; a memory-bound step's activity is
 * floor + (1 − floor) × b / (b + halfBatch) for the b tokens it batches, and all-reduce waits run at the
 * floor. So power rises with batch, as ML.ENERGY V3 measures it, and J per token at batch 1 stays
 * power × step time (never above TDP). Fitted on ML.ENERGY V3's average GPU power in the calibration set
 * (8B 1×H100 and 70B 4×H100); V2's power is excluded (measured over the whole run, points/README.md).
 */
export const powerCurve = { floor: 0.2812, halfBatch: 16 };

/**
 * The constants that fix a replica's speed, as one value: what `resolveReplicaSpec` reads, and what the
 * validation script (src/simulator/validation/validate-points.ts) refits on calibration points by passing
 * candidates in place of these.
 */
export interface PerformanceConstants {
  rooflineEfficiency: Record<DeviceGeneration, RooflineEfficiency>;
  engineOverheads: Record<EngineFlavour, EngineOverhead>;
  tensorParallel: { efficiency: number; allReduceLatencyMs: number };
  powerCurve: { floor: number; halfBatch: number };
}

/** The constants above, as the performance model uses them unless told otherwise. */
export const performanceConstants: PerformanceConstants = {
  rooflineEfficiency,
  engineOverheads,
  tensorParallel,
  powerCurve,
};

/**
 * Engine memory plan, as vLLM does it: a fraction of device memory is the engine's (vLLM default
 * `gpu_memory_utilization` 0.9), minus weights and an activation reserve, is KV cache.
 */
export const memoryPlan = {
  gpuMemoryUtilization: 0.9,
  /** Peak activations for an 8k-token batch on an 8B model are a few GB; estimate per GPU. */
  activationReserveBytes: 2e9,
  kvBlockTokens: prefixBlockTokens,
};

/**
 * vLLM's scheduler defaults (vllm `config/scheduler.py`): 8192 batched tokens
 * and 1024 sequences on large GPUs (≥ 70 GiB, not A100), 2048 / 256 elsewhere.
 */
export function defaultSchedulerLimits(hardware: { memoryBytes: number; name: string }) {
  const large = hardware.memoryBytes >= 70 * 2 ** 30 && !hardware.name.startsWith('a100');
  return large
    ? { maxNumBatchedTokens: 8192, maxNumSeqs: 1024 }
    : { maxNumBatchedTokens: 2048, maxNumSeqs: 256 };
}

/**
 * Power = idle + (max − idle) × activity while the device computes (`powerCurve`). Host-side overhead
 * time counts as idle: the GPU waits for the host. One label for every figure this formula produces, whether
 * the simulator or the emulated engine ran the steps: the ledger, `/metrics` and simulation reports agree.
 */
export const performanceModelEnergySource = 'estimated:performance-model' as const;
