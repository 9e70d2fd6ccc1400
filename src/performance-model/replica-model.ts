import FlatQueue from 'flatqueue';
import TinyQueue from 'tinyqueue';
import { chainBlockHash } from './block-hashes.js';
import { KvBlockManager } from './kv-block-manager.js';
import type { OrderedRequest, QueueOrderingPolicy } from './queue-ordering.js';
import type { ReplicaSpec } from './replica-spec.js';
import { StepCostModel, type StepWork } from './step-cost-model.js';

/** One request as the engine model sees it. */
export interface SequenceRequest<Tag> {
  promptTokens: number;
  /** Tokens the request will generate (the model knows the answer's length in advance). At least 1. */
  outputTokens: number;
  /** Hashes of the prompt's full KV blocks (see block-hashes.ts); null: nothing to share. */
  promptBlockHashes: readonly number[] | null;
  /** Content seed of the answer, to cache its blocks for a later turn of the same conversation. */
  outputSeed: number | null;
  /** Tier rank for priority ordering; lower first. */
  priority: number;
  /** Whatever the caller needs back in events. */
  tag: Tag;
}

export type SequenceState = 'waiting' | 'prefill' | 'decode' | 'finished' | 'cancelled';

export class ModelledSequence<Tag> implements OrderedRequest {
  state: SequenceState = 'waiting';
  /** Tokens whose KV must be computed before decoding: the prompt, plus answer so far after a preemption. */
  prefillTarget: number;
  prefilledTokens = 0;
  /** Prompt tokens served from the prefix cache at first admission (OpenAI's `cached_tokens`). */
  cachedPromptTokens = 0;
  /** Generated tokens, while waiting or in prefill; in decode see ReplicaModel.generatedTokens. */
  generatedBeforeDecode = 0;
  /** In decode: KV tokens = kvOffset + stepIndex; the step index of its last decode step. */
  kvOffset = 0;
  joinedStep = 0;
  lastStep = 0;
  sharedBlockHashes: number[] = [];
  admittedMs: number | null = null;
  firstTokenMs: number | null = null;
  preemptions = 0;
  cancelRequested = false;

  constructor(
    readonly request: SequenceRequest<Tag>,
    readonly arrivalOrder: number,
    readonly arrivalMs: number,
  ) {
    this.prefillTarget = request.promptTokens;
  }

  get priority(): number {
    return this.request.priority;
  }

  get tag(): Tag {
    return this.request.tag;
  }
}

/** What the engine model tells its driver (the emulated engine or the simulator) as steps complete. */
export interface ReplicaModelEvents<Tag> {
  /** The request got its place in the batch (first admission only; not after a preemption). */
  onAdmit?(sequence: ModelledSequence<Tag>, atMs: number): void;
  /** The request's first token is out (end of its last prefill chunk). */
  onFirstToken(sequence: ModelledSequence<Tag>, atMs: number): void;
  /**
   * Decoding sequences each produced one token per step for `steps` steps lasting `durationMs` in all.
   * `sequencesByPriority[p]` counts them by priority (clamped to 0–7), for per-tier inter-token latency.
   */
  onDecodeSteps?(sequencesByPriority: Int32Array, steps: number, durationMs: number): void;
  /**
   * A prefill-only step of `durationMs` ran while `decodeSequences` sequences waited to decode (engines
   * without chunked prefill): their next token comes that much later. `sequencesByPriority` counts them
   * by priority, as in `onDecodeSteps`.
   */
  onDecodesPaused?(decodeSequences: number, durationMs: number, sequencesByPriority: Int32Array): void;
  /** The request produced its last token (or was cancelled while running: `cancelled` true). */
  onFinish(sequence: ModelledSequence<Tag>, atMs: number, cancelled: boolean): void;
  onPreempt?(sequence: ModelledSequence<Tag>, atMs: number): void;
}

function priorityBand(priority: number): number {
  return Math.min(7, Math.max(0, Math.floor(priority)));
}

interface PrefillChunk<Tag> {
  sequence: ModelledSequence<Tag>;
  tokens: number;
}

/**
 * One engine replica, iteration by iteration, as vLLM's V1 scheduler runs it: continuous batching under
 * `maxNumSeqs` and a token budget, decodes first, then chunked prefill of running and newly admitted
 * prompts (Sarathi-style mixed steps); KV blocks allocated up front for a prompt and one by one as answers
 * grow; when blocks run out the lowest-priority running request is preempted and later recomputed; a
 * prefix cache serves prompt blocks computed before. Engines without chunked prefill (vLLM 0.5, 0.6
 * multi-step) instead run prefill-only steps of whole prompts whenever a prompt can be admitted, decodes
 * waiting meanwhile.
 *
 * The model has no clock. Its driver starts a step (`startStep`), waits until `stepEndMs` — in real time
 * (emulated engine) or by jumping a virtual clock (simulator) — and calls `completeStep`. Decoding
 * sequences are kept as aggregates (count, context sum, blocks needed per step by residue), so a step
 * costs O(1) in the batch size, and a run of decode-only steps can be taken as one span.
 */
export class ReplicaModel<Tag> {
  readonly kv: KvBlockManager;
  private readonly costModel: StepCostModel;
  private readonly waiting: TinyQueue<ModelledSequence<Tag>>;
  private waitingCount = 0;
  private waitingPromptTokens = 0;
  private arrivals = 0;
  /** Admission order of sequences in prefill (usually a few). */
  private prefilling: ModelledSequence<Tag>[] = [];
  private readonly running = new Set<ModelledSequence<Tag>>();

  // Decode aggregates.
  private stepIndex = 0;
  private decodeCount = 0;
  /** Σ kvOffset over decoding sequences: context tokens at step n are decodeOffsetSum + n·decodeCount. */
  private decodeOffsetSum = 0;
  /** Decoding sequences by kvOffset mod block size: those with (offset + n) ≡ 0 need a block at step n. */
  private readonly decodeByResidue: Int32Array;
  private readonly decodeByPriority = new Int32Array(8);
  private readonly finishing = new FlatQueue<ModelledSequence<Tag>>();
  private readonly blockTokens: number;

  // The step in progress.
  private inProgress: {
    startMs: number;
    endMs: number;
    steps: number;
    chunks: PrefillChunk<Tag>[];
    decodeSequences: number;
    /** A prefill-only step: decoding sequences wait and the decode step index does not advance. */
    decodesPaused: boolean;
  } | null = null;
  private readonly pendingCancels: ModelledSequence<Tag>[] = [];
  /** Device time booked for the step or span in progress, to give back what an interrupted span skips. */
  private spanDeviceMs = 0;
  /** Active device time (see StepCostModel.activeDeviceMs) booked for the step or span in progress. */
  private spanActiveMs = 0;
  private activeDeviceMsTotal = 0;

  // Totals.
  deviceBusyMs = 0;
  /** Time spent in steps (device plus host overhead): the replica's busy time. */
  busyMs = 0;
  stepsTotal = 0;
  preemptionsTotal = 0;
  promptTokensComputed = 0;
  generatedTokensTotal = 0;

  constructor(
    readonly spec: ReplicaSpec,
    private readonly ordering: QueueOrderingPolicy,
    private readonly events: ReplicaModelEvents<Tag>,
  ) {
    this.kv = new KvBlockManager(spec.kvBlocks, spec.prefixCaching);
    this.costModel = new StepCostModel(spec);
    this.waiting = new TinyQueue<ModelledSequence<Tag>>([], (a, b) => ordering.compare(a, b));
    this.blockTokens = spec.kvBlockTokens;
    this.decodeByResidue = new Int32Array(this.blockTokens);
  }

  // ── Observables ─────────────────────────────────────────────────────────────────────────────────────

  get waitingRequests(): number {
    return this.waitingCount;
  }
  get runningRequests(): number {
    return this.running.size;
  }
  /** Prompt tokens still to compute: waiting prompts plus the rest of prompts in prefill. */
  get pendingPrefillTokens(): number {
    let tokens = this.waitingPromptTokens;
    for (const sequence of this.prefilling) tokens += sequence.prefillTarget - sequence.prefilledTokens;
    return tokens;
  }
  get stepInProgress(): boolean {
    return this.inProgress !== null;
  }
  get stepEndMs(): number {
    return this.inProgress?.endMs ?? Number.POSITIVE_INFINITY;
  }
  get idle(): boolean {
    return this.inProgress === null && this.running.size === 0 && this.waitingCount === 0;
  }

  generatedTokens(sequence: ModelledSequence<Tag>): number {
    return sequence.state === 'decode'
      ? sequence.generatedBeforeDecode + this.stepIndex - sequence.joinedStep
      : sequence.generatedBeforeDecode;
  }

  runningSequences(): Iterable<ModelledSequence<Tag>> {
    return this.running;
  }

  /**
   * Device energy beyond idle so far: (max − idle) watts over the device's busy time, weighted by how hard
   * each step works it (StepCostModel.activeDeviceMs). Host overhead time counts as idle.
   */
  get dynamicEnergyJoules(): number {
    return ((this.spec.maxWatts - this.spec.idleWatts) * this.activeDeviceMsTotal) / 1000;
  }

  private bookDevice(deviceMs: number, activeMs: number): void {
    this.deviceBusyMs += deviceMs;
    this.activeDeviceMsTotal += activeMs;
    this.spanDeviceMs = deviceMs;
    this.spanActiveMs = activeMs;
  }

  // ── Requests ───────────────────────────────────────────────────────────────────────────────────────

  submit(request: SequenceRequest<Tag>, nowMs: number): ModelledSequence<Tag> {
    if (request.outputTokens < 1) throw new RangeError('outputTokens must be at least 1');
    const sequence = new ModelledSequence(request, this.arrivals++, nowMs);
    this.enqueue(sequence);
    return sequence;
  }

  /**
   * Cancels a request. A waiting one leaves the queue at once; a running one leaves at the end of the step
   * in progress (as an engine notices an abort between steps) and its blocks are freed then.
   */
  cancel(sequence: ModelledSequence<Tag>, nowMs: number): void {
    if (sequence.state === 'waiting') {
      sequence.state = 'cancelled';
      this.waitingCount--;
      this.waitingPromptTokens -= sequence.prefillTarget;
      this.events.onFinish(sequence, nowMs, true);
    } else if (sequence.state === 'prefill' || sequence.state === 'decode') {
      if (sequence.cancelRequested) return;
      sequence.cancelRequested = true;
      if (this.inProgress) this.pendingCancels.push(sequence);
      else this.removeCancelled(sequence, nowMs);
    }
  }

  private enqueue(sequence: ModelledSequence<Tag>): void {
    sequence.state = 'waiting';
    this.waiting.push(sequence);
    this.waitingCount++;
    this.waitingPromptTokens += sequence.prefillTarget;
  }

  private peekWaiting(): ModelledSequence<Tag> | undefined {
    let head = this.waiting.peek();
    while (head && head.state !== 'waiting') {
      this.waiting.pop();
      head = this.waiting.peek();
    }
    return head;
  }

  // ── Steps ──────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Plans and starts the next step at `nowMs`. When nothing can change before `horizonMs` but the steps
   * themselves (no prefill, nothing admissible waiting), takes as many decode steps as fit before the
   * horizon, the first finish, or the KV cache filling — as one span. Pass `horizonMs = nowMs` for one
   * step at a time. Returns false when there is nothing to run.
   */
  startStep(nowMs: number, horizonMs: number): boolean {
    if (this.inProgress) throw new Error('a step is already in progress');
    if (this.running.size === 0 && this.waitingCount === 0) return false;
    if (
      horizonMs > nowMs &&
      this.prefilling.length === 0 &&
      this.decodeCount > 0 &&
      !(this.atSchedulingBoundary && this.canAdmitHead())
    )
      if (this.startDecodeSpan(nowMs, horizonMs)) return true;
    return this.startSingleStep(nowMs);
  }

  /** Steps from `step` to the next step index at which requests may be admitted (0 when `step` is one). */
  private stepsToNextBoundary(step: number): number {
    const every = this.spec.scheduleEverySteps;
    return (every - (step % every)) % every;
  }

  /**
   * A span in progress ends after the step running at `nowMs` (or at the next multi-step boundary after
   * it), because new work may now be admitted.
   */
  interruptSpan(nowMs: number): void {
    const span = this.inProgress;
    if (!span || span.steps <= 1) return;
    const lines = this.costModel.decodeLines(span.decodeSequences);
    let endMs = span.startMs;
    let steps = 0;
    let deviceMs = 0;
    while (steps < span.steps) {
      const step = this.decodeStepCost(lines, this.stepIndex + steps, span.decodeSequences);
      endMs += step.stepMs;
      deviceMs += step.deviceMs;
      steps++;
      if (endMs >= nowMs) break;
    }
    const boundarySteps = Math.min(span.steps, steps + this.stepsToNextBoundary(this.stepIndex + steps));
    while (steps < boundarySteps) {
      const step = this.decodeStepCost(lines, this.stepIndex + steps, span.decodeSequences);
      endMs += step.stepMs;
      deviceMs += step.deviceMs;
      steps++;
    }
    if (steps === span.steps) return;
    // Give back the blocks allocated for the steps that will not run.
    let unusedBlocks = 0;
    for (let step = steps; step < span.steps; step++)
      unusedBlocks += this.blocksNeededAt(this.stepIndex + step);
    this.kv.releasePrivate(unusedBlocks);
    const activeMs = this.costModel.activeDeviceMs(deviceMs, span.decodeSequences, false, steps);
    this.deviceBusyMs -= this.spanDeviceMs - deviceMs;
    this.activeDeviceMsTotal -= this.spanActiveMs - activeMs;
    this.spanDeviceMs = deviceMs;
    this.spanActiveMs = activeMs;
    span.steps = steps;
    span.endMs = endMs;
  }

  /** Whether this step may admit waiting requests: every step, or every N under multi-step scheduling. */
  private get atSchedulingBoundary(): boolean {
    return this.running.size === 0 || this.stepIndex % this.spec.scheduleEverySteps === 0;
  }

  /**
   * Whether the head of the queue could join the batch at the next scheduling point: new work that
   * should end a decode span (at the next step, or the next multi-step boundary).
   */
  canAdmitHead(): boolean {
    if (this.waitingCount === 0 || this.running.size >= this.spec.maxNumSeqs) return false;
    const head = this.peekWaiting();
    return head !== undefined && this.admissionCost(head).blocks <= this.kv.availableBlocks;
  }

  private blocksNeededAt(step: number): number {
    const residue = ((-step % this.blockTokens) + this.blockTokens) % this.blockTokens;
    return this.decodeByResidue[residue] as number;
  }

  private decodeStepCost(lines: ReturnType<StepCostModel['decodeLines']>, step: number, sequences: number) {
    const context = this.decodeOffsetSum + step * sequences;
    const deviceMs = Math.max(
      lines.computeBaseMs + lines.computePerContextTokenMs * context,
      lines.memoryBaseMs + lines.memoryPerContextTokenMs * context,
    );
    return { deviceMs, stepMs: deviceMs + lines.overheadMs };
  }

  private startDecodeSpan(nowMs: number, horizonMs: number): boolean {
    const firstFinish = this.peekFinishing();
    let maxSteps = firstFinish ? firstFinish.lastStep - this.stepIndex + 1 : Number.POSITIVE_INFINITY;
    // Multi-step scheduling: a request that could join waits for the next boundary, so stop there.
    if (this.canAdmitHead()) maxSteps = Math.min(maxSteps, this.stepsToNextBoundary(this.stepIndex));
    const lines = this.costModel.decodeLines(this.decodeCount);
    let available = this.kv.availableBlocks;
    let endMs = nowMs;
    let steps = 0;
    let deviceMs = 0;
    let blocks = 0;
    while (steps < maxSteps && endMs < horizonMs) {
      const needed = this.blocksNeededAt(this.stepIndex + steps);
      if (needed > available) break;
      available -= needed;
      blocks += needed;
      const step = this.decodeStepCost(lines, this.stepIndex + steps, this.decodeCount);
      endMs += step.stepMs;
      deviceMs += step.deviceMs;
      steps++;
    }
    if (steps === 0) return false;
    this.kv.allocatePrivate(blocks);
    this.bookDevice(deviceMs, this.costModel.activeDeviceMs(deviceMs, this.decodeCount, false, steps));
    this.inProgress = {
      startMs: nowMs,
      endMs,
      steps,
      chunks: [],
      decodeSequences: this.decodeCount,
      decodesPaused: false,
    };
    return true;
  }

  private startSingleStep(nowMs: number): boolean {
    if (!this.spec.chunkedPrefill && this.atSchedulingBoundary && this.canAdmitHead())
      return this.startPrefillOnlyStep(nowMs);
    // Decodes first: each needs room for one more token, preempting the lowest-priority request if not.
    let needed = this.blocksNeededAt(this.stepIndex);
    while (needed > this.kv.availableBlocks && this.running.size > 0) {
      this.preemptLowestPriority(nowMs);
      needed = this.blocksNeededAt(this.stepIndex);
    }
    this.kv.allocatePrivate(needed);
    let budget = this.spec.maxNumBatchedTokens - this.decodeCount;

    const chunks: PrefillChunk<Tag>[] = [];
    const work: StepWork = {
      decodeSequences: this.decodeCount,
      decodeContextTokens: this.decodeOffsetSum + this.stepIndex * this.decodeCount,
      prefillTokens: 0,
      prefillAttentionPositions: 0,
      prefillContextTokens: 0,
    };
    const addChunk = (sequence: ModelledSequence<Tag>) => {
      const tokens = Math.min(sequence.prefillTarget - sequence.prefilledTokens, budget);
      if (tokens <= 0) return;
      const start = sequence.prefilledTokens;
      chunks.push({ sequence, tokens });
      budget -= tokens;
      work.prefillTokens += tokens;
      work.prefillAttentionPositions += tokens * start + (tokens * (tokens + 1)) / 2;
      work.prefillContextTokens += start;
    };
    for (const sequence of this.prefilling) {
      if (budget <= 0) break;
      addChunk(sequence);
    }
    const mayAdmit = this.atSchedulingBoundary;
    while (mayAdmit && budget > 0 && this.running.size < this.spec.maxNumSeqs) {
      const head = this.peekWaiting();
      if (!head) break;
      const cost = this.admissionCost(head);
      if (cost.blocks > this.kv.availableBlocks) break; // head-of-line blocking, as vLLM does
      this.waiting.pop();
      this.admit(head, cost.hits, nowMs);
      addChunk(head);
    }

    if (work.decodeSequences === 0 && work.prefillTokens === 0) return false;
    this.beginStep(work, chunks, nowMs, false);
    return true;
  }

  /** Books one step of `work` on the device and marks it in progress until its cost has passed. */
  private beginStep(
    work: StepWork,
    chunks: PrefillChunk<Tag>[],
    nowMs: number,
    decodesPaused: boolean,
  ): void {
    const cost = this.costModel.cost(work);
    this.bookDevice(
      cost.deviceMs,
      this.costModel.activeDeviceMs(
        cost.deviceMs,
        work.decodeSequences + work.prefillTokens,
        this.costModel.computeBound(work),
      ),
    );
    this.inProgress = {
      startMs: nowMs,
      endMs: nowMs + cost.stepMs,
      steps: 1,
      chunks,
      decodeSequences: decodesPaused ? 0 : this.decodeCount,
      decodesPaused,
    };
  }

  /**
   * Without chunked prefill (vLLM 0.5, 0.6 multi-step), a step that can admit prompts prefills them whole
   * and nothing else, up to the token budget (the first prompt whatever its length), while decodes wait.
   */
  private startPrefillOnlyStep(nowMs: number): boolean {
    const chunks: PrefillChunk<Tag>[] = [];
    const work: StepWork = {
      decodeSequences: 0,
      decodeContextTokens: 0,
      prefillTokens: 0,
      prefillAttentionPositions: 0,
      prefillContextTokens: 0,
    };
    let budget = this.spec.maxNumBatchedTokens;
    while (this.running.size < this.spec.maxNumSeqs) {
      const head = this.peekWaiting();
      if (!head) break;
      const cost = this.admissionCost(head);
      if (cost.blocks > this.kv.availableBlocks) break;
      const tokens = head.prefillTarget - cost.hits * this.blockTokens;
      if (chunks.length > 0 && tokens > budget) break;
      this.waiting.pop();
      this.admit(head, cost.hits, nowMs);
      const start = head.prefilledTokens;
      const whole = head.prefillTarget - start;
      chunks.push({ sequence: head, tokens: whole });
      budget -= whole;
      work.prefillTokens += whole;
      work.prefillAttentionPositions += whole * start + (whole * (whole + 1)) / 2;
      work.prefillContextTokens += start;
    }
    if (chunks.length === 0) return false;
    this.beginStep(work, chunks, nowMs, true);
    return true;
  }

  /**
   * What admitting a waiting request costs: its leading cached prompt blocks (`hits`), and the blocks it
   * takes from the free space — its whole prefill target less those hits, except idle cached ones, which
   * stop being reclaimable once it holds them.
   */
  private admissionCost(sequence: ModelledSequence<Tag>): { blocks: number; hits: number } {
    const total = Math.ceil(sequence.prefillTarget / this.blockTokens);
    const hashes = sequence.request.promptBlockHashes;
    if (!hashes) return { blocks: total, hits: 0 };
    // At least one token is always computed, so the last block of an exactly-cached prompt is not a hit.
    const maxHits = Math.floor((sequence.prefillTarget - 1) / this.blockTokens);
    const { hits, idleHits } = this.kv.lookupPrefix(hashes, maxHits);
    return { blocks: total - hits + idleHits, hits };
  }

  /** Admits the queue's head, whose `hits` leading prompt blocks `admissionCost` found cached just now. */
  private admit(sequence: ModelledSequence<Tag>, hits: number, nowMs: number): void {
    this.waitingCount--;
    this.waitingPromptTokens -= sequence.prefillTarget;
    const hashes = sequence.request.promptBlockHashes;
    if (hashes) {
      for (let index = 0; index < hits; index++) {
        const hash = hashes[index] as number;
        this.kv.acquireCached(hash);
        sequence.sharedBlockHashes.push(hash);
      }
    }
    this.kv.recordLookup(sequence.prefillTarget, hits * this.blockTokens);
    this.kv.allocatePrivate(Math.ceil(sequence.prefillTarget / this.blockTokens) - hits);
    sequence.prefilledTokens = hits * this.blockTokens;
    if (sequence.admittedMs === null) {
      sequence.admittedMs = nowMs;
      sequence.cachedPromptTokens = sequence.prefilledTokens;
      this.events.onAdmit?.(sequence, nowMs);
    }
    sequence.state = 'prefill';
    this.prefilling.push(sequence);
    this.running.add(sequence);
  }

  /** Ends the step or span in progress at `stepEndMs`: tokens out, finishes, prefills done, cancels. */
  completeStep(): void {
    const step = this.inProgress;
    if (!step) throw new Error('no step in progress');
    this.inProgress = null;
    const endMs = step.endMs;
    this.stepsTotal += step.steps;
    this.busyMs += endMs - step.startMs;

    if (step.decodeSequences > 0) {
      this.stepIndex += step.steps;
      this.generatedTokensTotal += step.decodeSequences * step.steps;
      this.events.onDecodeSteps?.(this.decodeByPriority, step.steps, endMs - step.startMs);
      for (
        let done = this.peekFinishing();
        done && done.lastStep < this.stepIndex;
        done = this.peekFinishing()
      ) {
        this.finishing.pop();
        if (done.cancelRequested) continue; // removed with the other cancels below
        this.leaveDecode(done);
        this.finish(done, endMs);
      }
    } else if (step.decodesPaused) {
      // Decoding sequences made no token: their step index stays where it was.
      if (this.decodeCount > 0)
        this.events.onDecodesPaused?.(this.decodeCount, endMs - step.startMs, this.decodeByPriority);
    } else {
      this.stepIndex += step.steps;
    }

    for (const { sequence, tokens } of step.chunks) {
      if (sequence.state !== 'prefill' || sequence.cancelRequested) continue;
      sequence.prefilledTokens += tokens;
      this.promptTokensComputed += tokens;
      if (sequence.prefilledTokens < sequence.prefillTarget) continue;
      this.prefilling.splice(this.prefilling.indexOf(sequence), 1);
      this.publishPromptBlocks(sequence);
      sequence.generatedBeforeDecode++;
      this.generatedTokensTotal++;
      if (sequence.firstTokenMs === null) {
        sequence.firstTokenMs = endMs;
        this.events.onFirstToken(sequence, endMs);
      }
      if (sequence.generatedBeforeDecode >= sequence.request.outputTokens) this.finish(sequence, endMs);
      else this.joinDecode(sequence);
    }

    for (const sequence of this.pendingCancels.splice(0)) this.removeCancelled(sequence, endMs);
  }

  private peekFinishing(): ModelledSequence<Tag> | undefined {
    // Entries of sequences that left decode (preempted, cancelled) are dropped lazily.
    while (this.finishing.length > 0) {
      const top = this.finishing.peek() as ModelledSequence<Tag>;
      if (top.state === 'decode' && top.lastStep === this.finishing.peekValue()) return top;
      this.finishing.pop();
    }
    return undefined;
  }

  private joinDecode(sequence: ModelledSequence<Tag>): void {
    sequence.state = 'decode';
    sequence.joinedStep = this.stepIndex;
    sequence.kvOffset = sequence.prefillTarget - this.stepIndex;
    sequence.lastStep = this.stepIndex + (sequence.request.outputTokens - sequence.generatedBeforeDecode) - 1;
    this.decodeCount++;
    this.decodeOffsetSum += sequence.kvOffset;
    const residue = this.residue(sequence.kvOffset);
    this.decodeByResidue[residue] = (this.decodeByResidue[residue] as number) + 1;
    const band = priorityBand(sequence.priority);
    this.decodeByPriority[band] = (this.decodeByPriority[band] as number) + 1;
    this.finishing.push(sequence, sequence.lastStep);
  }

  private residue(offset: number): number {
    return ((offset % this.blockTokens) + this.blockTokens) % this.blockTokens;
  }

  /**
   * Takes a sequence out of the decode aggregates; its generated count is frozen. The caller gives it its
   * next state (finished, cancelled, or waiting again) before any event reports it.
   */
  private leaveDecode(sequence: ModelledSequence<Tag>): void {
    sequence.generatedBeforeDecode += this.stepIndex - sequence.joinedStep;
    this.decodeCount--;
    this.decodeOffsetSum -= sequence.kvOffset;
    const residue = this.residue(sequence.kvOffset);
    this.decodeByResidue[residue] = (this.decodeByResidue[residue] as number) - 1;
    const band = priorityBand(sequence.priority);
    this.decodeByPriority[band] = (this.decodeByPriority[band] as number) - 1;
  }

  /** Frees a sequence's blocks: its KV tokens rounded up to blocks, of which the named ones are shared. */
  private releaseBlocks(sequence: ModelledSequence<Tag>, kvTokens: number): void {
    const held = Math.ceil(kvTokens / this.blockTokens);
    this.kv.releasePrivate(held - sequence.sharedBlockHashes.length);
    for (const hash of sequence.sharedBlockHashes) this.kv.releaseShared(hash);
    sequence.sharedBlockHashes = [];
  }

  /** KV tokens a running sequence holds (blocks were allocated for them). */
  private kvTokensOf(sequence: ModelledSequence<Tag>): number {
    return sequence.state === 'decode' ? sequence.kvOffset + this.stepIndex : sequence.prefillTarget;
  }

  private publishPromptBlocks(sequence: ModelledSequence<Tag>): void {
    const hashes = sequence.request.promptBlockHashes;
    if (!hashes) return;
    const fullBlocks = Math.min(hashes.length, Math.floor(sequence.prefillTarget / this.blockTokens));
    for (let index = sequence.sharedBlockHashes.length; index < fullBlocks; index++) {
      const hash = hashes[index] as number;
      if (this.kv.publish(hash)) sequence.sharedBlockHashes.push(hash);
      else break; // keep the shared list a prefix of the prompt's blocks
    }
  }

  private finish(sequence: ModelledSequence<Tag>, atMs: number): void {
    const kvTokens = sequence.request.promptTokens + sequence.generatedBeforeDecode - 1;
    const seed = sequence.request.outputSeed;
    const hashes = sequence.request.promptBlockHashes;
    // The answer's blocks become cacheable for the conversation's next turn.
    if (seed !== null && hashes && sequence.sharedBlockHashes.length === hashes.length) {
      const promptTokens = sequence.request.promptTokens;
      let previous = hashes.length > 0 ? (hashes[hashes.length - 1] as number) : 0;
      const fullBlocks = Math.floor(kvTokens / this.blockTokens);
      for (let block = Math.floor(promptTokens / this.blockTokens); block < fullBlocks; block++) {
        previous = chainBlockHash(previous, seed * 4099 + block);
        if (!this.kv.publish(previous)) break;
        sequence.sharedBlockHashes.push(previous);
      }
    }
    this.releaseBlocks(sequence, kvTokens);
    sequence.state = 'finished';
    this.running.delete(sequence);
    this.events.onFinish(sequence, atMs, false);
  }

  private removeCancelled(sequence: ModelledSequence<Tag>, atMs: number): void {
    if (sequence.state === 'finished' || sequence.state === 'cancelled') return;
    if (sequence.state === 'decode') {
      const kvTokens = this.kvTokensOf(sequence);
      this.leaveDecode(sequence);
      this.releaseBlocks(sequence, kvTokens);
    } else if (sequence.state === 'prefill') {
      this.prefilling.splice(this.prefilling.indexOf(sequence), 1);
      this.releaseBlocks(sequence, sequence.prefillTarget);
    }
    sequence.state = 'cancelled';
    this.running.delete(sequence);
    this.events.onFinish(sequence, atMs, true);
  }

  /** Recompute preemption: the running request that would be admitted last loses its blocks and waits. */
  private preemptLowestPriority(nowMs: number): void {
    let victim: ModelledSequence<Tag> | undefined;
    for (const sequence of this.running)
      if (!victim || this.ordering.compare(victim, sequence) < 0) victim = sequence;
    if (!victim) return;
    const kvTokens = this.kvTokensOf(victim);
    if (victim.state === 'decode') this.leaveDecode(victim);
    else this.prefilling.splice(this.prefilling.indexOf(victim), 1);
    this.releaseBlocks(victim, kvTokens);
    this.running.delete(victim);
    victim.preemptions++;
    this.preemptionsTotal++;
    // Recompute: the prompt and the answer so far are prefilled again; the next token continues the answer.
    victim.prefillTarget = victim.request.promptTokens + victim.generatedBeforeDecode;
    victim.prefilledTokens = 0;
    this.enqueue(victim);
    this.events.onPreempt?.(victim, nowMs);
  }
}
