import { describe, expect, it } from 'vitest';
import { segmentBlockHashes } from './block-hashes.js';
import { rooflineEfficiency as efficiencyByGeneration } from './calibration.js';
import { hardwareProfiles } from './hardware-profiles.js';
import { modelProfile } from './model-profiles.js';
import { firstComeFirstServed, tierPriority } from './queue-ordering.js';
import { type ModelledSequence, ReplicaModel, type SequenceRequest } from './replica-model.js';
import { ReplicaSpecError, resolveReplicaSpec } from './replica-spec.js';
import { StepCostModel } from './step-cost-model.js';

const rooflineEfficiency = efficiencyByGeneration.hopper;
const llama8b = modelProfile('llama-3.1-8b') as NonNullable<ReturnType<typeof modelProfile>>;

interface Trace {
  firstTokenMs?: number;
  finishedMs?: number;
  cancelled?: boolean;
}

/** Drives a replica step by step (as the emulated engine does, without real time). */
function harness(
  options: { kvBlocks?: number; maxNumSeqs?: number; ordering?: typeof firstComeFirstServed } = {},
) {
  const spec = resolveReplicaSpec({
    hardware: hardwareProfiles['h100-sxm'],
    model: llama8b,
    ...(options.kvBlocks !== undefined && { kvBlocks: options.kvBlocks }),
    ...(options.maxNumSeqs !== undefined && { maxNumSeqs: options.maxNumSeqs }),
  });
  const traces = new Map<string, Trace>();
  let preemptions = 0;
  const model = new ReplicaModel<string>(spec, options.ordering ?? firstComeFirstServed, {
    onFirstToken: (sequence, atMs) => {
      (traces.get(sequence.tag) as Trace).firstTokenMs = atMs;
    },
    onFinish: (sequence, atMs, cancelled) => {
      const trace = traces.get(sequence.tag) as Trace;
      expect(trace.finishedMs).toBeUndefined(); // exactly once
      trace.finishedMs = atMs;
      trace.cancelled = cancelled;
    },
    onPreempt: () => {
      preemptions++;
    },
  });
  let nowMs = 0;
  return {
    spec,
    model,
    traces,
    get preemptions() {
      return preemptions;
    },
    get nowMs() {
      return nowMs;
    },
    submit(tag: string, request: Partial<SequenceRequest<string>> = {}): ModelledSequence<string> {
      traces.set(tag, {});
      return model.submit(
        {
          promptTokens: 100,
          outputTokens: 10,
          promptBlockHashes: null,
          outputSeed: null,
          priority: 1,
          tag,
          ...request,
        },
        nowMs,
      );
    },
    /** Completes the step in progress, or starts and completes one. */
    step() {
      if (!model.stepInProgress && !model.startStep(nowMs, nowMs)) return;
      nowMs = model.stepEndMs;
      model.completeStep();
    },
    /** Runs steps until `untilMs` or until the replica is idle (a step ending later stays in progress). */
    run(untilMs = Number.POSITIVE_INFINITY) {
      for (;;) {
        if (!model.stepInProgress && !model.startStep(nowMs, nowMs)) return;
        if (model.stepEndMs > untilMs) return;
        nowMs = model.stepEndMs;
        model.completeStep();
      }
    },
  };
}

describe('step cost model', () => {
  it('prices a batch-1 decode step at the weights read at the calibrated bandwidth', () => {
    const spec = resolveReplicaSpec({ hardware: hardwareProfiles['h100-sxm'], model: llama8b });
    const cost = new StepCostModel(spec).cost({
      decodeSequences: 1,
      decodeContextTokens: 0,
      prefillTokens: 0,
      prefillAttentionPositions: 0,
      prefillContextTokens: 0,
    });
    const expectedMs = (llama8b.weightBytes / (3.35e12 * rooflineEfficiency.decodeMbu)) * 1000;
    expect(cost.deviceMs).toBeCloseTo(expectedMs, 3);
    expect(cost.stepMs).toBeGreaterThan(cost.deviceMs);
  });

  it('makes a long prefill compute-bound and a large decode batch memory-bound', () => {
    const spec = resolveReplicaSpec({ hardware: hardwareProfiles['h100-sxm'], model: llama8b });
    const costs = new StepCostModel(spec);
    const prefill = costs.deviceMs({
      decodeSequences: 0,
      decodeContextTokens: 0,
      prefillTokens: 8192,
      prefillAttentionPositions: (8192 * 8193) / 2,
      prefillContextTokens: 0,
    });
    const flops = 2 * llama8b.parameters * 8192;
    expect(prefill).toBeGreaterThan((flops / (989e12 * rooflineEfficiency.prefillMfu)) * 1000);
    const decode = costs.deviceMs({
      decodeSequences: 64,
      decodeContextTokens: 64 * 1000,
      prefillTokens: 0,
      prefillAttentionPositions: 0,
      prefillContextTokens: 0,
    });
    const memoryMs =
      (llama8b.weightBytes / (3.35e12 * rooflineEfficiency.decodeMbu) +
        (64 * 1001 * llama8b.kvBytesPerToken) / (3.35e12 * rooflineEfficiency.kvReadMbu)) *
      1000;
    expect(decode).toBeCloseTo(memoryMs, 3);
  });

  it('refuses a model that does not fit the hardware, naming both', () => {
    const llama70b = modelProfile('llama-3.1-70b') as NonNullable<ReturnType<typeof modelProfile>>;
    expect(() => resolveReplicaSpec({ hardware: hardwareProfiles.l4, model: llama70b })).toThrow(
      ReplicaSpecError,
    );
    expect(() => resolveReplicaSpec({ hardware: hardwareProfiles.l4, model: llama70b })).toThrow(
      /llama-3.1-70b.*l4/,
    );
    expect(
      resolveReplicaSpec({ hardware: hardwareProfiles['h100-sxm'], deviceCount: 4, model: llama70b })
        .kvBlocks,
    ).toBeGreaterThan(0);
  });
});

describe('replica model', () => {
  it('generates exactly the requested tokens and frees every block at the end', () => {
    const replica = harness();
    const total = replica.model.kv.availableBlocks;
    for (let index = 0; index < 20; index++)
      replica.submit(`r${index}`, { promptTokens: 50 + index * 37, outputTokens: 1 + index * 13 });
    replica.run();
    for (const trace of replica.traces.values()) {
      expect(trace.cancelled).toBe(false);
      expect(trace.firstTokenMs).toBeLessThanOrEqual(trace.finishedMs as number);
    }
    expect(replica.model.generatedTokensTotal).toBe(
      Array.from({ length: 20 }, (_, index) => 1 + index * 13).reduce((a, b) => a + b),
    );
    expect(replica.model.kv.availableBlocks).toBe(total);
    expect(replica.model.idle).toBe(true);
  });

  it('preempts the latest request when the KV cache is full, recomputes it, and loses nothing', () => {
    // 40 blocks of 16 tokens: four 100-token prompts growing to 300 tokens cannot all fit.
    const replica = harness({ kvBlocks: 40 });
    for (let index = 0; index < 4; index++)
      replica.submit(`r${index}`, { promptTokens: 100, outputTokens: 200 });
    replica.run();
    expect(replica.preemptions).toBeGreaterThan(0);
    expect(replica.model.generatedTokensTotal).toBeGreaterThanOrEqual(800);
    for (const trace of replica.traces.values()) expect(trace.cancelled).toBe(false);
    // The earliest request is never the victim under FCFS, so it finishes first.
    const finishes = [...replica.traces.entries()].sort(
      (a, b) => (a[1].finishedMs as number) - (b[1].finishedMs as number),
    );
    expect(finishes[0]?.[0]).toBe('r0');
    expect(replica.model.kv.availableBlocks).toBe(40);
  });

  it('serves a repeated prompt from the prefix cache, but always computes its last token', () => {
    const replica = harness();
    const hashes = segmentBlockHashes([{ tokens: 1600, seed: 42 }], 16);
    const first = replica.submit('first', { promptTokens: 1600, promptBlockHashes: hashes });
    replica.run();
    const second = replica.submit('second', { promptTokens: 1600, promptBlockHashes: hashes });
    replica.run();
    expect(first.cachedPromptTokens).toBe(0);
    expect(second.cachedPromptTokens).toBe(1600 - 16);
    const ttft = (tag: string) => {
      const trace = replica.traces.get(tag) as Trace;
      return (trace.firstTokenMs as number) - (tag === 'first' ? first.arrivalMs : second.arrivalMs);
    };
    expect(ttft('second')).toBeLessThan(ttft('first'));
    expect(replica.model.kv.prefixStats).toEqual({ queriedTokens: 3200, hitTokens: 1584 });
  });

  it('cancels a waiting request at once and a running one at the end of the step, freeing its blocks', () => {
    const replica = harness({ maxNumSeqs: 1 });
    const total = replica.model.kv.availableBlocks;
    const running = replica.submit('running', { outputTokens: 1000 });
    const waiting = replica.submit('waiting');
    replica.run(50);
    expect(replica.model.waitingRequests).toBe(1);
    replica.model.cancel(waiting, replica.nowMs);
    expect(replica.traces.get('waiting')?.cancelled).toBe(true);
    expect(replica.model.waitingRequests).toBe(0);
    replica.model.cancel(running, replica.nowMs);
    replica.run();
    expect(replica.traces.get('running')?.cancelled).toBe(true);
    expect(replica.model.kv.availableBlocks).toBe(total);
    expect(replica.model.idle).toBe(true);
  });

  it('admits by tier under the priority ordering, arrival order within a tier', () => {
    const replica = harness({ maxNumSeqs: 1, ordering: tierPriority });
    replica.submit('busy', { outputTokens: 50 });
    replica.run(1);
    replica.submit('flex', { priority: 2 });
    replica.submit('default', { priority: 1 });
    replica.submit('priority-a', { priority: 0 });
    replica.submit('priority-b', { priority: 0 });
    replica.run();
    const order = [...replica.traces.entries()]
      .sort((a, b) => (a[1].firstTokenMs as number) - (b[1].firstTokenMs as number))
      .map(([tag]) => tag);
    expect(order).toEqual(['busy', 'priority-a', 'priority-b', 'default', 'flex']);
  });

  it('splits a long prompt into chunks under the token budget while decodes continue', () => {
    const replica = harness();
    replica.submit('decoding', { promptTokens: 10, outputTokens: 400 });
    replica.run(30);
    replica.step();
    const decodedBefore = replica.model.generatedTokensTotal;
    replica.submit('long', { promptTokens: 30_000, outputTokens: 2 });
    replica.step(); // 8192-token budget: the decode plus a chunk of the prompt
    expect(replica.model.generatedTokensTotal).toBe(decodedBefore + 1);
    expect(replica.model.pendingPrefillTokens).toBe(30_000 - (8192 - 1));
  });

  it('admits shared-prefix prompts under KV pressure without over-allocating (idle cached hits count)', () => {
    const replica = harness({ kvBlocks: 80 });
    const groups = [1, 2, 3].map((seed) => segmentBlockHashes([{ tokens: 480, seed }], 16));
    for (let index = 0; index < 60; index++) {
      const hashes = groups[index % 3] as number[];
      replica.submit(`r${index}`, {
        promptTokens: 480 + (index % 7) * 9,
        outputTokens: 40 + (index % 5) * 30,
        promptBlockHashes: hashes,
      });
      if (index % 4 === 3) replica.run(replica.nowMs + 40);
    }
    replica.run();
    for (const trace of replica.traces.values()) expect(trace.cancelled).toBe(false);
    expect(replica.model.kv.availableBlocks).toBe(80);
    expect(replica.model.kv.prefixStats.hitTokens).toBeGreaterThan(0);
  });
});

describe('power and prefill scheduling', () => {
  const spec = (flavour?: 'vllm-0.5') =>
    resolveReplicaSpec({ hardware: hardwareProfiles['h100-sxm'], model: llama8b, flavour });
  const request = (tag: string, outputTokens: number): SequenceRequest<string> => ({
    promptTokens: 100,
    outputTokens,
    promptBlockHashes: null,
    outputSeed: null,
    priority: 1,
    tag,
  });

  /** Mean power over decode-only steps of a batch of `batch` sequences, and J per generated token. */
  function decodePower(batch: number) {
    const model = new ReplicaModel<string>(spec(), firstComeFirstServed, {
      onFirstToken: () => {},
      onFinish: () => {},
    });
    for (let index = 0; index < batch; index++) model.submit(request(`r${index}`, 200), 0);
    let nowMs = 0;
    while (model.generatedTokensTotal < batch) {
      model.startStep(nowMs, nowMs);
      nowMs = model.stepEndMs;
      model.completeStep();
    }
    const [startMs, startJoules, startTokens] = [
      nowMs,
      model.dynamicEnergyJoules,
      model.generatedTokensTotal,
    ];
    for (let step = 0; step < 50; step++) {
      model.startStep(nowMs, nowMs);
      nowMs = model.stepEndMs;
      model.completeStep();
    }
    const seconds = (nowMs - startMs) / 1000;
    const joules = model.dynamicEnergyJoules - startJoules + model.spec.idleWatts * seconds;
    return { watts: joules / seconds, joulesPerToken: joules / (model.generatedTokensTotal - startTokens) };
  }

  it('draws more power at a larger decode batch, and never more than the device maximum', () => {
    const one = decodePower(1);
    const large = decodePower(128);
    expect(large.watts).toBeGreaterThan(one.watts * 1.3);
    expect(large.watts).toBeLessThanOrEqual(spec().maxWatts);
    expect(one.watts).toBeGreaterThan(spec().idleWatts);
  });

  it('keeps J per token at batch 1 within power × step time', () => {
    const one = decodePower(1);
    const stepMs = new StepCostModel(spec()).cost({
      decodeSequences: 1,
      decodeContextTokens: 150,
      prefillTokens: 0,
      prefillAttentionPositions: 0,
      prefillContextTokens: 0,
    }).stepMs;
    expect(one.joulesPerToken).toBeLessThanOrEqual((spec().maxWatts * stepMs * 1.05) / 1000);
    expect(one.joulesPerToken).toBeCloseTo((one.watts * stepMs) / 1000, 1);
  });

  it('pauses decodes while it prefills a newcomer when chunked prefill is off (vLLM 0.5)', () => {
    let paused = 0;
    const model = new ReplicaModel<string>(spec('vllm-0.5'), firstComeFirstServed, {
      onFirstToken: () => {},
      onFinish: () => {},
      onDecodesPaused: (sequences) => {
        paused += sequences;
      },
    });
    const first = model.submit(request('first', 100), 0);
    let nowMs = 0;
    for (let step = 0; step < 3; step++) {
      model.startStep(nowMs, nowMs);
      nowMs = model.stepEndMs;
      model.completeStep();
    }
    const before = model.generatedTokens(first);
    model.submit(request('second', 100), nowMs);
    model.startStep(nowMs, nowMs);
    nowMs = model.stepEndMs;
    model.completeStep();
    expect(model.generatedTokens(first)).toBe(before);
    expect(paused).toBe(1);
    model.startStep(nowMs, nowMs);
    model.completeStep();
    expect(model.generatedTokens(first)).toBe(before + 1);
  });
});
