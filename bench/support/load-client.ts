// The one load client every benchmark uses: OpenAI-style requests over node:http keep-alive pools, in a
// closed loop (N users, each sending again when its answer ends) or an open loop (requests at given
// arrival times), streamed or JSON, with time to first token, inter-token gaps, end-to-end latency and
// status per request. It runs on a worker thread (load-client-worker.mjs), so it never steals the event
// loop of a server measured in the same process, nor waits behind the benchmark's main thread.

import { Worker } from 'node:worker_threads';
import type { SeededRandom } from '../../src/core/seeded-random.js';

export interface LoadRequest {
  /** On 127.0.0.1: benchmarks target loopback only. */
  port: number;
  path: string;
  headers?: Record<string, string>;
  /** The JSON body, as text. */
  body: string;
  /** Echoed in the outcome, to group results (a tenant, a tier, a policy). */
  tag?: string;
}

export interface LoadPlan {
  /** Sent in order, cycling when there are fewer than the loop sends. */
  requests: LoadRequest[];
  /** Open loop: request i is sent at arrivalsMs[i] after the start, however many are in flight. */
  arrivalsMs?: number[];
  /** Closed loop (without arrivalsMs): users, each with one request in flight (default 1). */
  concurrency?: number;
  /** Closed loop: no request starts after this many seconds (those started finish). */
  seconds?: number;
  /** Closed loop: no more than this many requests in all. */
  maxRequests?: number;
  /** timing: parse every SSE event (TTFT, gaps, usage); light: status and the final [DONE] only. */
  detail: 'timing' | 'light';
  /** Keep each response's text content (for checks). */
  keepBody?: boolean;
  /** Drop the worker's connection pools first, so a round inherits no sockets from the last. */
  freshConnections?: boolean;
  /** Open this many connections, one request each, before the clock starts. */
  prime?: number;
  /** Stop starting requests after this many failures. */
  maxErrors?: number;
}

export interface RequestOutcome {
  tag: string;
  /** When the request was sent, in epoch milliseconds (to line it up with other clocks: an energy counter's). */
  sentAtMs: number;
  /** The server's `x-request-id` (its ledger key), or null. */
  requestId: string | null;
  /** HTTP status; 0 when no response came. */
  status: number;
  /** From the request to the first non-empty content delta (streams, timing detail); null otherwise. */
  ttftMs: number | null;
  e2eMs: number;
  /** Between the arrivals of consecutive content chunks (timing detail only). */
  gapsMs?: number[];
  contentChunks: number;
  content?: string;
  promptTokens: number | null;
  completionTokens: number | null;
  /** A stream ended with [DONE], or a JSON body parsed. */
  done: boolean;
  error: string | null;
}

export interface LoadRun {
  wallMs: number;
  outcomes: RequestOutcome[];
  /** This process's CPU over the run (the worker's, the main thread waiting), in ms. */
  clientCpuMs: number;
}

export class LoadClient {
  private readonly worker = new Worker(new URL('./load-client-worker.mjs', import.meta.url));
  private running = false;

  async run(plan: LoadPlan): Promise<LoadRun> {
    if (this.running) throw new Error('LoadClient runs one plan at a time');
    this.running = true;
    const cpuBefore = process.cpuUsage();
    try {
      const reply = await new Promise<{ type: string; run?: Omit<LoadRun, 'clientCpuMs'>; message?: string }>(
        (resolve, reject) => {
          const onError = (error: Error) => reject(error);
          this.worker.once('error', onError);
          this.worker.once('message', (message) => {
            this.worker.off('error', onError);
            resolve(message);
          });
          this.worker.postMessage({ type: 'run', plan });
        },
      );
      if (reply.type !== 'done' || !reply.run) throw new Error(`load client: ${reply.message}`);
      const cpu = process.cpuUsage(cpuBefore);
      return { ...reply.run, clientCpuMs: (cpu.user + cpu.system) / 1000 };
    } finally {
      this.running = false;
    }
  }

  /** Ends the current run early: no new requests start; those in flight finish. */
  stop(): void {
    this.worker.postMessage({ type: 'stop' });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

/** Throws when any of `outcomes` failed, naming `what`, how many failed, and the first error. */
export function throwOnFailures(outcomes: RequestOutcome[], what: string): void {
  const failed = outcomes.filter((outcome) => outcome.error !== null);
  if (failed.length > 0)
    throw new Error(`${what}: ${failed.length} of ${outcomes.length} failed: ${failed[0]?.error}`);
}

/** Poisson arrival times (ms from the start) at `ratePerSecond` for `seconds`, from a seeded stream. */
export function poissonArrivalsMs(ratePerSecond: number, seconds: number, random: SeededRandom): number[] {
  const arrivals: number[] = [];
  let atMs = random.exponential(1000 / ratePerSecond);
  while (atMs < seconds * 1000) {
    arrivals.push(atMs);
    atMs += random.exponential(1000 / ratePerSecond);
  }
  return arrivals;
}

/** A chat completion body; `extra` adds fields (service_tier, stream_options …). */
export function chatBody(options: {
  model: string;
  prompt: string;
  system?: string;
  maxTokens: number;
  stream: boolean;
  extra?: Record<string, unknown>;
}): string {
  return JSON.stringify({
    model: options.model,
    messages: [
      ...(options.system ? [{ role: 'system', content: options.system }] : []),
      { role: 'user', content: options.prompt },
    ],
    max_tokens: options.maxTokens,
    ...(options.stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    ...options.extra,
  });
}
