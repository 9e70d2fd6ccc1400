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
import { LoadClient } from '../support/load-client.js';
import { fixed, formatTable, positiveNumber, printPreamble, readOptions } from '../support/report-format.js';

const modelId = tinyModelIds.random;
const engineId = 'tiny-random';
const slots = 8;
const contextTokens = 1024;
const promptWords = 24;
const httpToInProcessTarget = 0.9;
const fourStreamScalingTarget = 1.5;

const usage = `Usage: npm run bench:engine -- [options]

  --tokens <n>          completion tokens per stream (default 256)
  --rounds <n>          measured rounds per concurrency level and path (default 9)
  --warmup <n>          unmeasured rounds first (default 2)
  --threads <n>         llama.cpp threads of each engine context (default 1)
  --concurrency <list>  stream counts (default 1,2,4,8; at most ${slots})
  --quick               a short run: 32 tokens, 2 rounds after 1 warm-up, concurrency 1,4
  --help                print this`;

const parseOptions = () =>
  readOptions(
    usage,
    { tokens: '256', rounds: '9', warmup: '2', threads: '1', concurrency: '1,2,4,8' },
    { tokens: '32', rounds: '2', warmup: '1', concurrency: '1,4' },
    (values) => {
      const levels = values.concurrency.split(',').map((item) => positiveNumber('concurrency', item, true));
      // More streams than slots would queue, measuring waiting rather than batching.
      if (levels.some((level) => level > slots)) throw new Error(`--concurrency: at most ${slots} streams`);
      const tokensPerStream = positiveNumber('tokens', values.tokens, true);
      // The prompt (BOS + words) and the completion must fit one slot's context.
      if (tokensPerStream + promptWords + 1 >= contextTokens)
        throw new Error(
          `--tokens: at most ${contextTokens - promptWords - 2} with a ${contextTokens}-token context`,
        );
      return {
        tokensPerStream,
        rounds: positiveNumber('rounds', values.rounds, true),
        warmUpRounds: values.warmup === '0' ? 0 : positiveNumber('warmup', values.warmup, true),
        threads: positiveNumber('threads', values.threads, true),
        levels,
      };
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
  const options = parseOptions();
  const { tokensPerStream } = options;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-bench-'));
  let server: GravityServer | undefined;
  let engine: LlamaCppEngine | undefined;
  const client = new LoadClient();
  try {
    // The server gets the embedded config for the generated random model, sized like the in-process engine.
    const config = loadConfig(
      {
        port: 0,
        host: '127.0.0.1',
        dataDir,
        logLevel: 'warn',
        slots,
        threads: options.threads,
        contextTokens,
      },
      {},
    );
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
      `method:   ${options.warmUpRounds} warm-up round(s), then ${options.rounds} rounds; every level and path once per round, ` +
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
    const variants: Variant[] = options.levels.flatMap((concurrency) => [
      { name: `in-process ${concurrency}`, path: 'in-process' as const, concurrency },
      { name: `HTTP ${concurrency}`, path: 'HTTP' as const, concurrency },
    ]);
    const results = await alternatingRounds<Variant, Round>({
      variants,
      rounds: options.rounds,
      warmUpRounds: options.warmUpRounds,
      measure: async (variant, round) => {
        // Both paths of a round get the same prompts.
        const prompts = Array.from({ length: variant.concurrency }, (_, stream) =>
          promptFor(round + options.warmUpRounds, stream, variant.concurrency),
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
          const failed = run.outcomes.find((outcome) => outcome.error !== null);
          if (failed) throw new Error(`HTTP stream failed: ${failed.error}`);
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
    const rows = options.levels.map((level) => ({
      level,
      inProcess: medianOf(perRound.get(`in-process ${level}`)!),
      http: medianOf(perRound.get(`HTTP ${level}`)!),
      httpToInProcess: ratioTo(`HTTP ${level}`, `in-process ${level}`),
      scalingInProcess: ratioTo(`in-process ${level}`, 'in-process 1'),
      scalingHttp: ratioTo(`HTTP ${level}`, 'HTTP 1'),
    }));
    const times = (value: number | null) => (value === null ? 'n/a' : `${value.toFixed(2)}x`);
    console.log(
      `\n${formatTable(
        [
          'concurrency',
          'in-process tok/s',
          'HTTP tok/s',
          'HTTP / in-process',
          'scaling vs 1 (in-process)',
          'scaling vs 1 (HTTP)',
        ],
        rows.map((row) => [
          String(row.level),
          fixed(row.inProcess),
          fixed(row.http),
          row.httpToInProcess === null ? '–' : `${(row.httpToInProcess * 100).toFixed(1)}%`,
          times(row.scalingInProcess),
          times(row.scalingHttp),
        ]),
      )}\n`,
    );
    const verdict = (pass: boolean | null, text: string) =>
      console.log(`${pass === null ? 'n/a ' : pass ? 'PASS' : 'MISS'}  ${text}`);
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

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
});
