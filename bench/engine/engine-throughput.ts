// Engine throughput: aggregate completion tokens per second at 1, 2, 4 and 8 concurrent streams, through
// the HTTP API and through the llama.cpp engine called in-process, in alternating rounds of one run so the
// two paths see the same machine state. The HTTP client (bench/support/load-client.ts) runs on a worker
// thread, as a remote client would run outside the server. Run with `npm run bench:engine -- --help`.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../../src/config/load-config.js';
import { medianOf } from '../../src/core/quantile.js';
import { LlamaCppEngine } from '../../src/engines/llama-cpp/llama-cpp-engine.js';
import { ensureTinyModel, tinyModelIds } from '../../src/engines/llama-cpp/tiny-model.js';
import { type GravityServer, startGravityServer } from '../../src/server/gravity-server.js';
import { alternatingRounds, compare, repoRoot } from '../support/ab-rounds.js';
import { LoadClient, throwOnFailures } from '../support/load-client.js';
import {
  columnsTable,
  fixed,
  integer,
  integers,
  printPreamble,
  readOptions,
  verdict,
} from '../support/report-format.js';

const modelId = tinyModelIds.random;
const engineId = 'tiny-random';
const slots = 8;
const contextTokens = 1024;
const promptWords = 24;
const httpToInProcessTarget = 0.9;
const fourStreamScalingTarget = 1.5;

const options = readOptions(
  'bench:engine',
  'llama.cpp tokens/s in-process against through the HTTP API, in alternating rounds.',
  {
    tokens: integer(256, 'completion tokens per stream', { quick: 32 }),
    rounds: integer(9, 'measured rounds per concurrency level and path', { quick: 2 }),
    warmup: integer(2, 'unmeasured rounds first', { quick: 1, min: 0 }),
    threads: integer(1, 'llama.cpp threads of each engine context'),
    concurrency: integers([1, 2, 4, 8], `stream counts, at most ${slots}`, { quick: [1, 4] }),
  },
  (options) => {
    // More streams than slots would queue, measuring waiting rather than batching.
    if (options.concurrency.some((level) => level > slots))
      throw new Error(`--concurrency: at most ${slots} streams`);
    // The prompt (BOS + words) and the completion must fit one slot's context.
    if (options.tokens + promptWords + 1 >= contextTokens)
      throw new Error(
        `--tokens: at most ${contextTokens - promptWords - 2} with a ${contextTokens}-token context`,
      );
  },
);

/**
 * Deterministic prompt of single-letter words (each one token in the generated vocabulary). The first word
 * differs between the streams of a round, so no stream can reuse another's KV cache beyond BOS.
 */
function promptFor(round: number, stream: number, concurrency: number): string {
  let state = (round * 7919 + stream * 104_729 + 1) >>> 0;
  const words = [String.fromCharCode(0x61 + ((round * concurrency + stream) % 26))];
  while (words.length < promptWords) {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    words.push(String.fromCharCode(0x61 + ((state >>> 16) % 26)));
  }
  return words.join(' ');
}

interface Variant {
  name: string;
  path: 'in-process' | 'HTTP';
  concurrency: number;
}

interface Round {
  tokensPerSecond: number;
  /** Share of the wall time this process's main thread was busy (engine JS and, for HTTP, the server). */
  eventLoopBusy: number;
  /** Process CPU time (all threads, llama.cpp's and the client's included) per wall second. */
  cpuCores: number;
}

async function main(): Promise<void> {
  const { tokens: tokensPerStream, warmup: warmUpRounds } = options;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-bench-'));
  let server: GravityServer | undefined;
  let engine: LlamaCppEngine | undefined;
  const client = new LoadClient();
  try {
    // The server gets the embedded config for the generated random model, sized like the in-process engine.
    const serveOptions = { port: 0, host: '127.0.0.1', dataDir, logLevel: 'warn', slots, contextTokens };
    const config = loadConfig({ ...serveOptions, threads: options.threads }, {});
    for (const [id, model] of Object.entries(config.models))
      if (model.engine !== engineId) delete config.models[id];
    for (const id of Object.keys(config.engines)) if (id !== engineId) delete config.engines[id];
    const engineConfig = config.engines[engineId];
    if (engineConfig?.type !== 'llama-cpp')
      throw new Error(`the embedded config has no '${engineId}' engine`);
    // The file the server's engine registry writes (dataDir/models), so both paths load identical bytes.
    const modelPath = await ensureTinyModel('random', path.join(dataDir, 'models'));
    const inProcess = new LlamaCppEngine({
      id: 'bench-in-process',
      modelId,
      modelPath,
      contextTokens: engineConfig.contextTokens,
      slots: engineConfig.slots,
      threads: engineConfig.threads,
      batchSize: engineConfig.batchSize,
      embeddingContexts: 0,
      device: engineConfig.device,
    });
    engine = inProcess;
    await inProcess.start();
    server = await startGravityServer(config);
    const port = Number(new URL(server.url).port);
    const llamaVersion = JSON.parse(
      await readFile(path.join(repoRoot, 'node_modules/node-llama-cpp/package.json'), 'utf8'),
    );
    printPreamble('Gravity engine throughput', 'bench:engine', [
      `runtime:  node-llama-cpp ${llamaVersion.version} (CPU); model ${modelId} (generated), ${promptWords}-word completion prompts, ` +
        `greedy, ${tokensPerStream} tokens per stream`,
      `engine:   llama-cpp, ${engineConfig.slots} slots, ${engineConfig.threads} thread(s), ${engineConfig.contextTokens}-token ` +
        `context, batch ${engineConfig.batchSize}; one engine per path, never both running at once`,
      `http:     streaming POST ${server.url}/v1/completions (include_usage) from bench/support/load-client.ts on a worker thread`,
      `method:   ${warmUpRounds} warm-up round(s), then ${options.rounds} rounds; every level and path once per round, ` +
        'in rotating order; tok/s = completion tokens of all streams / wall time from first request to last finish; ' +
        'ratios = median over rounds of the ratio within the round',
    ]);

    const streamInProcess = async (prompt: string, requestId: string) => {
      const signal = new AbortController().signal;
      const request = {
        requestId,
        model: modelId,
        input: { kind: 'completion' as const, prompt },
        maxTokens: tokensPerStream,
        temperature: 0,
        topP: 1,
        seed: null,
        stop: [],
        user: null,
      };
      for await (const part of inProcess.generate(request, signal))
        if (part.type === 'finish') return part.usage.completionTokens;
      throw new Error('in-process stream ended without a finish part');
    };
    const variants: Variant[] = options.concurrency.flatMap((concurrency) => [
      { name: `in-process ${concurrency}`, path: 'in-process' as const, concurrency },
      { name: `HTTP ${concurrency}`, path: 'HTTP' as const, concurrency },
    ]);
    const results = await alternatingRounds<Variant, Round>({
      variants,
      rounds: options.rounds,
      warmUpRounds,
      measure: async (variant, round) => {
        // Both paths of a round get the same prompts.
        const prompts = Array.from({ length: variant.concurrency }, (_, stream) =>
          promptFor(round + warmUpRounds, stream, variant.concurrency),
        );
        const startedAt = performance.now();
        const loopBefore = performance.eventLoopUtilization();
        const cpuBefore = process.cpuUsage();
        let tokens: number[];
        if (variant.path === 'in-process')
          tokens = await Promise.all(
            prompts.map((prompt, stream) => streamInProcess(prompt, `bench-${round}-${stream}`)),
          );
        else {
          const body = (prompt: string) =>
            JSON.stringify({
              model: modelId,
              prompt,
              max_tokens: tokensPerStream,
              temperature: 0,
              stream: true,
              stream_options: { include_usage: true },
            });
          const run = await client.run({
            requests: prompts.map((prompt) => ({ port, path: '/v1/completions', body: body(prompt) })),
            concurrency: prompts.length,
            maxRequests: prompts.length,
            detail: 'timing',
          });
          throwOnFailures(run.outcomes, `${variant.name}, HTTP streams`);
          tokens = run.outcomes.map((outcome) => outcome.completionTokens ?? 0);
        }
        const wallMs = performance.now() - startedAt;
        // The generated model never emits EOS, so a short stream means something is wrong, not a fast model.
        if (tokens.some((count) => count !== tokensPerStream))
          throw new Error(
            `${variant.name}: streams produced ${tokens.join(', ')} tokens, expected ${tokensPerStream}`,
          );
        const cpu = process.cpuUsage(cpuBefore);
        return {
          tokensPerSecond: (tokens.length * tokensPerStream) / (wallMs / 1000),
          eventLoopBusy: performance.eventLoopUtilization(loopBefore).utilization,
          cpuCores: (cpu.user + cpu.system) / 1000 / wallMs,
        };
      },
    });

    console.log('each round (tok/s; event loop busy and CPU cores are medians):');
    for (const [name, rounds] of results)
      console.log(
        `  ${name.padEnd(14)} ${rounds.map((round) => round.tokensPerSecond.toFixed(0)).join(' ')} tok/s, event loop ` +
          `${fixed(100 * (medianOf(rounds.map((round) => round.eventLoopBusy)) ?? 0))}% busy, ` +
          `${fixed(medianOf(rounds.map((round) => round.cpuCores)), 2)} cores`,
      );
    const perRound = new Map(
      [...results].map(([name, rounds]) => [name, rounds.map((round) => round.tokensPerSecond)]),
    );
    const ratioTo = (name: string, baseline: string) =>
      perRound.has(baseline)
        ? (compare(perRound, baseline).find((row) => row.variant === name)?.pairedRatio ?? null)
        : null;
    const rows = options.concurrency.map((level) => ({
      level,
      inProcess: medianOf(perRound.get(`in-process ${level}`)!),
      http: medianOf(perRound.get(`HTTP ${level}`)!),
      httpToInProcess: ratioTo(`HTTP ${level}`, `in-process ${level}`),
      scalingInProcess: ratioTo(`in-process ${level}`, 'in-process 1'),
      scalingHttp: ratioTo(`HTTP ${level}`, 'HTTP 1'),
    }));
    const times = (value: number | null) => (value === null ? 'n/a' : `${value.toFixed(2)}x`);
    console.log(
      `\n${columnsTable(rows, [
        ['concurrency', (row) => String(row.level)],
        ['in-process tok/s', (row) => fixed(row.inProcess)],
        ['HTTP tok/s', (row) => fixed(row.http)],
        [
          'HTTP / in-process',
          (row) => (row.httpToInProcess === null ? '–' : `${(row.httpToInProcess * 100).toFixed(1)}%`),
        ],
        ['scaling vs 1 (in-process)', (row) => times(row.scalingInProcess)],
        ['scaling vs 1 (HTTP)', (row) => times(row.scalingHttp)],
      ])}\n`,
    );
    for (const row of rows)
      verdict(
        row.httpToInProcess === null ? null : row.httpToInProcess >= httpToInProcessTarget,
        `HTTP keeps >= ${httpToInProcessTarget * 100}% of in-process throughput at ${row.level} stream(s): ${fixed(100 * (row.httpToInProcess ?? Number.NaN), 1)}%`,
      );
    const four = rows.find((row) => row.level === 4);
    for (const [label, value] of [
      ['in-process', four?.scalingInProcess ?? null],
      ['HTTP', four?.scalingHttp ?? null],
    ] as const)
      verdict(
        value === null ? null : value >= fourStreamScalingTarget,
        `4 streams give >= ${fourStreamScalingTarget}x the 1-stream throughput (${label}): ${times(value)}`,
      );
  } finally {
    await client.close();
    await server?.close();
    await engine?.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
