// Embeddings throughput: inputs embedded per second by node-llama-cpp's embedding context called
// directly (in-process) against through Gravity's POST /v1/embeddings with the in-process llama-cpp
// engine on the same model (float and base64 answers), at batch sizes 1, 16 and 64 inputs per request,
// in alternating rounds of one run. The HTTP client runs on a worker thread
// (embeddings-client-worker.mjs). Run with `npm run bench:embeddings -- --help`.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { getLlama, type LlamaEmbeddingContext, LlamaLogLevel, type LlamaModel } from 'node-llama-cpp';
import { loadConfig } from '../../src/config/load-config.js';
import { medianOf } from '../../src/core/quantile.js';
import { ensureTinyModel, tinyModelIds } from '../../src/engines/llama-cpp/tiny-model.js';
import { type GravityServer, startGravityServer } from '../../src/server/gravity-server.js';
import { alternatingRounds, compare, repoRoot } from '../support/ab-rounds.js';
import {
  columnsTable,
  fixed,
  integer,
  integers,
  printPreamble,
  readOptions,
  text,
} from '../support/report-format.js';

const engineId = 'embeddings-bench';
const modelId = 'bench-embeddings';
const contextTokens = 512;

const options = readOptions(
  'bench:embeddings',
  'Embedding inputs per second: node-llama-cpp in-process against Gravity /v1/embeddings, by batch size.',
  {
    batchSizes: integers([1, 16, 64], 'inputs per request'),
    inputs: integer(256, 'inputs embedded per path and batch size in each round', { quick: 64 }),
    words: integer(24, 'one-letter words per input (one token each, plus BOS)', { quick: 8 }),
    rounds: integer(5, 'measured rounds', { quick: 1 }),
    warmup: integer(1, 'unmeasured rounds first', { quick: 1, min: 0 }),
    threads: integer(1, 'llama.cpp threads of each embedding context'),
    model: text('', 'a GGUF file to embed with (default: the generated gravity-tiny-random model)'),
  },
  (options) => {
    if (options.batchSizes.some((size) => options.inputs % size !== 0))
      throw new Error('--inputs must be a multiple of every batch size');
    if (options.words + 2 >= contextTokens) throw new Error(`--words: at most ${contextTokens - 3}`);
  },
);

/** Deterministic inputs of one-letter words; every input differs from the others of its round. */
function inputsFor(round: number, count: number): string[] {
  return Array.from({ length: count }, (_, item) => {
    let state = (round * 7919 + item * 104_729 + 1) >>> 0;
    const words: string[] = [];
    while (words.length < options.words) {
      state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
      words.push(String.fromCharCode(0x61 + ((state >>> 16) % 26)));
    }
    return words.join(' ');
  });
}

interface Variant {
  name: string;
  path: 'in-process' | 'HTTP float' | 'HTTP base64';
  batchSize: number;
}

/** Runs one HTTP measurement on the client worker. */
function httpRun(worker: Worker, url: string, bodies: string[], inputsPerBody: number) {
  return new Promise<{ wallMs: number; vectors: number }>((resolve, reject) => {
    worker.once('message', (message: { type: string; wallMs: number; vectors: number; message?: string }) => {
      if (message.type === 'done') resolve(message);
      else reject(new Error(message.message));
    });
    worker.postMessage({ url, bodies, inputsPerBody });
  });
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-bench-'));
  const worker = new Worker(new URL('./embeddings-client-worker.mjs', import.meta.url));
  let server: GravityServer | undefined;
  let model: LlamaModel | undefined;
  let context: LlamaEmbeddingContext | undefined;
  try {
    const modelPath = options.model || (await ensureTinyModel('random', path.join(dataDir, 'models')));
    const modelName = options.model ? path.basename(options.model) : `${tinyModelIds.random} (generated)`;
    // Both paths load the same file with the same context settings: one embedding context, one input
    // at a time, the whole input in one batch.
    const config = loadConfig(
      {
        document: {
          engines: {
            [engineId]: {
              type: 'llama-cpp',
              model: { path: modelPath },
              contextTokens,
              slots: 1,
              threads: options.threads,
              embeddingContexts: 1,
            },
          },
          models: { [modelId]: { engine: engineId } },
        },
        port: 0,
        host: '127.0.0.1',
        dataDir,
        logLevel: 'warn',
      },
      {},
    );
    server = await startGravityServer(config);
    const llama = await getLlama({
      gpu: false,
      build: 'never',
      logLevel: LlamaLogLevel.error,
      progressLogs: false,
    });
    model = await llama.loadModel({ modelPath });
    context = await model.createEmbeddingContext({
      contextSize: contextTokens,
      batchSize: contextTokens,
      threads: options.threads,
    });
    const inProcess = context;
    const url = `${server.url}/v1/embeddings`;
    const llamaVersion = JSON.parse(
      await readFile(path.join(repoRoot, 'node_modules/node-llama-cpp/package.json'), 'utf8'),
    );
    printPreamble('Gravity embeddings throughput', 'bench:embeddings', [
      `runtime:  node-llama-cpp ${llamaVersion.version} (CPU); model ${modelName}; inputs of ${options.words} one-letter ` +
        `words (${options.words + 1} tokens with BOS); ${options.inputs} inputs per path and batch size per round`,
      `engine:   one embedding context each side (${contextTokens}-token window and batch, ${options.threads} thread(s)), ` +
        'one input at a time; the two paths never run at once',
      `in-proc:  LlamaEmbeddingContext.getEmbeddingFor per input, called directly (raw vectors, no normalisation)`,
      `http:     POST ${url}, one request in flight, fetch from a worker thread; float and base64 answers`,
      `method:   ${options.warmup} warm-up round(s), then ${options.rounds} rounds, every path and batch size once per ` +
        'round in rotating order; inputs/s = inputs / wall time; ratios = median over rounds of the ratio within the round',
    ]);

    const variants: Variant[] = options.batchSizes.flatMap((batchSize) => [
      { name: `in-process ${batchSize}`, path: 'in-process' as const, batchSize },
      { name: `HTTP float ${batchSize}`, path: 'HTTP float' as const, batchSize },
      { name: `HTTP base64 ${batchSize}`, path: 'HTTP base64' as const, batchSize },
    ]);
    const results = await alternatingRounds<Variant, number>({
      variants,
      rounds: options.rounds,
      warmUpRounds: options.warmup,
      measure: async (variant, round) => {
        const inputs = inputsFor(round + options.warmup, options.inputs);
        if (variant.path === 'in-process') {
          const startedAt = performance.now();
          for (const input of inputs) {
            const embedding = await inProcess.getEmbeddingFor(input);
            if (embedding.vector.length === 0) throw new Error('in-process: an empty vector');
          }
          return options.inputs / ((performance.now() - startedAt) / 1000);
        }
        const encodingFormat = variant.path === 'HTTP float' ? 'float' : 'base64';
        const bodies: string[] = [];
        for (let start = 0; start < inputs.length; start += variant.batchSize)
          bodies.push(
            JSON.stringify({
              model: modelId,
              input: inputs.slice(start, start + variant.batchSize),
              encoding_format: encodingFormat,
            }),
          );
        const run = await httpRun(worker, url, bodies, variant.batchSize);
        if (run.vectors !== options.inputs) throw new Error(`${variant.name}: ${run.vectors} vectors`);
        return options.inputs / (run.wallMs / 1000);
      },
    });

    console.log('each round (inputs/s):');
    for (const [name, rounds] of results)
      console.log(`  ${name.padEnd(16)} ${rounds.map((value) => value.toFixed(0)).join(' ')}`);
    const ratioTo = (name: string, baseline: string) =>
      compare(results, baseline).find((row) => row.variant === name)?.pairedRatio ?? null;
    const percent = (value: number | null) => (value === null ? '–' : `${(value * 100).toFixed(1)}%`);
    const rows = options.batchSizes.map((batchSize) => ({
      batchSize,
      inProcess: medianOf(results.get(`in-process ${batchSize}`) ?? []),
      httpFloat: medianOf(results.get(`HTTP float ${batchSize}`) ?? []),
      httpBase64: medianOf(results.get(`HTTP base64 ${batchSize}`) ?? []),
      floatRatio: ratioTo(`HTTP float ${batchSize}`, `in-process ${batchSize}`),
      base64Ratio: ratioTo(`HTTP base64 ${batchSize}`, `in-process ${batchSize}`),
    }));
    console.log(
      `\n${columnsTable(rows, [
        ['inputs per request', (row) => String(row.batchSize)],
        ['in-process inputs/s', (row) => fixed(row.inProcess)],
        ['HTTP float inputs/s', (row) => fixed(row.httpFloat)],
        ['HTTP base64 inputs/s', (row) => fixed(row.httpBase64)],
        ['HTTP float / in-process', (row) => percent(row.floatRatio)],
        ['HTTP base64 / in-process', (row) => percent(row.base64Ratio)],
      ])}\n`,
    );
  } finally {
    await worker.terminate();
    await server?.close();
    await context?.dispose();
    await model?.dispose();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
