// Engine throughput: aggregate completion tokens per second at 1, 2, 4 and 8 concurrent streams, through
// the HTTP API and through the llama.cpp engine called in-process, measured in one run so the two paths
// can be compared on the same machine state. Run with `npm run bench:engine -- --help`.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { loadConfig } from '../../src/config/load-config.js';
import type { GenerationRequest } from '../../src/engines/engine-adapter.js';
import { LlamaCppEngine } from '../../src/engines/llama-cpp/llama-cpp-engine.js';
import { ensureTinyModel, tinyModelIds } from '../../src/engines/llama-cpp/tiny-model.js';
import { type GravityServer, startGravityServer } from '../../src/server/gravity-server.js';
import { describeMachine, formatTable, median } from '../support/report-format.js';

const modelId = tinyModelIds.random;
const engineId = 'tiny-random';
const slots = 8;
const contextTokens = 1024;
const promptWords = 24;
const httpToInProcessTarget = 0.9;
const fourStreamScalingTarget = 1.5;

type PathName = 'in-process' | 'http';

interface StreamResult {
  completionTokens: number;
  cachedPromptTokens: number;
  /** From the request being sent to the first text arriving. */
  firstTextMs: number;
}

interface RoundResult {
  wallMs: number;
  completionTokens: number;
  tokensPerSecond: number;
  cachedPromptTokens: number;
  meanFirstTextMs: number;
  /** Share of the wall time the main thread (engine JS, server and client) was busy; 1 = JS-bound. */
  eventLoopBusy: number;
  /** Process CPU time (all threads, llama.cpp's included) per wall second, in cores. */
  cpuCores: number;
}

interface PathResult {
  medianTokensPerSecond: number;
  /** Median over passes of this level's tok/s / the 1-stream tok/s of the same pass; null without level 1. */
  scalingVsOneStream: number | null;
  /** One per measured pass, in order. */
  rounds: RoundResult[];
}

interface LevelResult {
  concurrency: number;
  inProcess: PathResult;
  http: PathResult;
  /** Median over passes of HTTP tok/s / in-process tok/s, the two rounds of one pass run back to back. */
  httpToInProcess: number;
}

const usage = `Usage: npm run bench:engine -- [options]

  --tokens <n>        completion tokens per stream (default 256)
  --rounds <n>        measured rounds per concurrency level and path (default 9)
  --warmup <n>        unmeasured passes over every level and path first (default 2)
  --threads <n>       llama.cpp threads of each engine context (default 1)
  --concurrency <list> comma-separated stream counts (default 1,2,4,8; at most ${slots})
  --json <file>       also write the results as JSON
  --help              print this`;

function positiveInteger(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`--${name}: expected a positive integer, got '${text}'`);
  return value;
}

function nonNegativeInteger(name: string, text: string): number {
  return text === '0' ? 0 : positiveInteger(name, text);
}

function parseOptions() {
  const { values } = parseArgs({
    options: {
      tokens: { type: 'string', default: '256' },
      rounds: { type: 'string', default: '9' },
      warmup: { type: 'string', default: '2' },
      threads: { type: 'string', default: '1' },
      concurrency: { type: 'string', default: '1,2,4,8' },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const concurrencyLevels = values.concurrency.split(',').map((item) => positiveInteger('concurrency', item));
  // More streams than slots would queue, measuring waiting rather than batching.
  if (concurrencyLevels.some((level) => level > slots))
    throw new Error(`--concurrency: at most ${slots} streams (the engine has ${slots} slots)`);
  const tokensPerStream = positiveInteger('tokens', values.tokens);
  // The prompt (BOS + words) and the completion must fit one slot's context.
  if (tokensPerStream + promptWords + 1 >= contextTokens)
    throw new Error(
      `--tokens: at most ${contextTokens - promptWords - 2} with a ${contextTokens}-token context`,
    );
  return {
    tokensPerStream,
    rounds: positiveInteger('rounds', values.rounds),
    warmUpPasses: nonNegativeInteger('warmup', values.warmup),
    threads: positiveInteger('threads', values.threads),
    concurrencyLevels,
    jsonPath: values.json,
  };
}

/**
 * Deterministic prompt of single-letter words (each one token in the generated vocabulary). The first word
 * differs between the streams of a round, so no stream can reuse another's KV cache beyond BOS.
 */
function promptFor(roundId: number, stream: number, concurrency: number): string {
  let state = (roundId * 7919 + stream * 104_729 + 1) >>> 0;
  const words = [String.fromCharCode(0x61 + ((roundId * concurrency + stream) % 26))];
  while (words.length < promptWords) {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    words.push(String.fromCharCode(0x61 + ((state >>> 16) % 26)));
  }
  return words.join(' ');
}

function generationRequest(prompt: string, tokensPerStream: number, requestId: string): GenerationRequest {
  // The same fields the API's parser produces for the HTTP body below.
  return {
    requestId,
    model: modelId,
    input: { kind: 'completion', prompt },
    maxTokens: tokensPerStream,
    temperature: 0,
    topP: 1,
    seed: null,
    stop: [],
    user: null,
  };
}

async function streamInProcess(
  engine: LlamaCppEngine,
  prompt: string,
  tokensPerStream: number,
  requestId: string,
): Promise<StreamResult> {
  const sentAt = performance.now();
  let firstTextMs = Number.NaN;
  const signal = new AbortController().signal;
  for await (const part of engine.generate(generationRequest(prompt, tokensPerStream, requestId), signal)) {
    if (part.type === 'text-delta' && Number.isNaN(firstTextMs)) firstTextMs = performance.now() - sentAt;
    if (part.type === 'finish') {
      return {
        completionTokens: part.usage.completionTokens,
        cachedPromptTokens: part.usage.cachedPromptTokens,
        firstTextMs,
      };
    }
  }
  throw new Error('in-process stream ended without a finish part');
}

/** Starts every stream at once; aggregate throughput = all tokens / (first request sent → last stream done). */
async function runRound(
  concurrency: number,
  tokensPerStream: number,
  roundId: number,
  stream: (prompt: string, index: number) => Promise<StreamResult>,
): Promise<RoundResult> {
  const prompts = Array.from({ length: concurrency }, (_, index) => promptFor(roundId, index, concurrency));
  const startedAt = performance.now();
  const loopBefore = performance.eventLoopUtilization();
  const cpuBefore = process.cpuUsage();
  const results = await Promise.all(prompts.map((prompt, index) => stream(prompt, index)));
  const wallMs = performance.now() - startedAt;
  const eventLoopBusy = performance.eventLoopUtilization(loopBefore).utilization;
  const cpu = process.cpuUsage(cpuBefore);
  const short = results.find((result) => result.completionTokens !== tokensPerStream);
  // The generated model never emits EOS, so a short stream means something is wrong, not a fast model.
  if (short)
    throw new Error(`a stream produced ${short.completionTokens} tokens, expected ${tokensPerStream}`);
  const completionTokens = results.reduce((sum, result) => sum + result.completionTokens, 0);
  return {
    wallMs,
    completionTokens,
    tokensPerSecond: completionTokens / (wallMs / 1000),
    cachedPromptTokens: results.reduce((sum, result) => sum + result.cachedPromptTokens, 0),
    meanFirstTextMs: results.reduce((sum, result) => sum + result.firstTextMs, 0) / results.length,
    eventLoopBusy,
    cpuCores: (cpu.user + cpu.system) / 1000 / wallMs,
  };
}

/** The HTTP load generator on a worker thread (bench/engine/sse-client-worker.mjs), one round at a time. */
class WorkerHttpClient {
  private readonly worker = new Worker(new URL('./sse-client-worker.mjs', import.meta.url));

  run(request: {
    baseUrl: string;
    model: string;
    prompts: string[];
    tokensPerStream: number;
  }): Promise<StreamResult[]> {
    return new Promise((resolve, reject) => {
      this.worker.once('message', (message: { results?: StreamResult[]; error?: string }) => {
        if (message.results) resolve(message.results);
        else reject(new Error(message.error ?? 'worker failed'));
      });
      this.worker.postMessage(request);
    });
  }

  close(): Promise<number> {
    return this.worker.terminate();
  }
}

/** Like runRound, for a client that runs all streams of a round itself (the worker). */
async function runRoundBatch(
  concurrency: number,
  tokensPerStream: number,
  roundId: number,
  runAll: (prompts: string[]) => Promise<StreamResult[]>,
): Promise<RoundResult> {
  const prompts = Array.from({ length: concurrency }, (_, index) => promptFor(roundId, index, concurrency));
  let batch: Promise<StreamResult[]> | undefined;
  const result = await runRound(concurrency, tokensPerStream, roundId, (_prompt, index) => {
    batch ??= runAll(prompts);
    return batch.then((results) => results[index] as StreamResult);
  });
  return result;
}

async function readNodeLlamaCppVersion(): Promise<string> {
  const packagePath = fileURLToPath(
    new URL('../../node_modules/node-llama-cpp/package.json', import.meta.url),
  );
  return (JSON.parse(await readFile(packagePath, 'utf8')) as { version: string }).version;
}

async function main(): Promise<void> {
  let options: ReturnType<typeof parseOptions>;
  try {
    options = parseOptions();
  } catch (error) {
    // A usage mistake needs the message and the options, not a stack trace.
    console.error(`${(error as Error).message}\n\n${usage}`);
    process.exitCode = 2;
    return;
  }
  const { tokensPerStream, rounds, warmUpPasses, threads, concurrencyLevels } = options;
  const command = [
    'npm run bench:engine --',
    `--tokens ${tokensPerStream}`,
    `--rounds ${rounds}`,
    `--warmup ${warmUpPasses}`,
    `--threads ${threads}`,
    `--concurrency ${concurrencyLevels.join(',')}`,
    ...(options.jsonPath ? [`--json ${options.jsonPath}`] : []),
  ].join(' ');
  const machine = describeMachine();
  const nodeLlamaCppVersion = await readNodeLlamaCppVersion();

  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-bench-'));
  let server: GravityServer | undefined;
  let engine: LlamaCppEngine | undefined;
  let httpClient: WorkerHttpClient | undefined;
  try {
    // The server gets the embedded config for the generated random model, sized like the in-process engine.
    const config = loadConfig(
      { port: 0, host: '127.0.0.1', dataDir, logLevel: 'warn', slots, threads, contextTokens },
      {},
    );
    for (const [id, model] of Object.entries(config.models))
      if (model.engine !== engineId) delete config.models[id];
    for (const id of Object.keys(config.engines)) if (id !== engineId) delete config.engines[id];
    const engineConfig = config.engines[engineId];
    if (engineConfig?.type !== 'llama-cpp')
      throw new Error(`the embedded config has no '${engineId}' engine`);

    // Same file the server's engine registry writes (dataDir/models), so both paths load identical bytes.
    const modelPath = await ensureTinyModel('random', path.join(dataDir, 'models'));
    engine = new LlamaCppEngine({
      id: 'bench-in-process',
      modelId,
      modelPath,
      contextTokens: engineConfig.contextTokens,
      slots: engineConfig.slots,
      threads: engineConfig.threads,
      batchSize: engineConfig.batchSize,
    });
    await engine.start();
    server = await startGravityServer(config);
    const inProcessEngine = engine;
    const baseUrl = server.url;
    const workerClient = new WorkerHttpClient();
    httpClient = workerClient;

    console.log('Gravity engine throughput');
    console.log(`command:  ${command}`);
    console.log(
      `machine:  ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.platform}`,
    );
    console.log(`runtime:  Node ${process.version}, node-llama-cpp ${nodeLlamaCppVersion} (CPU)`);
    console.log(
      `model:    ${modelId} (generated), completion prompt of ${promptWords} words, greedy (temperature 0), ` +
        `${tokensPerStream} tokens per stream`,
    );
    console.log(
      `engine:   llama-cpp, ${engineConfig.slots} slots, ${engineConfig.threads} thread(s), ` +
        `${engineConfig.contextTokens}-token context, batch ${engineConfig.batchSize}; one engine per path, ` +
        'never both running at once',
    );
    console.log(
      `method:   ${warmUpPasses} warm-up pass(es), then median of ${rounds} measured rounds per level and path; ` +
        'levels interleaved, paths alternating (order flipped every pass); ' +
        'aggregate tok/s = completion tokens of all streams / wall time from first request to last finish; ' +
        'ratio columns = median over passes of the ratio of rounds in the same pass',
    );
    console.log(
      `http:     streaming POST ${baseUrl}/v1/completions (include_usage) with fetch; the client runs ` +
        'on a worker thread, as a remote client would run outside the server, so its SSE parsing is not charged to Gravity',
    );
    console.log(
      'server:   built-in config but for the settings above, port 0, log level warn; metering ' +
        (config.metering.enabled ? 'on' : 'off'),
    );
    console.log('');

    const inProcessRound = (concurrency: number, id: number) =>
      runRound(concurrency, tokensPerStream, id, (prompt, index) =>
        streamInProcess(inProcessEngine, prompt, tokensPerStream, `bench-${id}-${index}`),
      );
    const httpRound = (concurrency: number, id: number) =>
      runRoundBatch(concurrency, tokensPerStream, id, (prompts) =>
        workerClient.run({ baseUrl, model: modelId, prompts, tokensPerStream }),
      );

    // One pass = every level on both paths. Levels are interleaved within a pass, not measured one after
    // the other, because in trials throughput kept rising over the first ~8 rounds of a process: measured
    // level by level, 1 stream ran coldest and inflated the scaling ratios. The path order flips every pass
    // so neither path always runs right after the other.
    const samples = new Map(
      concurrencyLevels.map((level) => [
        level,
        { inProcess: [] as RoundResult[], http: [] as RoundResult[] },
      ]),
    );
    let roundId = 0;
    for (let pass = 0; pass < warmUpPasses + rounds; pass++) {
      const measured = pass >= warmUpPasses;
      for (const concurrency of concurrencyLevels) {
        // Same prompts for both paths within a pass.
        const id = roundId++;
        const order: PathName[] = pass % 2 === 0 ? ['in-process', 'http'] : ['http', 'in-process'];
        for (const pathName of order) {
          const result =
            pathName === 'http' ? await httpRound(concurrency, id) : await inProcessRound(concurrency, id);
          const sample = samples.get(concurrency)!;
          if (measured) (pathName === 'http' ? sample.http : sample.inProcess).push(result);
        }
      }
    }
    // Ratios are taken within a pass, then the median: rounds minutes apart can differ by 2x on a shared VM
    // (seen here), while rounds seconds apart mostly see the same machine state, so pairing cancels it.
    const pairedRatio = (numerators: RoundResult[], denominators: RoundResult[]) =>
      median(numerators.map((round, pass) => round.tokensPerSecond / denominators[pass]!.tokensPerSecond));
    const single = samples.get(1);
    const pathResult = (rounds: RoundResult[], singleRounds: RoundResult[] | undefined): PathResult => ({
      medianTokensPerSecond: median(rounds.map((round) => round.tokensPerSecond)),
      scalingVsOneStream: singleRounds ? pairedRatio(rounds, singleRounds) : null,
      rounds,
    });
    const levels: LevelResult[] = concurrencyLevels.map((concurrency) => {
      const sample = samples.get(concurrency)!;
      return {
        concurrency,
        inProcess: pathResult(sample.inProcess, single?.inProcess),
        http: pathResult(sample.http, single?.http),
        httpToInProcess: pairedRatio(sample.http, sample.inProcess),
      };
    });
    // Per-round figures show the noise behind each median, and whether the main thread was the bottleneck.
    const perRound = (list: RoundResult[]) =>
      `${list.map((round) => round.tokensPerSecond.toFixed(0)).join(' ')} tok/s, event loop ` +
      `${(median(list.map((round) => round.eventLoopBusy)) * 100).toFixed(0)}% busy, ` +
      `${median(list.map((round) => round.cpuCores)).toFixed(2)} cores`;
    console.log('each measured round (event loop busy and CPU cores are medians):');
    for (const level of levels) {
      const label = `${level.concurrency} stream(s)`.padEnd(12);
      console.log(`  ${label} in-process ${perRound(level.inProcess.rounds)}`);
      console.log(`  ${''.padEnd(12)} HTTP       ${perRound(level.http.rounds)}`);
    }

    const times = (value: number | null) => (value === null ? 'n/a' : `${value.toFixed(2)}x`);
    const rows = levels.map((level) => [
      String(level.concurrency),
      level.inProcess.medianTokensPerSecond.toFixed(0),
      level.http.medianTokensPerSecond.toFixed(0),
      `${(level.httpToInProcess * 100).toFixed(1)}%`,
      times(level.inProcess.scalingVsOneStream),
      times(level.http.scalingVsOneStream),
    ]);
    console.log('');
    console.log(
      formatTable(
        [
          'concurrency',
          'in-process tok/s',
          'HTTP tok/s',
          'HTTP/in-process',
          'scaling vs 1 (in-process)',
          'scaling vs 1 (HTTP)',
        ],
        rows,
      ),
    );

    const targets: Array<{
      target: string;
      value: number | null;
      threshold: number;
      pass: boolean | null;
      shown: string;
    }> = [];
    for (const level of levels) {
      const ratio = level.httpToInProcess;
      targets.push({
        target: `HTTP keeps >= ${httpToInProcessTarget * 100}% of in-process throughput at ${level.concurrency} stream(s)`,
        value: ratio,
        threshold: httpToInProcessTarget,
        pass: ratio >= httpToInProcessTarget,
        shown: `${(ratio * 100).toFixed(1)}%`,
      });
    }
    const four = levels.find((level) => level.concurrency === 4);
    for (const pathName of ['in-process', 'http'] as PathName[]) {
      const value = (pathName === 'http' ? four?.http : four?.inProcess)?.scalingVsOneStream ?? null;
      targets.push({
        target: `4 streams give >= ${fourStreamScalingTarget}x the 1-stream aggregate throughput (${pathName === 'http' ? 'HTTP' : 'in-process'})`,
        value,
        threshold: fourStreamScalingTarget,
        pass: value === null ? null : value >= fourStreamScalingTarget,
        shown: value === null ? 'not measured (needs concurrency 1 and 4)' : `${value.toFixed(2)}x`,
      });
    }
    console.log('');
    for (const target of targets) {
      const verdict = target.pass === null ? 'N/A ' : target.pass ? 'PASS' : 'MISS';
      console.log(`${verdict}  ${target.target}: ${target.shown}`);
    }

    if (options.jsonPath) {
      const report = {
        command,
        recordedAt: new Date().toISOString(),
        machine,
        node: process.version,
        nodeLlamaCppVersion,
        model: modelId,
        settings: {
          tokensPerStream,
          rounds,
          warmUpPasses,
          promptWords,
          temperature: 0,
          endpoint: '/v1/completions',
          httpClient: 'fetch (undici), same process as the server',
          engine: {
            slots: engineConfig.slots,
            threads: engineConfig.threads,
            contextTokens: engineConfig.contextTokens,
            batchSize: engineConfig.batchSize,
          },
        },
        levels,
        targets,
      };
      await writeFile(options.jsonPath, `${JSON.stringify(report, null, 2)}\n`);
      console.log(`\nwrote ${options.jsonPath}`);
    }
  } finally {
    await httpClient?.close();
    await server?.close();
    await engine?.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
