// The GPU run (bench/gpu/README.md): for each published model shape, generates a random-weight F16 GGUF
// with Gravity's own writer, serves it through `gravity serve` (llama.cpp in process, every layer on the
// GPU, energy `measured:nvml`), drives closed-loop streamed chat at each concurrency, and writes what it
// measured: client-side tokens/s, TTFT and inter-token latency, the ledger's joules per token, NVML's
// counter read independently (bench/gpu/nvml-sampler.py) over the same windows, and the conservation of
// ledger joules against that counter. The performance model's predictions are added afterwards, off
// the GPU, by compare-model.ts.
//
//   node gpu-bench.mjs --gravity dist/cli/main.js --out results/ [--device cuda] [--energy nvml]
//     [--shapes llama-3.1-8b,llama-3.2-1b] [--concurrency 1,4,16,64] [--window-s 12] [--warmup-s 3]
//     [--prompt-words 256] [--max-tokens 256] [--counter "python3 bench/gpu/nvml-sampler.py 0 10"]

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import {
  type PublishedShapeName,
  publishedShapeNames,
  writeShapedModel,
} from '../../src/engines/llama-cpp/shaped-model.js';
import { SqliteLedgerStore } from '../../src/metering/ledger/sqlite-ledger-store.js';
import { modelProfileFromGguf } from '../../src/performance-model/model-profiles.js';
import {
  type ClientRequest,
  type CounterSample,
  conservation,
  counterDelta,
  type LevelFigures,
  levelFigures,
} from './run-analysis.js';

const { values: options } = parseArgs({
  options: {
    gravity: { type: 'string', default: 'dist/cli/main.js' },
    out: { type: 'string', default: 'scratch/gpu-results' },
    models: { type: 'string' },
    device: { type: 'string', default: 'cuda' },
    energy: { type: 'string', default: 'nvml' },
    // The 8B first: if the device call's time runs short, the model users run most is the one measured.
    shapes: { type: 'string', default: 'llama-3.1-8b,llama-3.2-1b' },
    concurrency: { type: 'string', default: '1,4,16,64' },
    'window-s': { type: 'string', default: '12' },
    'warmup-s': { type: 'string', default: '3' },
    'prompt-words': { type: 'string', default: '256' },
    'max-tokens': { type: 'string', default: '256' },
    threads: { type: 'string', default: '4' },
    port: { type: 'string', default: '18080' },
    counter: { type: 'string' },
    /** Write the models and stop (the device script does this while llama.cpp compiles). */
    'generate-only': { type: 'boolean', default: false },
    /** Epoch seconds after which no level starts: the device call's time limit, less the copy-out. */
    deadline: { type: 'string' },
  },
});

const outDirectory = path.resolve(options.out);
const modelsDirectory = path.resolve(options.models ?? path.join(outDirectory, 'models'));
const shapes = options.shapes.split(',') as PublishedShapeName[];
for (const shape of shapes)
  if (!publishedShapeNames.includes(shape))
    throw new Error(`unknown shape ${shape} (${publishedShapeNames.join(', ')})`);
const levels = options.concurrency.split(',').map(Number);
const windowMs = Number(options['window-s']) * 1000;
const warmupMs = Number(options['warmup-s']) * 1000;
const promptWords = Number(options['prompt-words']);
const maxTokens = Number(options['max-tokens']);
const port = Number(options.port);
const baseUrl = `http://127.0.0.1:${port}`;
const slots = Math.max(...levels);
const deadlineMs = options.deadline ? Number(options.deadline) * 1000 : Number.POSITIVE_INFINITY;

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

async function streamOne(model: string, seed: number): Promise<ClientRequest> {
  const startMs = Date.now();
  const tokenTimesMs: number[] = [];
  const response = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      messages: [{ role: 'user', content: promptText(promptWords, seed) }],
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  const requestId = response.headers.get('x-request-id') ?? '';
  let promptTokens: number | null = null;
  let completionTokens: number | null = null;
  let errorBody: string | undefined;
  if (response.ok && response.body) {
    let buffered = '';
    for await (const bytes of response.body as AsyncIterable<Uint8Array>) {
      const now = Date.now();
      buffered += Buffer.from(bytes).toString('utf8');
      let boundary = buffered.indexOf('\n\n');
      while (boundary >= 0) {
        const event = buffered.slice(0, boundary);
        buffered = buffered.slice(boundary + 2);
        boundary = buffered.indexOf('\n\n');
        const data = event.startsWith('data: ') ? event.slice(6) : '';
        if (data === '' || data === '[DONE]') continue;
        const chunk = JSON.parse(data) as {
          choices?: Array<{ delta?: { content?: string } }>;
          usage?: { prompt_tokens: number; completion_tokens: number } | null;
        };
        if (chunk.choices?.[0]?.delta?.content) tokenTimesMs.push(now);
        if (chunk.usage) {
          promptTokens = chunk.usage.prompt_tokens;
          completionTokens = chunk.usage.completion_tokens;
        }
      }
    }
  } else {
    errorBody = (await response.text()).slice(0, 500);
  }
  return {
    requestId,
    startMs,
    tokenTimesMs,
    endMs: Date.now(),
    promptTokens,
    completionTokens,
    status: response.status,
    ...(errorBody !== undefined && { errorBody }),
  };
}

/**
 * `concurrency` clients, each sending its next request when its last one ends. The steady window opens
 * after the warm-up and closes `windowMs` later; clients start no request after it closes, and the level
 * ends when the last one finishes.
 */
async function runLevel(model: string, concurrency: number, seedBase: number) {
  const startMs = Date.now();
  const windowStartMs = startMs + warmupMs;
  const windowEndMs = windowStartMs + windowMs;
  const requests: ClientRequest[] = [];
  let seed = seedBase;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < windowEndMs) {
        const request = await streamOne(model, seed++);
        requests.push(request);
        // A setting that fails every request would otherwise spin for the whole window.
        if (request.status !== 200 && requests.filter((each) => each.status !== 200).length > 10)
          throw new Error(`requests fail at c=${concurrency}: ${request.status} ${request.errorBody}`);
      }
    }),
  );
  return { requests, figures: levelFigures(concurrency, requests, windowStartMs, windowEndMs) };
}

async function waitUntilReady(child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`gravity serve exited with ${child.exitCode} while starting`);
    const ready = await fetch(`${baseUrl}/readyz`)
      .then((response) => response.ok)
      .catch(() => false);
    if (ready) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`gravity serve not ready within ${timeoutMs / 1000} s`);
}

function configYaml(shape: string, modelPath: string, dataDirectory: string, promptTokens: number): string {
  return `server: { host: 127.0.0.1, port: ${port}, logLevel: warn }
dataDir: ${JSON.stringify(dataDirectory)}
engines:
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
  generateSeconds: number;
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
  const generateStarted = performance.now();
  const modelPath = await ensureModel(shape);
  const generateSeconds = (performance.now() - generateStarted) / 1000;
  const profile = await modelProfileFromGguf(modelPath);
  log(
    `${shape}: ${(profile.weightBytes / 2 ** 30).toFixed(2)} GiB of weights, generated in ${generateSeconds.toFixed(1)} s`,
  );

  const dataDirectory = path.join(outDirectory, `data-${shape}`);
  await mkdir(dataDirectory, { recursive: true });
  const configPath = path.join(outDirectory, `${shape}.yaml`);
  // Prompts are words of two letters, one token each, plus the chat template's (about 100 tokens with
  // the generated vocabulary, which spells the template's markers out).
  await writeFile(configPath, configYaml(shape, modelPath, dataDirectory, promptWords + 256));
  const loadStarted = performance.now();
  const server = spawn(process.execPath, [options.gravity, 'serve', '--config', configPath], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => server.once('exit', resolve));
  try {
    await waitUntilReady(server, 600_000);
    const loadSeconds = (performance.now() - loadStarted) / 1000;
    log(`${shape}: serving after ${loadSeconds.toFixed(1)} s`);
    // One request first: CUDA kernels load and graphs build on first use, not inside a measured window.
    await streamOne(shape, 0);
    const levelRuns = [];
    for (const concurrency of levels) {
      // A level needs its warm-up, its window and about one request's time to drain.
      if (Date.now() + warmupMs + windowMs * 1.5 > deadlineMs) {
        log(`${shape} c=${concurrency}: skipped, the run's deadline is near`);
        continue;
      }
      const run = await runLevel(shape, concurrency, concurrency * 100_000);
      const { figures } = run;
      log(
        `${shape} c=${concurrency}: ${figures.outputTokensPerSecond.toFixed(0)} tok/s, TTFT p50 ${figures.ttftP50Ms?.toFixed(1)} ms, ITL p50 ${figures.itlP50Ms?.toFixed(2)} ms, ${figures.failedRequests} failed`,
      );
      levelRuns.push(run);
      // Idle between levels: each level's window starts and ends with the GPU's counter in a steady state.
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
    server.kill('SIGTERM');
    await exited;

    // The ledger is complete once the server has exited: its last records and replica periods are flushed.
    const ledger = new SqliteLedgerStore(path.join(dataDirectory, 'ledger.sqlite'));
    const records = await ledger.records({});
    const periods = await ledger.replicaPeriods({});
    await ledger.close();
    const byId = new Map(records.map((record) => [record.requestId, record]));
    const levelsOut = levelRuns.map(({ requests, figures }) => {
      const inWindow = requests.filter(
        (request) => request.startMs >= figures.windowStartMs && request.startMs < figures.windowEndMs,
      );
      const ledgerRecords = inWindow
        .map((request) => byId.get(request.requestId))
        .filter((record) => record !== undefined);
      const joules = ledgerRecords.reduce((sum, record) => sum + record.energyJoules, 0);
      const tokens = ledgerRecords.reduce((sum, record) => sum + record.completionTokens, 0);
      const windowTokens = (figures.outputTokensPerSecond * windowMs) / 1000;
      const independent = counter ? counterDelta(counter, figures.windowStartMs, figures.windowEndMs) : null;
      return {
        ...figures,
        ledgerJoulesPerToken: tokens > 0 ? joules / tokens : null,
        ledgerEnergySources: [...new Set(ledgerRecords.map((record) => record.energySource))],
        independentJoulesPerToken:
          independent !== null && windowTokens > 0 ? independent / windowTokens : null,
        independentWatts: independent !== null ? independent / (windowMs / 1000) : null,
      };
    });
    const requestJoules = records.reduce((sum, record) => sum + record.energyJoules, 0);
    return {
      shape,
      modelFileBytes: (await stat(modelPath)).size,
      parameters: profile.parameters,
      generateSeconds,
      loadSeconds,
      profile,
      levels: levelsOut,
      conservation: conservation({ requestJoules, periods, counter: counter ?? [] }),
    };
  } finally {
    if (server.exitCode === null) {
      server.kill('SIGKILL');
      await exited;
    }
  }
}

const startedAt = new Date().toISOString();
await mkdir(outDirectory, { recursive: true });
if (options['generate-only']) {
  for (const shape of shapes) await ensureModel(shape);
  process.exit(0);
}
const counter = options.counter ? startCounter(options.counter) : null;
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
}
await writeResults();
log(`wrote ${path.join(outDirectory, 'gpu-results.json')}`);
