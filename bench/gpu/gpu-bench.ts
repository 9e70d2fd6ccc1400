// The GPU run (bench/gpu/README.md): for each published model shape, generates a random-weight F16 GGUF
// with Gravity's own writer, serves it through `gravity serve` (llama.cpp in process, every layer on the
// GPU, energy `measured:nvml`), drives closed-loop streamed chat at each concurrency, and writes what it
// measured: client-side tokens/s, TTFT and inter-token latency, the ledger's joules per token, NVML's
// counter read independently (bench/gpu/nvml-sampler.py) over the same windows, and the conservation of
// ledger joules against that counter. The performance model's predictions are added afterwards, off
// the GPU, by compare-model.ts.
//
//   node gpu-bench.mjs --gravity dist/cli/main.js --out results/ [--counter "python3 nvml-sampler.py 0 10"]
//   (bundled by pack.sh for the device); here: npm run bench:gpu -- --quick (llama.cpp on the CPU, the
//   1B shape, short levels). `--help` lists the options.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import {
  type PublishedShapeName,
  publishedShapeNames,
  writeShapedModel,
} from '../../src/engines/llama-cpp/shaped-model.js';
import { SqliteLedgerStore } from '../../src/metering/ledger/sqlite-ledger-store.js';
import { modelProfileFromGguf } from '../../src/performance-model/model-profiles.js';
import { ChildProcessGroup, startGravity } from '../support/child-processes.js';
import { LoadClient, type LoadRequest, type RequestOutcome } from '../support/load-client.js';
import { flag, integer, integers, readOptions, text } from '../support/report-format.js';
import {
  type ClientRequest,
  type CounterSample,
  conservation,
  counterDelta,
  type LevelFigures,
  levelFigures,
  startedIn,
} from './run-analysis.js';

const options = readOptions(
  'bench:gpu',
  'Published-shape models served by llama.cpp in gravity serve: tokens/s, latency, ledger and NVML joules (bench/gpu/README.md).',
  {
    gravity: text('dist/cli/main.js', 'the gravity CLI entry to run serve with'),
    out: text('scratch/gpu-results', 'where configs, ledgers and gpu-results.json go'),
    models: text('', 'where the GGUF models are written (default <out>/models)'),
    device: text('cuda', 'the llama-cpp engine device', { choices: ['cuda', 'cpu'], quick: 'cpu' }),
    energy: text('nvml', 'the engine energy source', { choices: ['nvml', 'auto'], quick: 'auto' }),
    // The 8B first: if the device call's time runs short, the model users run most is the one measured.
    shapes: text('llama-3.1-8b,llama-3.2-1b', `comma-separated, of ${publishedShapeNames.join(', ')}`, {
      quick: 'llama-3.2-1b',
    }),
    concurrency: integers([1, 4, 16, 64], 'closed-loop clients per level', { quick: [1, 2] }),
    windowS: integer(12, 'seconds of steady window per level', { quick: 6 }),
    warmupS: integer(3, 'seconds of warm-up before each window', { quick: 2 }),
    promptWords: integer(256, 'one-token words per prompt (the chat template adds ~100 tokens)', {
      quick: 16,
    }),
    maxTokens: integer(256, 'output tokens per request', { quick: 8 }),
    threads: integer(4, 'llama.cpp CPU threads', { quick: 2 }),
    counter: text('', 'a command printing "epoch_ms,millijoules" lines: the independent energy reading'),
    generateOnly: flag('write the models and stop (the device script does this while llama.cpp compiles)'),
    deadline: integer(0, 'epoch seconds after which no level starts (0: none)', { min: 0 }),
  },
  (options) => {
    for (const shape of options.shapes.split(','))
      if (!publishedShapeNames.includes(shape as PublishedShapeName))
        throw new Error(`--shapes: unknown shape ${shape} (${publishedShapeNames.join(', ')})`);
  },
);

const outDirectory = path.resolve(options.out);
const modelsDirectory = path.resolve(options.models || path.join(outDirectory, 'models'));
const shapes = options.shapes.split(',') as PublishedShapeName[];
const levels = options.concurrency;
const windowMs = options.windowS * 1000;
const warmupMs = options.warmupS * 1000;
const { promptWords, maxTokens } = options;
const slots = Math.max(...levels);
const deadlineMs = options.deadline > 0 ? options.deadline * 1000 : Number.POSITIVE_INFINITY;

const log = (line: string): void =>
  console.log(`[gpu-bench ${new Date().toISOString().slice(11, 19)}] ${line}`);

/** The independent energy counter: a sampler process printing `epoch_ms,millijoules` lines. */
function startCounter(command: string): { samples: CounterSample[]; stop: () => void } {
  const samples: CounterSample[] = [];
  const child = spawn('sh', ['-c', command], { stdio: ['pipe', 'pipe', 'inherit'] });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const [time, millijoules] = line.split(',').map(Number);
    if (Number.isFinite(time) && Number.isFinite(millijoules))
      samples.push({ timeMs: time!, joules: millijoules! / 1000 });
  });
  return { samples, stop: () => child.stdin!.end() };
}

/** Words of the generated vocabulary ('▁aa' … are one token each), so a prompt's length is predictable. */
function promptText(words: number, seed: number): string {
  const parts: string[] = [];
  let state = seed * 2654435761;
  for (let index = 0; index < words; index++) {
    state = (state * 1103515245 + 12345) >>> 0;
    const code = state % 676;
    parts.push(String.fromCharCode(97 + Math.floor(code / 26), 97 + (code % 26)));
  }
  return parts.join(' ');
}

/** One streamed chat request per prompt, each prompt different (llama.cpp reuses a slot's shared prefix). */
function chatRequests(port: number, model: string, count: number, seedBase: number): LoadRequest[] {
  return Array.from({ length: count }, (_, index) => ({
    port,
    path: '/v1/chat/completions',
    body: JSON.stringify({
      model,
      messages: [{ role: 'user', content: promptText(promptWords, seedBase + index) }],
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    }),
  }));
}

/** The load client's outcome on the wall clock: every token's arrival, to be counted inside a window. */
function clientRequest(outcome: RequestOutcome): ClientRequest {
  const tokenTimesMs: number[] = [];
  if (outcome.ttftMs !== null) {
    let atMs = outcome.sentAtMs + outcome.ttftMs;
    tokenTimesMs.push(atMs);
    for (const gapMs of outcome.gapsMs ?? []) {
      atMs += gapMs;
      tokenTimesMs.push(atMs);
    }
  }
  return {
    requestId: outcome.requestId ?? '',
    startMs: outcome.sentAtMs,
    tokenTimesMs,
    endMs: outcome.sentAtMs + outcome.e2eMs,
    promptTokens: outcome.promptTokens,
    completionTokens: outcome.completionTokens,
    // A 200 whose stream broke off is no answer either.
    status: outcome.error === null ? outcome.status : outcome.status === 200 ? 0 : outcome.status,
    ...(outcome.error !== null && { errorBody: outcome.error }),
  };
}

/** Prompts per level: more than any level can send (64 clients × 15 s of 1B requests), so none repeats. */
const promptsPerLevel = 4000;

/**
 * `concurrency` clients, each sending its next request when its last one ends. The steady window opens
 * after the warm-up and closes `windowMs` later; clients start no request after it closes, and the level
 * ends when the last one finishes.
 */
async function runLevel(port: number, model: string, concurrency: number, seedBase: number) {
  const startMs = Date.now();
  const run = await loadClient.run({
    requests: chatRequests(port, model, promptsPerLevel, seedBase),
    concurrency,
    seconds: (warmupMs + windowMs) / 1000,
    detail: 'timing',
    // A setting that fails every request would otherwise spin for the whole window.
    maxErrors: 10,
  });
  const failures = run.outcomes.filter((outcome) => outcome.error !== null);
  if (failures.length >= 10) throw new Error(`requests fail at c=${concurrency}: ${failures[0]?.error}`);
  const requests = run.outcomes.map(clientRequest);
  const windowStartMs = startMs + warmupMs;
  return { requests, figures: levelFigures(concurrency, requests, windowStartMs, windowStartMs + windowMs) };
}

function configYaml(shape: string, modelPath: string, promptTokens: number): string {
  return `engines:
  gpu:
    type: llama-cpp
    model: { path: ${JSON.stringify(modelPath)} }
    device: ${options.device}
    slots: ${slots}
    contextTokens: ${promptTokens + maxTokens}
    threads: ${options.threads}
    embeddingContexts: 0
    metering: { energy: { source: ${options.energy}, gpuIndices: [0], hardware: h200 } }
models:
  ${shape}: { engine: gpu }
`;
}

interface ShapeResult {
  shape: PublishedShapeName;
  modelFileBytes: number;
  parameters: number;
  loadSeconds: number;
  profile: Awaited<ReturnType<typeof modelProfileFromGguf>>;
  levels: Array<
    LevelFigures & {
      ledgerJoulesPerToken: number | null;
      ledgerEnergySources: string[];
      independentJoulesPerToken: number | null;
      independentWatts: number | null;
    }
  >;
  conservation: ReturnType<typeof conservation>;
}

async function ensureModel(shape: PublishedShapeName): Promise<string> {
  await mkdir(modelsDirectory, { recursive: true });
  const modelPath = path.join(modelsDirectory, `${shape}-f16.gguf`);
  if (!existsSync(modelPath)) {
    const started = performance.now();
    const { bytes } = await writeShapedModel(shape, modelPath);
    log(
      `${shape}: wrote ${(bytes / 2 ** 30).toFixed(2)} GiB in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
  }
  return modelPath;
}

async function runShape(shape: PublishedShapeName, counter: CounterSample[] | null): Promise<ShapeResult> {
  const modelPath = await ensureModel(shape);
  const profile = await modelProfileFromGguf(modelPath);
  log(`${shape}: ${(profile.weightBytes / 2 ** 30).toFixed(2)} GiB of weights`);

  const dataDirectory = path.join(outDirectory, `data-${shape}`);
  await mkdir(dataDirectory, { recursive: true });
  const configPath = path.join(outDirectory, `${shape}.yaml`);
  // Prompts are words of two letters, one token each, plus the chat template's (about 100 tokens with
  // the generated vocabulary, which spells the template's markers out).
  await writeFile(configPath, configYaml(shape, modelPath, promptWords + 256));
  const loadStarted = performance.now();
  const { child: server, port } = await startGravity(children, {
    name: `gravity serve (${shape})`,
    configPath,
    dataDir: dataDirectory,
    build: { dir: process.cwd(), entry: [path.resolve(options.gravity)] },
    startTimeoutMs: 600_000,
  });
  const loadSeconds = (performance.now() - loadStarted) / 1000;
  log(`${shape}: serving after ${loadSeconds.toFixed(1)} s`);
  // One request first: CUDA kernels load and graphs build on first use, not inside a measured window.
  await loadClient.run({ requests: chatRequests(port, shape, 1, 0), maxRequests: 1, detail: 'light' });
  const levelRuns = [];
  for (const concurrency of levels) {
    // A level needs its warm-up, its window and about one request's time to drain.
    if (Date.now() + warmupMs + windowMs * 1.5 > deadlineMs) {
      log(`${shape} c=${concurrency}: skipped, the run's deadline is near`);
      continue;
    }
    const run = await runLevel(port, shape, concurrency, concurrency * promptsPerLevel);
    const { figures } = run;
    log(
      `${shape} c=${concurrency}: ${figures.outputTokensPerSecond.toFixed(0)} tok/s, TTFT p50 ${figures.ttftP50Ms?.toFixed(1)} ms, ITL p50 ${figures.itlP50Ms?.toFixed(2)} ms, ${figures.failedRequests} failed`,
    );
    levelRuns.push(run);
    // Idle between levels: each level's window starts and ends with the GPU's counter in a steady state.
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  // The ledger is complete once the server has exited: its last records and replica periods are flushed.
  await children.stop(server, 30_000);

  const ledger = new SqliteLedgerStore(path.join(dataDirectory, 'ledger.sqlite'));
  const records = await ledger.records({});
  const periods = await ledger.replicaPeriods({});
  await ledger.close();
  const byId = new Map(records.map((record) => [record.requestId, record]));
  const levelsOut = levelRuns.map(({ requests, figures }) => {
    const ledgerRecords = startedIn(requests, figures.windowStartMs, figures.windowEndMs)
      .map((request) => byId.get(request.requestId))
      .filter((record) => record !== undefined);
    const joules = ledgerRecords.reduce((sum, record) => sum + record.energyJoules, 0);
    const tokens = ledgerRecords.reduce((sum, record) => sum + record.completionTokens, 0);
    const independent = counter ? counterDelta(counter, figures.windowStartMs, figures.windowEndMs) : null;
    return {
      ...figures,
      ledgerJoulesPerToken: tokens > 0 ? joules / tokens : null,
      ledgerEnergySources: [...new Set(ledgerRecords.map((record) => record.energySource))],
      independentJoulesPerToken:
        independent !== null && figures.windowTokens > 0 ? independent / figures.windowTokens : null,
      independentWatts: independent !== null ? independent / (windowMs / 1000) : null,
    };
  });
  const requestJoules = records.reduce((sum, record) => sum + record.energyJoules, 0);
  return {
    shape,
    modelFileBytes: (await stat(modelPath)).size,
    parameters: profile.parameters,
    loadSeconds,
    profile,
    levels: levelsOut,
    conservation: conservation({ requestJoules, periods, counter: counter ?? [] }),
  };
}

const startedAt = new Date().toISOString();
await mkdir(outDirectory, { recursive: true });
if (options.generateOnly) {
  for (const shape of shapes) await ensureModel(shape);
  process.exit(0);
}
const counter = options.counter !== '' ? startCounter(options.counter) : null;
const loadClient = new LoadClient();
// Every gravity serve this run starts: none outlives it, however it ends.
const children = new ChildProcessGroup();
const results: ShapeResult[] = [];
const writeResults = () =>
  writeFile(
    path.join(outDirectory, 'gpu-results.json'),
    `${JSON.stringify(
      {
        command: process.argv.slice(1).join(' '),
        settings: {
          levels,
          windowMs,
          warmupMs,
          promptWords,
          maxTokens,
          slots,
          device: options.device,
          energy: options.energy,
        },
        startedAt,
        results,
      },
      null,
      2,
    )}\n`,
  );
try {
  for (const shape of shapes) {
    if (Date.now() + 60_000 > deadlineMs) {
      log(`${shape}: skipped, the run's deadline is near`);
      continue;
    }
    const result = await runShape(shape, counter?.samples ?? null);
    results.push(result);
    // Written after each shape, so a run cut short by its time limit still returns what it measured.
    await writeResults();
    const { relativeError } = result.conservation;
    log(
      `${shape}: ledger requests ${result.conservation.requestJoules.toFixed(0)} J + idle ${result.conservation.idleJoules.toFixed(0)} J vs counter ${result.conservation.independentJoules?.toFixed(0) ?? 'not read'} J (${relativeError === null ? 'n/a' : `${(relativeError * 100).toFixed(2)}%`})`,
    );
  }
} finally {
  counter?.stop();
  await loadClient.close();
  await children.stopAll(5_000);
  children.dispose();
}
await writeResults();
log(`wrote ${path.join(outDirectory, 'gpu-results.json')}`);
