import type { SimulationResult } from '../simulation-result.js';

/**
 * Published measurements the performance model is held against (docs/simulator-validation.md). Each
 * point names its source, the setting as published, and how the simulator reproduces it. `role` says
 * whether the point set a calibration constant (never reported as validation) or validates.
 *
 * Workload notes that apply to several points:
 * - "burst" = vLLM benchmark_serving's `--request-rate inf`: every request sent at once. Simulated as a
 *   Poisson process at 10⁶ requests/s.
 * - ShareGPT first turns average ~202 input / ~179 output tokens (vLLM blog 2024-09-05); vLLM's sampler
 *   drops prompts over 1024 tokens and pairs over 2048.
 * - Lambda's 8B runs use the FP8 *base* model: 105 of 320 requests produced no output (their results
 *   JSON), so a third of requests are modelled as single-token answers and the rest average 207 tokens.
 */
export interface PublishedPoint {
  id: string;
  source: string;
  setting: string;
  role: 'calibration' | 'validation';
  metric:
    | 'output tokens/s'
    | 'median ITL ms'
    | 'median TPOT ms'
    | 'mean TTFT ms'
    | 'median TTFT ms'
    | 'J per output token';
  published: number;
  /** The simulator's run for this point (several points may share one). */
  scenario: Record<string, unknown>;
  read: (result: SimulationResult) => number;
}

const shareGpt = {
  input: { lognormal: { mean: 202, cv: 1.1 }, min: 4, max: 1024 },
  output: { lognormal: { mean: 179, cv: 1.1 }, min: 1, max: 1024 },
};
const lambdaBaseModelMix = [
  {
    name: 'answered',
    weight: 215,
    input: shareGpt.input,
    output: { lognormal: { mean: 207, cv: 1.1 }, min: 2, max: 1024 },
  },
  { name: 'eos-at-once', weight: 105, input: shareGpt.input, output: { fixed: 1 } },
];
/** LMArena chat prompts as ML.ENERGY's v3 run used them: mean input 224, mean output 717 tokens. */
const lmArena = [
  {
    name: 'lmarena',
    input: { lognormal: { mean: 224, cv: 1.2 }, min: 4, max: 4096 },
    output: { lognormal: { mean: 717, cv: 0.8 }, min: 1, max: 4096 },
  },
];

const burst = { process: 'poisson', ratePerSecond: 1_000_000 };

function run(
  fleet: Record<string, unknown>,
  workload: { arrivals: Record<string, unknown>; requests: number; mix: unknown[] },
) {
  return { name: 'validation', seed: 1, fleet: { replicas: 1, ...fleet }, workload };
}

const throughput = (result: SimulationResult) => result.overall.outputTokensPerSecond;
const medianItl = (result: SimulationResult) => result.overall.itl.p50Ms as number;
const medianTpot = (result: SimulationResult) => result.overall.tpot.p50Ms as number;
const meanTtft = (result: SimulationResult) => result.overall.ttft.meanMs as number;
const medianTtft = (result: SimulationResult) => result.overall.ttft.p50Ms as number;
const joulesPerToken = (result: SimulationResult) => result.fleet.joulesPerOutputToken as number;

const lambdaSource = 'LambdaLabsML/vllm-benchmark results (vLLM 0.5.4, Aug 2024)';
const mlEnergy =
  'ML.ENERGY blog "LLM Inference Energy: A Longitudinal Analysis" (figures read from its plots)';
const sglang = 'sgl-project/sglang benchmark/benchmark_vllm_060/README.md (vLLM 0.6.0, 10 scheduler steps)';

function lambdaBurst(prompts: number) {
  return run(
    { hardware: 'h100-sxm', model: 'llama-3.1-8b', weightDtype: 'fp8', flavour: 'vllm-0.5', maxNumSeqs: 256 },
    { arrivals: burst, requests: prompts, mix: lambdaBaseModelMix },
  );
}

function mlEnergyV3(maxNumSeqs: number) {
  return run(
    { hardware: 'h100-sxm', model: 'llama-3.1-8b', flavour: 'vllm-v1', maxNumSeqs },
    {
      arrivals: { process: 'closed-loop', concurrency: maxNumSeqs },
      requests: Math.max(1500, maxNumSeqs * 6),
      mix: lmArena,
    },
  );
}

function mlEnergyV2(maxNumSeqs: number) {
  return run(
    { hardware: 'h100-sxm', model: 'llama-3.1-8b', flavour: 'vllm-0.5', maxNumSeqs },
    { arrivals: burst, requests: 500, mix: [{ name: 'sharegpt', ...shareGpt }] },
  );
}

function sglangOnline(model: string, hardware: string, devices: number, rate: number) {
  return run(
    { hardware, devices, model, flavour: 'vllm-0.6-multistep' },
    {
      arrivals: { process: 'poisson', ratePerSecond: rate },
      requests: rate * 300,
      mix: [{ name: 'sharegpt', ...shareGpt }],
    },
  );
}

export const publishedPoints: PublishedPoint[] = [
  // ── vLLM 0.5 host overhead: calibrated on the smallest burst, where the step is mostly host time. ──
  {
    id: 'lambda-8b-fp8-10',
    source: `${lambdaSource}, prompt_10/1xH100 8B FP8 len8000`,
    setting: 'Llama-3.1-8B FP8, 1×H100, burst of 10 ShareGPT prompts',
    role: 'calibration',
    metric: 'median ITL ms',
    published: 6.02,
    scenario: lambdaBurst(10),
    read: medianItl,
  },
  ...([80, 320] as const).flatMap((prompts): PublishedPoint[] => {
    const figures =
      prompts === 80
        ? { tokens: 1465.21, itl: 9.55, ttft: 222.24 }
        : { tokens: 3356.94, itl: 19.88, ttft: 778.94 };
    const common = {
      source: `${lambdaSource}, prompt_${prompts}/1xH100 8B FP8 len8000`,
      setting: `Llama-3.1-8B FP8, 1×H100, burst of ${prompts} ShareGPT prompts`,
      role: 'validation' as const,
      scenario: lambdaBurst(prompts),
    };
    return [
      {
        ...common,
        id: `lambda-8b-fp8-${prompts}-throughput`,
        metric: 'output tokens/s',
        published: figures.tokens,
        read: throughput,
      },
      {
        ...common,
        id: `lambda-8b-fp8-${prompts}-itl`,
        metric: 'median ITL ms',
        published: figures.itl,
        read: medianItl,
      },
      {
        ...common,
        id: `lambda-8b-fp8-${prompts}-ttft`,
        metric: 'mean TTFT ms',
        published: figures.ttft,
        read: meanTtft,
      },
    ];
  }),
  ...(
    [
      [2, 1727.69, 49.33],
      [4, 2242.99, 38.26],
      [8, 2572.8, 33.71],
    ] as const
  ).flatMap(([devices, tokens, itl]): PublishedPoint[] => {
    const common = {
      source: `${lambdaSource}, benchmark_v0.md TP table`,
      setting: `Llama-3.1-70B FP8, ${devices}×H100 (TP ${devices}), burst of 320 ShareGPT prompts`,
      role: 'validation' as const,
      scenario: run(
        {
          hardware: 'h100-sxm',
          devices,
          model: 'llama-3.1-70b',
          weightDtype: 'fp8',
          flavour: 'vllm-0.5',
          maxNumSeqs: 256,
        },
        { arrivals: burst, requests: 320, mix: [{ name: 'sharegpt', ...shareGpt }] },
      ),
    };
    return [
      {
        ...common,
        id: `lambda-70b-fp8-tp${devices}-throughput`,
        metric: 'output tokens/s',
        published: tokens,
        read: throughput,
      },
      {
        ...common,
        id: `lambda-70b-fp8-tp${devices}-itl`,
        // TP 4's ITL sets the all-reduce latency (calibration.ts); TP 2 and TP 8 validate its scaling.
        role: devices === 4 ? ('calibration' as const) : ('validation' as const),
        metric: 'median ITL ms',
        published: itl,
        read: medianItl,
      },
    ];
  }),
  // ── ML.ENERGY v2 (vLLM 0.5.4): energy per token at batch 64 and beyond ──
  ...(
    [
      [64, 0.202, 1738],
      [128, 0.126, 2098],
      [256, 0.1, 2237],
    ] as const
  ).flatMap(([batch, joules, tokens]): PublishedPoint[] => {
    const common = {
      source: `${mlEnergy}, V2 (vLLM 0.5.4)`,
      setting: `Llama-3.1-8B BF16, 1×H100, max_num_seqs ${batch}, 500 ShareGPT prompts`,
      role: 'validation' as const,
      scenario: mlEnergyV2(batch),
    };
    return [
      {
        ...common,
        id: `mlenergy-v2-8b-${batch}-energy`,
        metric: 'J per output token',
        published: joules,
        read: joulesPerToken,
      },
      {
        ...common,
        id: `mlenergy-v2-8b-${batch}-throughput`,
        metric: 'output tokens/s',
        published: tokens,
        read: throughput,
      },
    ];
  }),
  // ── ML.ENERGY v3 (vLLM 0.11.1): the V1 engine's host overhead is calibrated at batch 256 only ──
  {
    id: 'mlenergy-v3-8b-256-throughput',
    source: `${mlEnergy}, V3 (vLLM 0.11.1)`,
    setting: 'Llama-3.1-8B BF16, 1×H100, max_num_seqs 256, LMArena chat',
    role: 'calibration',
    metric: 'output tokens/s',
    published: 9010,
    scenario: mlEnergyV3(256),
    read: throughput,
  },
  ...(
    [
      [16, 0.263, 1954],
      [32, 0.165, 3391],
      [64, 0.119, 5147],
      [128, 0.095, 7037],
      [512, 0.07, 9806],
    ] as const
  ).flatMap(([batch, joules, tokens]): PublishedPoint[] => {
    const common = {
      source: `${mlEnergy}, V3 (vLLM 0.11.1)`,
      setting: `Llama-3.1-8B BF16, 1×H100, max_num_seqs ${batch}, LMArena chat`,
      role: 'validation' as const,
      scenario: mlEnergyV3(batch),
    };
    return [
      {
        ...common,
        id: `mlenergy-v3-8b-${batch}-energy`,
        metric: 'J per output token',
        published: joules,
        read: joulesPerToken,
      },
      {
        ...common,
        id: `mlenergy-v3-8b-${batch}-throughput`,
        metric: 'output tokens/s',
        published: tokens,
        read: throughput,
      },
    ];
  }),
  // ── Open-loop latency at known Poisson rates (vLLM 0.6.0 with ten-step scheduling) ──
  ...(
    [
      ['llama-3.1-8b', 'a100-80gb', 1, 4, 100.48, 14.14],
      ['llama-3.1-8b', 'a100-80gb', 1, 8, 120.39, 17.09],
      ['llama-3.1-70b', 'h100-sxm', 4, 4, 179.15, 23.58],
      ['llama-3.1-70b', 'h100-sxm', 4, 8, 207.12, 29.15],
    ] as const
  ).flatMap(([model, hardware, devices, rate, ttft, tpot]): PublishedPoint[] => {
    const common = {
      source: sglang,
      setting: `${model} BF16, ${devices}×${hardware}, Poisson ${rate} req/s ShareGPT`,
      role: 'validation' as const,
      scenario: sglangOnline(model, hardware, devices, rate),
    };
    return [
      {
        ...common,
        id: `vllm060-${model}-${hardware}-${rate}rps-tpot`,
        metric: 'median TPOT ms',
        published: tpot,
        read: medianTpot,
      },
      {
        ...common,
        id: `vllm060-${model}-${hardware}-${rate}rps-ttft`,
        metric: 'median TTFT ms',
        published: ttft,
        read: medianTtft,
      },
    ];
  }),
];
