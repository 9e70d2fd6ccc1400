import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { medianOf } from '../src/core/quantile.js';
import { SeededRandom } from '../src/core/seeded-random.js';
import { parseScenario } from '../src/simulator/load-scenario.js';
import { runScenario } from '../src/simulator/run-scenario.js';
import { LedgerReplay } from '../src/simulator/workload/ledger-replay.js';
import { type Harness, startHarness } from './support/gravity-harness.js';

/**
 * One workload, two clocks: sent to a live Gravity whose replica is an emulated engine (wall clock,
 * real HTTP, the openai SDK), and replayed through the fleet simulator (virtual clock) as a trace. Both
 * run the same fleet core (the gateway's scheduler in front of the replica, on by default in both) and
 * the same ReplicaModel; they must agree on throughput and median TTFT within 10%.
 *
 * The replica is Llama-3.1-8B on an L4 (~75 ms per decode step, ~300 ms to prefill a 1,024-token prompt), so timer and HTTP noise of a
 * millisecond or two stay small against the modelled times.
 */
const fleet = { hardware: 'l4', model: 'llama-3.1-8b' };
const requestCount = 36;
const ratePerSecond = 3;
const promptTokens = 1024;

interface PlannedRequest {
  offsetMs: number;
  outputTokens: number;
  prompt: string;
}

function plannedWorkload(): PlannedRequest[] {
  const random = new SeededRandom(2026);
  let offsetMs = 0;
  return Array.from({ length: requestCount }, (_, index) => {
    offsetMs += random.exponential(1000 / ratePerSecond);
    // Distinct text per request, 4 characters per estimated token, so nothing hits the prefix cache.
    const words = Array.from({ length: promptTokens }, (_, word) =>
      `${(index * 7919 + word * 31) % 9973}`.padStart(4, 'x'),
    );
    return { offsetMs, outputTokens: 16 + Math.floor(random.uniform() * 33), prompt: words.join('') };
  });
}

let harness: Harness;
beforeAll(async () => {
  harness = await startHarness(undefined, {
    engines: { replica: { type: 'emulated', ...fleet } },
    models: { [fleet.model]: { engine: 'replica' } },
  });
});
afterAll(async () => {
  await harness?.close();
});

describe('the emulated engine live and the simulator', () => {
  it('agree on throughput and median TTFT for the same workload within 10%', {
    timeout: 60_000,
  }, async () => {
    const workload = plannedWorkload();
    expect(workload.every((request) => Math.ceil(request.prompt.length / 4) === promptTokens)).toBe(true);

    // Live: each request at its offset, streamed, timed at the client.
    const startMs = performance.now();
    const live = await Promise.all(
      workload.map(async (request) => {
        await new Promise((resolve) => setTimeout(resolve, request.offsetMs - (performance.now() - startMs)));
        const sentMs = performance.now();
        let firstTokenMs: number | null = null;
        let completionTokens = 0;
        const stream = await harness.client.completions.create({
          model: fleet.model,
          prompt: request.prompt,
          max_tokens: request.outputTokens,
          stream: true,
          stream_options: { include_usage: true },
        });
        for await (const chunk of stream) {
          if (firstTokenMs === null && chunk.choices[0]?.text) firstTokenMs = performance.now();
          if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
        }
        return {
          sentMs,
          ttftMs: (firstTokenMs as number) - sentMs,
          finishedMs: performance.now(),
          completionTokens,
        };
      }),
    );
    expect(live.map((result) => result.completionTokens)).toEqual(
      workload.map((request) => request.outputTokens),
    );
    const liveSeconds =
      (Math.max(...live.map((result) => result.finishedMs)) -
        Math.min(...live.map((result) => result.sentMs))) /
      1000;
    const liveThroughput = live.reduce((sum, result) => sum + result.completionTokens, 0) / liveSeconds;
    const liveTtftP50 = medianOf(live.map((result) => result.ttftMs)) as number;

    // Simulated: the same requests as a trace.
    const folder = mkdtempSync(path.join(tmpdir(), 'gravity-live-vs-sim-'));
    const tracePath = path.join(folder, 'trace.jsonl');
    writeFileSync(
      tracePath,
      workload
        .map((request) =>
          JSON.stringify({
            timestamp: request.offsetMs,
            input_length: promptTokens,
            output_length: request.outputTokens,
          }),
        )
        .join('\n'),
    );
    const simulated = runScenario(
      parseScenario(
        {
          name: 'live-vs-sim',
          fleet: { ...fleet, replicas: 1 },
          workload: { arrivals: { process: 'trace', path: tracePath } },
        },
        'test',
      ),
    );
    // Like for like: both runs put the gateway's SLO scheduler in front of the replica, by default.
    expect(harness.server.gateway.schedulers.has('replica')).toBe(true);
    expect(simulated.fleet.scheduler).toBe('slo');
    const simulatedTtftP50 = simulated.overall.ttft.p50Ms as number;
    const simulatedThroughput = simulated.overall.outputTokensPerSecond;

    const report = `live ${liveThroughput.toFixed(1)} tok/s, TTFT p50 ${liveTtftP50.toFixed(1)} ms; simulated ${simulatedThroughput.toFixed(1)} tok/s, TTFT p50 ${simulatedTtftP50.toFixed(1)} ms`;
    expect(Math.abs(liveThroughput - simulatedThroughput) / simulatedThroughput, report).toBeLessThan(0.1);
    expect(Math.abs(liveTtftP50 - simulatedTtftP50) / simulatedTtftP50, report).toBeLessThan(0.1);
  });

  it("replays the live run from Gravity's own ledger: every completed request, its tokens and its tier", async () => {
    const workload = plannedWorkload();
    const ledgerReplay = await LedgerReplay.read(harness.ledgerPath);
    const replayed = runScenario(
      parseScenario(
        {
          name: 'ledger-replay',
          fleet: { ...fleet, replicas: 2 },
          workload: { arrivals: { process: 'ledger', path: harness.ledgerPath } },
        },
        'test',
      ),
      {},
      { ledgerReplay },
    );
    ledgerReplay.close();
    expect(replayed.overall.completed).toBe(requestCount);
    expect(replayed.overall.inputTokens).toBe(requestCount * promptTokens);
    expect(replayed.overall.outputTokens).toBe(
      workload.reduce((sum, request) => sum + request.outputTokens, 0),
    );
    expect(replayed.tiers.map((tier) => tier.tier)).toEqual(['default']);
    expect(replayed.fleet.replicas).toBe(2);
  });
});
