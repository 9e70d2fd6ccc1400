/**
 * The hardware a replica runs on, as the performance model and the power model see it. One catalogue for
 * the whole project: metering's power model, the emulated engine and the simulator read the same rows.
 *
 * Figures are per device. Memory, bandwidth, dense BF16 (no sparsity) and TDP are NVIDIA datasheet
 * figures, quoted in each row's `source`. Idle power and hourly prices are estimates and say so there: idle
 * from observed H100 figures (60–90 W) scaled by TDP, prices from 2025–26 specialised-cloud list prices
 * on GPU-price aggregator pages (H100 $2–4 per GPU-hour).
 */
export interface HardwareProfile {
  /** Kebab-case name used in config and on the command line. */
  name: string;
  kind: 'gpu' | 'cpu';
  /** Dense BF16 FLOP/s (tensor cores, no sparsity) for GPUs; FP32 SIMD FLOP/s for a CPU core. */
  peakFlopsPerSecond: number;
  /** Dense FP8 tensor-core FLOP/s where the device has FP8 (Hopper, Ada); FP8 models compute at this rate. */
  peakFp8FlopsPerSecond?: number;
  memoryBandwidthBytesPerSecond: number;
  memoryBytes: number;
  idleWatts: number;
  maxWatts: number;
  /** Rental price per device-hour, for amortised cost. */
  hourlyUsd: number;
  source: string;
}

const GB = 1e9;
/** Memory as the driver reports it (nvidia-smi's total, in MiB): what vLLM's memory plan takes a share of. */
const MiB = 2 ** 20;
const TB = 1e12;
const TFLOPS = 1e12;

export const hardwareProfiles = {
  'h100-sxm': {
    name: 'h100-sxm',
    kind: 'gpu',
    peakFlopsPerSecond: 989 * TFLOPS,
    peakFp8FlopsPerSecond: 1979 * TFLOPS,
    memoryBandwidthBytesPerSecond: 3.35 * TB,
    memoryBytes: 81559 * MiB,
    idleWatts: 75,
    maxWatts: 700,
    hourlyUsd: 2.5,
    source:
      'NVIDIA H100 SXM datasheet (80 GB HBM3; nvidia-smi reports 81,559 MiB, 3.35 TB/s, 989 TFLOP/s BF16 / 1,979 FP8 dense, 700 W); idle 60–90 W observed; $2.50/h estimate',
  },
  h200: {
    name: 'h200',
    kind: 'gpu',
    peakFlopsPerSecond: 989 * TFLOPS,
    peakFp8FlopsPerSecond: 1979 * TFLOPS,
    memoryBandwidthBytesPerSecond: 4.8 * TB,
    memoryBytes: 143771 * MiB,
    idleWatts: 75,
    maxWatts: 700,
    hourlyUsd: 3.5,
    source:
      'NVIDIA H200 datasheet (141 GB HBM3e; nvidia-smi reports 143,771 MiB, 4.8 TB/s, 989 TFLOP/s BF16 dense, 700 W); idle assumed as H100; $3.50/h estimate',
  },
  'a100-80gb': {
    name: 'a100-80gb',
    kind: 'gpu',
    peakFlopsPerSecond: 312 * TFLOPS,
    memoryBandwidthBytesPerSecond: 2.039 * TB,
    memoryBytes: 81920 * MiB,
    idleWatts: 50,
    maxWatts: 400,
    hourlyUsd: 1.5,
    source:
      'NVIDIA A100 SXM 80 GB datasheet (nvidia-smi reports 81,920 MiB; 2.039 TB/s, 312 TFLOP/s BF16 dense, 400 W); idle estimated; $1.50/h estimate',
  },
  l40s: {
    name: 'l40s',
    kind: 'gpu',
    peakFlopsPerSecond: 362 * TFLOPS,
    peakFp8FlopsPerSecond: 733 * TFLOPS,
    memoryBandwidthBytesPerSecond: 0.864 * TB,
    memoryBytes: 46068 * MiB,
    idleWatts: 35,
    maxWatts: 350,
    hourlyUsd: 1.0,
    source:
      'NVIDIA L40S datasheet (48 GB GDDR6; nvidia-smi reports 46,068 MiB, 864 GB/s, 362 TFLOP/s BF16 / 733 FP8 dense, 350 W); idle estimated; $1.00/h estimate',
  },
  l4: {
    name: 'l4',
    kind: 'gpu',
    peakFlopsPerSecond: 121 * TFLOPS,
    peakFp8FlopsPerSecond: 242.5 * TFLOPS,
    memoryBandwidthBytesPerSecond: 0.3 * TB,
    memoryBytes: 23034 * MiB,
    idleWatts: 16,
    maxWatts: 72,
    hourlyUsd: 0.5,
    source:
      'NVIDIA L4 datasheet (24 GB GDDR6; nvidia-smi reports 23,034 MiB, 300 GB/s, 121 TFLOP/s BF16 / 242.5 FP8 dense, 72 W); idle estimated; $0.50/h estimate',
  },
  /**
   * One core of a server CPU, for the in-process llama.cpp engine: AVX2 with two FMA units at ~2.5 GHz
   * is 80 GFLOP/s FP32 per core; ~10 GB/s of a socket's DRAM bandwidth per core; 200–300 W parts
   * spread over 24–32 cores give ~10 W per busy core. All estimates; `count` scales them to the cores used.
   */
  'cpu-core': {
    name: 'cpu-core',
    kind: 'cpu',
    peakFlopsPerSecond: 80e9,
    memoryBandwidthBytesPerSecond: 10 * GB,
    memoryBytes: 4 * GB,
    idleWatts: 2,
    maxWatts: 12,
    hourlyUsd: 0.02,
    source: 'estimate: AVX2 2×FMA at 2.5 GHz, ~10 GB/s and ~10 W per busy server-CPU core, 2 W idle share',
  },
} as const satisfies Record<string, HardwareProfile>;

export type HardwareProfileName = keyof typeof hardwareProfiles;
export const hardwareProfileNames = Object.keys(hardwareProfiles) as [
  HardwareProfileName,
  ...HardwareProfileName[],
];

export function hardwareProfile(name: string): HardwareProfile | undefined {
  return (hardwareProfiles as Record<string, HardwareProfile>)[name];
}
