import { prefixBlockTokens } from '../core/prompt-size.js';
/**
 * Every tunable constant of the performance model, in one place, with where it came from. Nothing here
 * is fitted to a point that docs/simulator-validation.md then reports as validation: the validation
 * document lists which published points set which constant.
 */

/**
 * How much of the roofline an engine achieves. Prefill MFU and weight-read MBU are the middles of
 * commonly quoted ranges (decode 60–85% MBU, prefill 40–60% MFU), used as assumptions, not measurements:
 * no source we can cite states them (Databricks, "LLM Inference Performance Engineering: Best Practices",
 * measures 60% MBU on 2×H100 at batch 1). KV reads by paged-attention kernels stream far less efficiently
 * than weight GEMMs; `kvReadMbu` is calibrated on ML.ENERGY v3's Llama-3.1-8B / H100 throughput at
 * max_num_seqs 256 (docs/simulator-validation.md).
 */
export const rooflineEfficiency = {
  prefillMfu: 0.5,
  decodeMbu: 0.725,
  kvReadMbu: 0.56,
};

/**
 * Host-side time per engine step that the GPU does not overlap: scheduling, input preparation, sampling
 * and detokenisation bookkeeping. It is what separates engine generations at the same GPU work (vLLM
 * blog 2024-09-05: in vLLM 0.5 the GPU was busy only 38% of the time on Llama-3-8B / H100).
 *
 * `stepMs` is paid once per step, `perSequenceMs` per sequence in the batch. vLLM 0.5: `stepMs` from
 * Lambda's 10-prompt median ITL on 1×H100, `perSequenceMs` from the blog's 38% GPU share at 256
 * sequences (derivations in docs/simulator-validation.md). V1 (vLLM ≥ 0.8, async scheduling): an
 * assumption that little host time is left exposed.
 */
export const engineOverheads = {
  'vllm-v1': { stepMs: 0.5, perSequenceMs: 0.004, scheduleEverySteps: 1 },
  'vllm-0.5': { stepMs: 2.45, perSequenceMs: 0.08, scheduleEverySteps: 1 },
  /**
   * vLLM 0.6 with `--num-scheduler-steps 10`: host work amortised over ten decode steps (so V1-like
   * per-step overhead), but waiting requests join only between ten-step runs.
   */
  'vllm-0.6-multistep': { stepMs: 0.5, perSequenceMs: 0.004, scheduleEverySteps: 10 },
  /** llama.cpp on CPU: one native call per step plus per-sequence sampling in JavaScript (bench/engine). */
  'llama-cpp': { stepMs: 0.1, perSequenceMs: 0.05, scheduleEverySteps: 1 },
} as const;
export type EngineFlavour = keyof typeof engineOverheads;
export const engineFlavours = Object.keys(engineOverheads) as [EngineFlavour, ...EngineFlavour[]];

export interface EngineOverhead {
  stepMs: number;
  perSequenceMs: number;
  scheduleEverySteps: number;
}

/**
 * Tensor parallelism splits weights, KV and FLOPs across GPUs but adds two all-reduces per layer per
 * step. Their bandwidth cost is a 10–20% efficiency loss (estimate, middle taken); their latency is a
 * fixed cost per all-reduce that grows with the ring's log₂(degree) and does not shrink with more GPUs,
 * which is why decode steps of a 70B model stop getting faster beyond TP 4. The latency is calibrated on
 * one point (Lambda's Llama-3.1-70B FP8 TP 4 median ITL; docs/simulator-validation.md).
 */
export const tensorParallel = {
  efficiency: 0.85,
  allReduceLatencyMs: 0.031,
};

/**
 * The constants that fix a replica's speed, as one value: what `resolveReplicaSpec` reads, and what the
 * validation script (src/simulator/validation/validate-points.ts) refits on calibration points by passing
 * candidates in place of these.
 */
export interface PerformanceConstants {
  rooflineEfficiency: { prefillMfu: number; decodeMbu: number; kvReadMbu: number };
  engineOverheads: Record<EngineFlavour, EngineOverhead>;
  tensorParallel: { efficiency: number; allReduceLatencyMs: number };
}

/** The constants above, as the performance model uses them unless told otherwise. */
export const performanceConstants: PerformanceConstants = {
  rooflineEfficiency,
  engineOverheads,
  tensorParallel,
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
 * Power = idle + (max − idle) × the fraction of the step the device computes. Host-side overhead time
 * counts as idle: the GPU waits for the host. One label for every figure this formula produces, whether
 * the simulator or the emulated engine ran the steps: the ledger, `/metrics` and simulation reports agree.
 */
export const performanceModelEnergySource = 'estimated:performance-model' as const;
