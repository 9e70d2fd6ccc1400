import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { medianOf } from '../../core/quantile.js';
import { SeededRandom } from '../../core/seeded-random.js';
import type { EngineFlavour, PerformanceConstants } from '../../performance-model/calibration.js';
import { hardwareProfile } from '../../performance-model/hardware-profiles.js';
import { modelProfile } from '../../performance-model/model-profiles.js';
import { firstComeFirstServed } from '../../performance-model/queue-ordering.js';
import { ReplicaModel } from '../../performance-model/replica-model.js';
import { resolveReplicaSpec } from '../../performance-model/replica-spec.js';
import type { PublishedMeasurement, PublishedTrace } from './points/published-measurement.js';
import type { PointSet } from './points/split.js';

/**
 * How the validation script turns a published benchmark run into a simulation, and reads each published
 * metric back from it with the source's own definition (points/README.md, "Caveats"). One run id, one
 * simulation: every metric of a run is read from the same simulated run.
 *
 * The simulation drives one ReplicaModel on a virtual clock, exactly as the fleet simulator's
 * ModelledReplica does (a span of decode steps is cut short when a newcomer could join), without the
 * gateway in front: the published figures measured engines directly.
 */

const validationFolder = path.dirname(fileURLToPath(import.meta.url));

export interface LoadedPoint extends PublishedMeasurement {
  set: PointSet;
}

export function loadPoints(folder = path.join(validationFolder, 'points')): LoadedPoint[] {
  const read = (set: PointSet) =>
    (
      JSON.parse(readFileSync(path.join(folder, `${set}.json`), 'utf8')) as { points: PublishedMeasurement[] }
    ).points.map((point) => ({ ...point, set }));
  return [...read('calibration'), ...read('validation')];
}

/** One request of a run: `outputTokens` 0 is an empty answer (the engine still prefilled and sampled EOS). */
interface RunRequest {
  inputTokens: number;
  outputTokens: number;
}

type Arrivals = { kind: 'burst' } | { kind: 'poisson'; ratePerSecond: number };

/** Everything a run needs to be simulated, decided from its points' setup alone. */
export interface RunSetup {
  run: string;
  source: string;
  hardware: string;
  devices: number;
  model: string;
  weightDtype: 'bf16' | 'fp8';
  flavour: EngineFlavour;
  maxNumSeqs: number | undefined;
  maxNumBatchedTokens: number | undefined;
  /** The HTTP server ran in the engine's process (ML.ENERGY V2's `--disable-frontend-multiprocessing`). */
  apiServerInProcess: boolean;
  /** `--gpu-memory-utilization` where the source's harness set it. */
  gpuMemoryUtilization: number | undefined;
  requests: RunRequest[];
  arrivals: Arrivals;
  /**
   * Where throughput and J per token are read. `whole`: first send to last token. `until-queue-empty`: from the first send
   * until no request waits for admission (ML.ENERGY V2's steady state), the whole run when none ever waits
   * behind a full batch. `{ firstTokensOf, untilFinished }`: from the step at which that many requests have
   * had their first token to the one at which that many have finished (ML.ENERGY V3's steady state).
   */
  window: 'whole' | 'until-queue-empty' | { firstTokensOf: number; untilFinished: number };
  /** Where average power is read: the same window, or the whole run (ML.ENERGY V2's power, their footnote). */
  powerWindow: 'same' | 'whole';
  /** How the lengths were chosen, printed with the tables. */
  lengthsNote: string;
  /** Whether any of the run's points is a power or energy figure (only then do power constants matter). */
  measuresPower: boolean;
  /** The seed of what the source did not publish (planRun's `draw`). */
  draw: number;
}

export type RunPlan = { setup: RunSetup } | { skip: string };

const shareGpt = {
  input: { mean: 202, cv: 1.1, min: 4, max: 1024 },
  output: { mean: 179, cv: 1.1, min: 4, max: 1024 },
};
/** LMArena chat as ML.ENERGY V3 ran it: mean input 224, mean output 717 (points' `workload.lengths`). */
const lmArena = {
  input: { mean: 224, cv: 1.2, min: 4, max: 4096 },
  output: { mean: 717, cv: 0.8, min: 1, max: 4096 },
};

function syntheticRequests(
  lengths: typeof shareGpt,
  count: number,
  seed: string,
  draw: number,
): RunRequest[] {
  const random = new SeededRandom(draw).fork(seed);
  const length = (distribution: typeof shareGpt.input) =>
    Math.min(
      distribution.max,
      Math.max(distribution.min, Math.round(random.lognormal(distribution.mean, distribution.cv))),
    );
  return Array.from({ length: count }, () => ({
    inputTokens: length(lengths.input),
    outputTokens: length(lengths.output),
  }));
}

function readTrace(relativePath: string): RunRequest[] {
  const trace = JSON.parse(readFileSync(path.join(validationFolder, relativePath), 'utf8')) as PublishedTrace;
  return trace.inputLens.map((inputTokens, index) => ({
    inputTokens,
    outputTokens: trace.outputLens[index] as number,
  }));
}

/** vLLM release → the engine flavour whose host behaviour the model has (calibration.ts `engineOverheads`). */
function flavourOf(point: PublishedMeasurement): { flavour: EngineFlavour } | { skip: string } {
  const version = point.setup.engineVersion;
  const match = /^(\d+)\.(\d+)/.exec(version);
  if (!match?.[1] || !match[2])
    return { skip: `engine version ${JSON.stringify(version)}: no host-overhead flavour to pick` };
  const [major, minor] = [Number(match[1]), Number(match[2])];
  if (major === 0 && minor === 5) return { flavour: 'vllm-0.5' };
  if (major === 0 && minor === 6) {
    const steps = point.setup.batching.numSchedulerSteps;
    if (typeof steps === 'number' && steps > 1) return { flavour: 'vllm-0.6-multistep' };
    return { skip: 'vLLM 0.6 with single-step scheduling is not a modelled flavour' };
  }
  if (major > 0 || minor >= 8) return { flavour: 'vllm-v1' };
  return { skip: `vLLM ${version} is not a modelled flavour` };
}

function precisionOf(point: PublishedMeasurement): 'bf16' | 'fp8' | null {
  const precision = point.setup.precision.toLowerCase();
  if (precision.startsWith('fp8')) return 'fp8';
  if (precision.startsWith('bf16')) return 'bf16';
  // ML.ENERGY: "the Llama 3.1 Instruct checkpoints", published in BF16.
  if (point.source.name === 'ml-energy' && precision.includes('instruct checkpoints')) return 'bf16';
  return null;
}

const lambdaTraces = [
  'traces/lambda-v054-json-8b-fp8-1xa100-320prompts.json',
  'traces/lambda-v054-json-8b-fp8-1xh100-320prompts.json',
  'traces/lambda-v054-json-70b-fp8-2xh100-320prompts.json',
  'traces/lambda-v054-json-70b-fp8-4xh100-320prompts.json',
];

/**
 * Lambda's table rows publish no lengths; every stored 320-prompt JSON run of the same checkpoint has the
 * same inputs (points/README.md). Rule: the 320-prompt trace of the same model on the same hardware and
 * GPU count, else the same hardware, else the same model; its outputs stand in for the table run's.
 */
function lambdaTableTrace(model: string, hardware: string, gpus: number): string {
  const size = model.endsWith('70b') ? '70b' : '8b';
  const short = hardware.startsWith('a100') ? 'a100' : 'h100';
  const ofModel = lambdaTraces.filter((trace) => trace.includes(`-${size}-`));
  return (
    ofModel.find((trace) => trace.includes(`${gpus}x${short}`)) ??
    ofModel.find((trace) => trace.includes(`x${short}`)) ??
    (ofModel[ofModel.length - 1] as string)
  );
}

/**
 * ML.ENERGY V3's request repeats per max_num_seqs (ml-energy/benchmark `configs/vllm/lm-arena-chat/
 * meta-llama/Llama-3.1-{8B,70B}-Instruct/H100/sweeps.yaml`): enough requests that a steady state exists.
 */
function ml3Repeats(model: string, batch: number): number {
  if (model.endsWith('70b')) return batch <= 384 ? 1 : batch <= 1024 ? 2 : 3;
  return batch <= 192 ? 1 : batch <= 512 ? 2 : 3;
}

/**
 * Decides how to simulate a run from its first point's setup, or why it cannot be simulated. `draw`
 * seeds what the source did not publish (lengths drawn from a distribution, Poisson arrivals): another
 * draw shows how much of an error figure is that choice (`npm run validate:model -- --draw N`).
 */
export function planRun(points: readonly PublishedMeasurement[], draw = 1): RunPlan {
  const point = points[0] as PublishedMeasurement;
  const setup = point.setup;
  if (setup.engine !== 'vllm') return { skip: `engine ${setup.engine} is not modelled (vLLM flavours only)` };
  const engine = flavourOf(point);
  if ('skip' in engine) return engine;
  const flavour = engine.flavour;
  if (!hardwareProfile(setup.hardware)) return { skip: `hardware not a profile: ${setup.hardware}` };
  const weightDtype = precisionOf(point);
  if (!weightDtype) return { skip: `weight precision not stated: ${setup.precision}` };
  if (!modelProfile(setup.model)) return { skip: `model ${setup.model} has no profile` };
  if (setup.gpus !== setup.tensorParallel)
    return {
      skip: `${setup.gpus} GPUs as ${setup.gpus / setup.tensorParallel} replicas: a fleet, not one engine`,
    };
  const batching = setup.batching;
  const maxNumSeqs = typeof batching.maxNumSeqs === 'number' ? batching.maxNumSeqs : undefined;
  const maxNumBatchedTokens =
    typeof batching.maxNumBatchedTokens === 'number' ? batching.maxNumBatchedTokens : undefined;
  const common = {
    measuresPower: points.some(
      (candidate) =>
        candidate.metric.name === 'average GPU power W' || candidate.metric.name === 'J per output token',
    ),
    run: point.run,
    source: point.source.name,
    hardware: setup.hardware,
    devices: setup.tensorParallel,
    model: setup.model,
    weightDtype,
    flavour,
    // vLLM 0.5/0.6 default max_num_seqs is 256 on every GPU; V1 raises it on large GPUs (calibration.ts).
    maxNumSeqs: maxNumSeqs ?? (flavour === 'vllm-v1' ? undefined : 256),
    maxNumBatchedTokens,
    apiServerInProcess: false,
    gpuMemoryUtilization: undefined,
    draw,
  };
  const workload = setup.workload;
  const load = setup.load;

  if (point.source.name === 'lambda-vllm-benchmark') {
    const trace = workload.trace ?? lambdaTableTrace(setup.model, setup.hardware, setup.gpus);
    return {
      setup: {
        ...common,
        requests: readTrace(trace),
        arrivals: { kind: 'burst' },
        window: 'whole',
        powerWindow: 'same',
        lengthsNote: workload.trace
          ? 'exact (trace)'
          : `lengths of ${path.basename(trace)} (table publishes none)`,
      },
    };
  }
  if (point.source.name === 'ml-energy') {
    const batch = maxNumSeqs ?? 256;
    if (flavour === 'vllm-0.5') {
      // V2 as its leaderboard describes the chat benchmark: 500 ShareGPT prompts, all submitted at the start
      // with max_num_seqs limiting the batch; the steady state ends when the queue is empty; power was
      // measured over the whole benchmark (the post's footnote). Its harness started vLLM 0.5.4 with
      // `--disable-frontend-multiprocessing` and `--gpu-memory-utilization 0.95` (benchmark_one_datapoint.py).
      // points/README.md, "ML.ENERGY V2".
      const count = 500;
      return {
        setup: {
          ...common,
          apiServerInProcess: true,
          gpuMemoryUtilization: 0.95,
          requests: syntheticRequests(shareGpt, count, point.run, draw),
          arrivals: { kind: 'burst' },
          window: 'until-queue-empty',
          powerWindow: 'whole',
          lengthsNote: `ShareGPT lognormal (not published), ${count} requests at once (V2 protocol)`,
        },
      };
    }
    // V3 as its harness ran it (ml-energy/benchmark, `configs/vllm/lm-arena-chat`): 1,024 LMArena prompts
    // sent `num_request_repeats` times, all at once (`request_rate` inf), max_num_seqs limiting the batch;
    // the steady state runs from the max_num_seqs-th first token to the (N − max_num_seqs − 1)-th finished
    // request (`RequestTracker` in mlenergy/benchmark/llm/benchmark.py).
    const repeats = ml3Repeats(setup.model, batch);
    const unique = syntheticRequests(lmArena, 1024, point.run, draw);
    const requests = Array.from({ length: repeats }, () => unique).flat();
    const count = requests.length;
    return {
      setup: {
        ...common,
        requests,
        arrivals: { kind: 'burst' },
        window: { firstTokensOf: batch, untilFinished: count - batch - 1 },
        powerWindow: 'same',
        lengthsNote: `LMArena lognormal (not published), 1024 × ${repeats} requests at once (V3 protocol)`,
      },
    };
  }
  if (point.source.name === 'sglang-benchmark-vllm060') {
    const prompts = typeof load.prompts === 'number' ? load.prompts : 1000;
    const rate = /^(\d+(?:\.\d+)?) req\/s/.exec(String(load.requestRate));
    return {
      setup: {
        ...common,
        requests: syntheticRequests(shareGpt, prompts, point.run, draw),
        arrivals: rate ? { kind: 'poisson', ratePerSecond: Number(rate[1]) } : { kind: 'burst' },
        window: 'whole',
        powerWindow: 'same',
        lengthsNote: `ShareGPT lognormal (not published), ${prompts} requests`,
      },
    };
  }
  return { skip: `no scenario rule for source ${point.source.name}` };
}

/** What a simulated run measured, enough to read any published metric. */
export interface RunMeasurements {
  ttftMs: Float64Array;
  e2eMs: Float64Array;
  outputTokens: Int32Array;
  /** Pooled inter-token (inter-chunk) gaps with their weights (how many tokens saw that gap). */
  itlGapsMs: number[];
  itlWeights: number[];
  durationMs: number;
  window: { ms: number; outputTokens: number; energyJoules: number };
  /** Where average power is read (the window above unless the source measured power over the whole run). */
  powerWindow: { ms: number; energyJoules: number };
  devices: number;
  idleWatts: number;
}

export function simulateRun(setup: RunSetup, constants: PerformanceConstants): RunMeasurements {
  const hardware = hardwareProfile(setup.hardware);
  const model = modelProfile(setup.model, { weightDtype: setup.weightDtype });
  if (!hardware || !model) throw new Error(`${setup.run}: no profile`);
  const spec = resolveReplicaSpec(
    {
      hardware,
      model,
      deviceCount: setup.devices,
      flavour: setup.flavour,
      maxNumSeqs: setup.maxNumSeqs,
      maxNumBatchedTokens: setup.maxNumBatchedTokens,
      apiServerInProcess: setup.apiServerInProcess,
      gpuMemoryUtilization: setup.gpuMemoryUtilization,
      // Benchmarks of these releases ran without prefix caching (vLLM 0.5/0.6 default off); random prompts
      // share nothing anyway.
      prefixCaching: false,
    },
    constants,
  );
  const requests = setup.requests;
  const count = requests.length;
  const arrivalMs = new Float64Array(count);
  const ttftMs = new Float64Array(count);
  const e2eMs = new Float64Array(count);
  const outputTokens = new Int32Array(count);
  const itlGapsMs: number[] = [];
  const itlWeights: number[] = [];
  const chunkSteps = spec.scheduleEverySteps;
  let lastDecodeStepMs = 0;
  const timeline: TimelineEntry[] = [];
  let finished = 0;
  let started = 0;

  const replica = new ReplicaModel<number>(spec, firstComeFirstServed, {
    onFirstToken: (sequence, atMs) => {
      ttftMs[sequence.tag] = atMs - (arrivalMs[sequence.tag] as number);
      started++;
    },
    onDecodeSteps: (byPriority, steps, durationMs) => {
      let sequences = 0;
      for (const value of byPriority) sequences += value;
      if (sequences === 0) return;
      lastDecodeStepMs = durationMs / steps;
      // Multi-step scheduling streams `chunkSteps` tokens at once: the client sees one gap per chunk.
      itlGapsMs.push(lastDecodeStepMs * chunkSteps);
      itlWeights.push((sequences * steps) / chunkSteps);
    },
    onDecodesPaused: (sequences, durationMs) => {
      // One gap of every waiting sequence stretches by the prefill step: record it as a gap of its own
      // and take one ordinary gap's weight back.
      itlGapsMs.push(durationMs + lastDecodeStepMs * chunkSteps);
      itlWeights.push(sequences);
      itlGapsMs.push(lastDecodeStepMs * chunkSteps);
      itlWeights.push(-sequences);
    },
    onFinish: (sequence, atMs) => {
      e2eMs[sequence.tag] = atMs - (arrivalMs[sequence.tag] as number);
      finished++;
    },
  });

  let submitted = 0;
  const submit = (nowMs: number) => {
    const index = submitted++;
    const request = requests[index] as RunRequest;
    arrivalMs[index] = nowMs;
    outputTokens[index] = request.outputTokens;
    replica.submit(
      {
        promptTokens: Math.max(1, request.inputTokens),
        outputTokens: Math.max(1, request.outputTokens),
        promptBlockHashes: null,
        outputSeed: null,
        priority: 1,
        tag: index,
      },
      nowMs,
    );
  };

  const arrivals = setup.arrivals;
  const openArrivals = new Float64Array(count);
  if (arrivals.kind === 'poisson') {
    const random = new SeededRandom(setup.draw).fork(`${setup.run}:arrivals`);
    let at = 0;
    for (let index = 0; index < count; index++) {
      openArrivals[index] = at;
      at += random.exponential(1000 / arrivals.ratePerSecond);
    }
  }

  let nowMs = 0;
  for (;;) {
    const nextArrivalMs = submitted < openArrivals.length ? (openArrivals[submitted] as number) : Infinity;
    if (replica.stepInProgress && replica.stepEndMs <= nextArrivalMs) {
      nowMs = replica.stepEndMs;
      replica.completeStep();
      timeline.push({
        atMs: nowMs,
        tokens: replica.generatedTokensTotal,
        energy: replica.dynamicEnergyJoules,
        waiting: replica.waitingRequests,
        batchFull: replica.runningRequests >= spec.maxNumSeqs,
        started,
        finished,
      });
      replica.startStep(nowMs, Infinity);
    } else if (Number.isFinite(nextArrivalMs)) {
      nowMs = nextArrivalMs;
      while (submitted < openArrivals.length && (openArrivals[submitted] as number) <= nowMs) submit(nowMs);
      if (!replica.stepInProgress) replica.startStep(nowMs, Infinity);
      else if (replica.canAdmitHead()) replica.interruptSpan(nowMs);
    } else if (!replica.stepInProgress) {
      if (!replica.startStep(nowMs, Infinity)) break;
    }
  }
  if (finished !== count) throw new Error(`${setup.run}: ${count - finished} requests never finished`);

  const measured = measurementWindow(timeline, setup.window);
  const whole = measurementWindow(timeline, 'whole');
  const power = setup.powerWindow === 'whole' ? whole : measured;
  // Idle power all along, dynamic energy as the steps booked it.
  const energyOf = (window: { ms: number; energy: number }) =>
    (spec.idleWatts * window.ms) / 1000 + window.energy;
  return {
    ttftMs,
    e2eMs,
    outputTokens,
    itlGapsMs,
    itlWeights,
    durationMs: nowMs,
    window: {
      ms: measured.ms,
      outputTokens: measured.tokens,
      energyJoules: energyOf(measured),
    },
    powerWindow: { ms: power.ms, energyJoules: energyOf(power) },
    devices: setup.devices,
    idleWatts: spec.idleWatts,
  };
}

interface TimelineEntry {
  atMs: number;
  tokens: number;
  energy: number;
  /** Requests waiting for admission at the end of the step. */
  waiting: number;
  /** Whether max_num_seqs sequences were running then. */
  batchFull: boolean;
  /** Requests that have had their first token, and requests finished, by the end of the step. */
  started: number;
  finished: number;
}

/** The part of the run a source measured over (RunSetup.window). */
function measurementWindow(timeline: readonly TimelineEntry[], window: RunSetup['window']) {
  const last = timeline[timeline.length - 1] as TimelineEntry;
  const whole = { ms: last.atMs, tokens: last.tokens, energy: last.energy };
  if (window === 'whole') return whole;
  if (window === 'until-queue-empty') {
    // Ends at the first step after which nothing waits behind a full batch. When that never happened (the
    // batch limit at or above the request count) the queue empties with the prefill burst, before any
    // steady state, and the whole run stands in: a reading of the source, not its stated rule.
    const queued = timeline.findIndex((entry) => entry.waiting > 0 && entry.batchFull);
    if (queued < 0) return whole;
    const end = timeline.slice(queued).find((entry) => entry.waiting === 0) ?? last;
    return { ms: end.atMs, tokens: end.tokens, energy: end.energy };
  }
  const from = timeline.find((entry) => entry.started >= window.firstTokensOf) ?? last;
  const to = timeline.find((entry) => entry.finished >= window.untilFinished) ?? last;
  return { ms: to.atMs - from.atMs, tokens: to.tokens - from.tokens, energy: to.energy - from.energy };
}

function weightedMedian(values: readonly number[], weights: readonly number[]): number {
  const order = values.map((_, index) => index).sort((a, b) => (values[a] as number) - (values[b] as number));
  let total = 0;
  for (const weight of weights) total += weight;
  let seen = 0;
  for (const index of order) {
    seen += weights[index] as number;
    if (seen >= total / 2) return values[index] as number;
  }
  return Number.NaN;
}

/**
 * Reads a published metric from a simulated run with the source's definition, or says why it cannot.
 * Empty answers (0 output tokens) count as their sources count them: 0 tokens in throughput, TTFT 0 in
 * vLLM 0.5.4's mean TTFT, no gaps in ITL, excluded from TPOT.
 */
export function readMetric(point: PublishedMeasurement, run: RunMeasurements): number | string {
  const { ttftMs, e2eMs, outputTokens } = run;
  const count = ttftMs.length;
  const answered = (index: number) => (outputTokens[index] as number) > 0;
  const indices = Array.from({ length: count }, (_, index) => index);
  const totalOutput = outputTokens.reduce((sum, tokens) => sum + tokens, 0);
  const window = run.window;
  switch (point.metric.name) {
    case 'output tokens/s':
      return point.source.name === 'ml-energy'
        ? window.outputTokens / (window.ms / 1000)
        : totalOutput / (run.durationMs / 1000);
    case 'request throughput req/s':
      return count / (run.durationMs / 1000);
    case 'median ITL ms':
      return weightedMedian(run.itlGapsMs, run.itlWeights);
    case 'median TPOT ms':
      return (
        medianOf(
          indices
            .filter((index) => (outputTokens[index] as number) > 1)
            .map(
              (index) =>
                ((e2eMs[index] as number) - (ttftMs[index] as number)) /
                ((outputTokens[index] as number) - 1),
            ),
        ) ?? Number.NaN
      );
    case 'mean TTFT ms': {
      let sum = 0;
      for (const index of indices) if (answered(index)) sum += ttftMs[index] as number;
      return sum / count;
    }
    case 'median TTFT ms':
      return medianOf(Array.from(ttftMs)) ?? Number.NaN;
    case 'median E2E latency ms':
      return medianOf(Array.from(e2eMs)) ?? Number.NaN;
    case 'average GPU power W':
      return run.powerWindow.energyJoules / (run.powerWindow.ms / 1000);
    case 'J per output token':
      return window.energyJoules / window.outputTokens;
    default:
      return `metric ${point.metric.name} is not read from a simulation`;
  }
}
