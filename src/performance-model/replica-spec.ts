import {
  defaultSchedulerLimits,
  deviceGeneration,
  type EngineFlavour,
  inProcessApiServerHostFactor,
  memoryPlan,
  type PerformanceConstants,
  performanceConstants,
} from './calibration.js';
import type { HardwareProfile } from './hardware-profiles.js';
import type { ModelProfile } from './model-profiles.js';

/** Everything that fixes one replica's speed, memory and power: what the performance model runs on. */
export interface ReplicaSpec {
  hardware: HardwareProfile;
  /** Devices per replica (tensor-parallel degree for GPUs, cores for CPUs). */
  deviceCount: number;
  model: ModelProfile;
  flavour: EngineFlavour;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  prefixCaching: boolean;
  /** KV cache blocks of `kvBlockTokens` tokens that fit beside the weights. */
  kvBlocks: number;
  kvBlockTokens: number;
  /** Effective rates after roofline efficiency and tensor-parallel losses, for the step cost model. */
  effectiveFlopsPerMs: number;
  effectiveBytesPerMs: number;
  /** KV cache reads by the attention kernels, which stream far less efficiently than weight GEMMs. */
  effectiveKvBytesPerMs: number;
  stepOverheadMs: number;
  /** Device time every step pays whatever its size: tensor-parallel all-reduce latency. */
  stepDeviceFixedMs: number;
  perSequenceOverheadMs: number;
  /** Multi-step scheduling: new requests join only every this many steps (1: every step). */
  scheduleEverySteps: number;
  /** Prompts chunked into decode steps; false: whole prompts in prefill-only steps while decodes wait. */
  chunkedPrefill: boolean;
  idleWatts: number;
  maxWatts: number;
  /** Power model (calibration.ts `powerCurve`): activity of a memory-bound step at batch 0, and the batch at half way to 1. */
  powerFloor: number;
  powerHalfBatch: number;
  hourlyUsd: number;
}

export interface ReplicaSpecOptions {
  hardware: HardwareProfile;
  deviceCount?: number;
  model: ModelProfile;
  flavour?: EngineFlavour;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  prefixCaching?: boolean;
  /** Overrides the memory plan, e.g. to model a small KV cache. */
  kvBlocks?: number;
  /** The HTTP server shares the engine's process (calibration.ts `inProcessApiServerHostFactor`). */
  apiServerInProcess?: boolean;
  /** vLLM's `--gpu-memory-utilization` where a deployment sets it (calibration.ts `memoryPlan` otherwise). */
  gpuMemoryUtilization?: number;
}

export class ReplicaSpecError extends Error {}

/**
 * Resolves a replica's derived figures, or explains why the model does not fit the hardware. `constants`
 * defaults to calibration.ts; the validation script passes candidates while it fits them.
 */
export function resolveReplicaSpec(
  options: ReplicaSpecOptions,
  constants: PerformanceConstants = performanceConstants,
): ReplicaSpec {
  const { tensorParallel, engineOverheads } = constants;
  const deviceCount = options.deviceCount ?? 1;
  const { hardware, model } = options;
  const flavour = options.flavour ?? (hardware.kind === 'cpu' ? 'llama-cpp' : 'vllm-v1');
  const limits = defaultSchedulerLimits(hardware);
  const maxNumSeqs = options.maxNumSeqs ?? limits.maxNumSeqs;
  const maxNumBatchedTokens = Math.max(options.maxNumBatchedTokens ?? limits.maxNumBatchedTokens, maxNumSeqs);
  const kvBlockTokens = memoryPlan.kvBlockTokens;

  const usableBytes =
    hardware.memoryBytes * deviceCount * (options.gpuMemoryUtilization ?? memoryPlan.gpuMemoryUtilization) -
    model.weightBytes -
    (hardware.kind === 'gpu' ? memoryPlan.activationReserveBytes * deviceCount : 0);
  const kvBlocks = options.kvBlocks ?? Math.floor(usableBytes / (model.kvBytesPerToken * kvBlockTokens));
  if (kvBlocks < 1)
    throw new ReplicaSpecError(
      `${model.name} (${(model.weightBytes / 1e9).toFixed(1)} GB of weights) does not fit ${deviceCount}× ${hardware.name} ` +
        `(${((hardware.memoryBytes * deviceCount) / 1e9).toFixed(0)} GB); use more devices per replica`,
    );
  // Tensor parallelism pays all-reduces; a single device does not.
  const tensorParallelDegree = hardware.kind === 'gpu' ? deviceCount : 1;
  const parallelEfficiency = tensorParallelDegree > 1 ? tensorParallel.efficiency : 1;
  const allReduceMs =
    tensorParallelDegree > 1
      ? 2 * model.layers * tensorParallel.allReduceLatencyMs * Math.log2(tensorParallelDegree)
      : 0;
  const overhead = engineOverheads[flavour];
  const rooflineEfficiency = constants.rooflineEfficiency[deviceGeneration(hardware)];
  const hostTimeScale =
    rooflineEfficiency.hostTimeScale * (options.apiServerInProcess ? inProcessApiServerHostFactor : 1);
  // FP8 weights run FP8 GEMMs (W8A8) where the device has FP8 tensor cores; elsewhere they are upcast.
  const peakFlops =
    model.weightDtype === 'fp8' && hardware.peakFp8FlopsPerSecond !== undefined
      ? hardware.peakFp8FlopsPerSecond
      : hardware.peakFlopsPerSecond;
  return {
    hardware,
    deviceCount,
    model,
    flavour,
    maxNumSeqs,
    maxNumBatchedTokens,
    prefixCaching: options.prefixCaching ?? true,
    kvBlocks,
    kvBlockTokens,
    effectiveFlopsPerMs:
      (peakFlops * deviceCount * rooflineEfficiency.prefillMfu * parallelEfficiency) / 1000,
    effectiveBytesPerMs:
      (hardware.memoryBandwidthBytesPerSecond *
        deviceCount *
        rooflineEfficiency.decodeMbu *
        parallelEfficiency) /
      1000,
    effectiveKvBytesPerMs:
      (hardware.memoryBandwidthBytesPerSecond *
        deviceCount *
        rooflineEfficiency.kvReadMbu *
        parallelEfficiency) /
      1000,
    stepOverheadMs: overhead.stepMs * hostTimeScale,
    stepDeviceFixedMs: allReduceMs,
    perSequenceOverheadMs: overhead.perSequenceMs * hostTimeScale,
    scheduleEverySteps: overhead.scheduleEverySteps,
    chunkedPrefill: overhead.chunkedPrefill,
    powerFloor: constants.powerCurve.floor,
    powerHalfBatch: constants.powerCurve.halfBatch,
    idleWatts: hardware.idleWatts * deviceCount,
    maxWatts: hardware.maxWatts * deviceCount,
    hourlyUsd: hardware.hourlyUsd * deviceCount,
  };
}
