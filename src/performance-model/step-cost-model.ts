import type { ReplicaSpec } from './replica-spec.js';

/**
 * What one engine step computes, summarised so that its cost is a handful of multiplications whatever
 * the batch size. The replica model keeps these sums up to date incrementally.
 */
export interface StepWork {
  /** Sequences producing one token each. */
  decodeSequences: number;
  /** Σ over decoding sequences of the tokens already in their KV cache (what attention reads). */
  decodeContextTokens: number;
  /** Prompt tokens computed this step (chunks of one or more prompts). */
  prefillTokens: number;
  /** Σ over prefill tokens of their position: attention FLOPs grow with it. */
  prefillAttentionPositions: number;
  /** Σ over prefill chunks of the context they attend to (KV read once per chunk). */
  prefillContextTokens: number;
}

export interface StepCost {
  /** Time the device computes (the roofline bound). */
  deviceMs: number;
  /** Device time plus host overhead: when the step's tokens are out. */
  stepMs: number;
}

/**
 * The roofline cost of a step: the larger of compute time (FLOPs at a calibrated MFU) and memory time
 * (weights read once per step plus KV read and written, at a calibrated MBU), plus per-step host overhead.
 * Weights and KV are read at different efficiencies (see calibration.ts).
 * Prefill-heavy steps are compute-bound, decode-heavy steps memory-bound; mixed (chunked-prefill) steps
 * land wherever their sums put them.
 */
export class StepCostModel {
  private readonly flopsPerToken: number;
  private readonly attentionFlopsPerPosition: number;

  constructor(private readonly spec: ReplicaSpec) {
    const model = spec.model;
    this.flopsPerToken = 2 * model.parameters;
    // QKᵀ and AV: 2 matmuls × 2 FLOPs per multiply-add × query heads × head size, per layer.
    this.attentionFlopsPerPosition = 4 * model.layers * model.attentionHeads * model.headDim;
  }

  cost(work: StepWork): StepCost {
    const tokens = work.decodeSequences + work.prefillTokens;
    if (tokens === 0) return { deviceMs: 0, stepMs: 0 };
    const deviceMs = this.deviceMs(work);
    return {
      deviceMs,
      stepMs: deviceMs + this.spec.stepOverheadMs + this.spec.perSequenceOverheadMs * work.decodeSequences,
    };
  }

  /**
   * Device time weighted by how hard the device works (0–1), for the power model: dynamic power is
   * (max − idle) × activity. A compute-bound step runs flat out; a memory-bound step's activity grows with
   * the tokens it batches (ML.ENERGY: hundreds of watts at small batch, near TDP only at large batch);
   * all-reduce waits run at the floor. `steps` steps of the same batch took `deviceMs` in all.
   */
  activeDeviceMs(deviceMs: number, batchTokens: number, computeBound: boolean, steps = 1): number {
    const spec = this.spec;
    const fixedMs = Math.min(deviceMs, spec.stepDeviceFixedMs * steps);
    const activity = computeBound
      ? 1
      : spec.powerFloor + ((1 - spec.powerFloor) * batchTokens) / (batchTokens + spec.powerHalfBatch);
    return fixedMs * spec.powerFloor + (deviceMs - fixedMs) * activity;
  }

  /** Whether a step's compute time exceeds its memory time (prefill-heavy steps). */
  computeBound(work: StepWork): boolean {
    return this.computeMs(work) >= this.memoryMs(work);
  }

  deviceMs(work: StepWork): number {
    return Math.max(this.computeMs(work), this.memoryMs(work)) + this.spec.stepDeviceFixedMs;
  }

  /** The step's FLOPs at the device's effective rate: weights' matmuls plus attention. */
  private computeMs(work: StepWork): number {
    const flops =
      this.flopsPerToken * (work.decodeSequences + work.prefillTokens) +
      this.attentionFlopsPerPosition * (work.decodeContextTokens + work.prefillAttentionPositions);
    return flops / this.spec.effectiveFlopsPerMs;
  }

  /** The step's memory traffic at the device's effective bandwidth: the weights once, every KV token touched. */
  private memoryMs(work: StepWork): number {
    const spec = this.spec;
    const kvTokensTouched =
      work.decodeContextTokens + work.decodeSequences + work.prefillContextTokens + work.prefillTokens;
    return (
      spec.model.weightBytes / spec.effectiveBytesPerMs +
      (spec.model.kvBytesPerToken * kvTokensTouched) / spec.effectiveKvBytesPerMs
    );
  }

  /**
   * A decode-only step's device time as two lines in the context sum, for stepping through many steps of
   * the same batch without rebuilding StepWork: device time = max(computeBase + computePerToken·context,
   * memoryBase + memoryPerToken·context).
   */
  decodeLines(decodeSequences: number) {
    const spec = this.spec;
    return {
      computeBaseMs:
        (this.flopsPerToken * decodeSequences) / spec.effectiveFlopsPerMs + spec.stepDeviceFixedMs,
      computePerContextTokenMs: this.attentionFlopsPerPosition / spec.effectiveFlopsPerMs,
      memoryBaseMs:
        spec.stepDeviceFixedMs +
        spec.model.weightBytes / spec.effectiveBytesPerMs +
        (spec.model.kvBytesPerToken * decodeSequences) / spec.effectiveKvBytesPerMs,
      memoryPerContextTokenMs: spec.model.kvBytesPerToken / spec.effectiveKvBytesPerMs,
      overheadMs: spec.stepOverheadMs + spec.perSequenceOverheadMs * decodeSequences,
    };
  }
}
