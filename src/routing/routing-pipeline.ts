import type { ReplicaFilter, ReplicaPicker, ReplicaScorer, RoutingState } from './routing-plugin.js';
import type {
  ReplicaLoadView,
  ReplicaScore,
  RoutedRequestView,
  RouteOutcome,
  RoutingDecision,
  RoutingPolicy,
} from './routing-policy.js';
import { RoutingRejection } from './routing-rejection.js';

export interface RoutingPipelineOptions {
  name: string;
  filters: readonly ReplicaFilter[];
  scorers: ReadonlyArray<{ scorer: ReplicaScorer; weight: number }>;
  picker: ReplicaPicker;
  state: RoutingState;
}

/** Candidates shown in an explanation. */
const explainedCandidates = 5;

/**
 * One profile run as a policy: filters drop replicas, each scorer scores the rest in [0, 1], the picker
 * chooses from the weighted totals, and the chosen replica's prompt blocks go into the prefix index.
 *
 * `pick` is the simulator's hot path (once per simulated request): it reuses typed arrays and allocates
 * nothing. `decide` runs the same steps and also reports each candidate's scores.
 */
export class RoutingPipeline implements RoutingPolicy {
  readonly name: string;
  readonly usesPromptBlocks: boolean;
  private readonly options: RoutingPipelineOptions;
  private candidates = new Int32Array(16);
  private totals = new Float64Array(16);
  private scores = new Float64Array(16);
  /** Per scorer, the last call's scores (only kept by `decide`). */
  private explained: Float64Array[] = [];
  /** Candidates left by the filters in the last run. */
  private lastCount = 0;

  constructor(options: RoutingPipelineOptions) {
    this.options = options;
    this.name = options.name;
    this.usesPromptBlocks = options.scorers.some(({ scorer }) => scorer.usesPromptBlocks === true);
  }

  pick(replicas: readonly ReplicaLoadView[], request: RoutedRequestView, nowMs: number): number {
    return this.run(replicas, request, nowMs, false, false);
  }

  decide(
    replicas: readonly ReplicaLoadView[],
    request: RoutedRequestView,
    nowMs: number,
    options: { dryRun?: boolean } = {},
  ): RoutingDecision {
    const index = this.run(replicas, request, nowMs, true, options.dryRun === true);
    const count = this.lastCount;
    const kept = new Set(Array.from(this.candidates.subarray(0, count)));
    const filtered: Array<{ replica: string; filter: string }> = [];
    replicas.forEach((replica, position) => {
      if (kept.has(position)) return;
      const failing = this.options.filters.find((filter) => !filter.accepts(request, replica, nowMs));
      filtered.push({ replica: replica.id, filter: failing?.type ?? 'unknown' });
    });
    const ranked: ReplicaScore[] = [];
    for (let k = 0; k < count; k++) {
      const scorers: Record<string, number> = {};
      this.options.scorers.forEach(({ scorer }, s) => {
        scorers[scorer.type] = round(this.explained[s]?.[k] ?? 0);
      });
      ranked.push({
        replica: (replicas[this.candidates[k] as number] as ReplicaLoadView).id,
        score: round(this.totals[k] as number),
        scorers,
      });
    }
    const chosen = (replicas[index] as ReplicaLoadView).id;
    ranked.sort((a, b) => (a.replica === chosen ? -1 : b.replica === chosen ? 1 : b.score - a.score));
    return { index, profile: this.name, filtered, top: ranked.slice(0, explainedCandidates) };
  }

  observe(outcome: RouteOutcome): void {
    this.options.state.statistics.observe(outcome.replica, outcome.ttftMs, outcome.interTokenMs);
  }

  private run(
    replicas: readonly ReplicaLoadView[],
    request: RoutedRequestView,
    nowMs: number,
    explain: boolean,
    dryRun: boolean,
  ): number {
    const { filters, scorers, picker, state } = this.options;
    if (this.candidates.length < replicas.length) this.grow(replicas.length);
    const candidates = this.candidates;
    let lastFilter: ReplicaFilter | null = null;
    let softRejections = 0;
    let count = 0;
    for (let pass = 0; pass < 2 && count === 0; pass++) {
      // Second pass, only when soft filters emptied the first: hard filters alone.
      if (pass === 1 && softRejections === 0) break;
      for (let index = 0; index < replicas.length; index++) {
        const replica = replicas[index] as ReplicaLoadView;
        let accepted = true;
        for (let f = 0; f < filters.length; f++) {
          const filter = filters[f] as ReplicaFilter;
          if (pass === 1 && filter.soft) continue;
          if (!filter.accepts(request, replica, nowMs)) {
            accepted = false;
            lastFilter = filter;
            if (filter.soft) softRejections++;
            break;
          }
        }
        if (accepted) candidates[count++] = index;
      }
    }
    if (count === 0) {
      const filter = lastFilter ?? filters[0];
      throw new RoutingRejection(filter?.type ?? 'none', filter ? filter.rejection(request) : 'no replica');
    }
    this.lastCount = count;
    const totals = this.totals;
    for (let k = 0; k < count; k++) totals[k] = 0;
    // Fast path: one candidate needs no scores (unless the caller wants them explained).
    if (count > 1 || explain) {
      for (let s = 0; s < scorers.length; s++) {
        const { scorer, weight } = scorers[s] as { scorer: ReplicaScorer; weight: number };
        const scores = explain ? this.explainedScores(s, count) : this.scores;
        scorer.score(request, replicas, candidates, count, scores, nowMs);
        for (let k = 0; k < count; k++) totals[k] = (totals[k] as number) + weight * (scores[k] as number);
      }
    }
    const index = count === 1 ? (candidates[0] as number) : picker.pick(candidates, count, totals);
    if (!dryRun && this.usesPromptBlocks && request.promptBlockHashes)
      state.prefixIndex.record(request.promptBlockHashes, (replicas[index] as ReplicaLoadView).id, nowMs);
    return index;
  }

  private explainedScores(scorer: number, count: number): Float64Array {
    let scores = this.explained[scorer];
    if (!scores || scores.length < count) {
      scores = new Float64Array(Math.max(count, 16));
      this.explained[scorer] = scores;
    }
    return scores;
  }

  private grow(length: number): void {
    this.candidates = new Int32Array(length);
    this.totals = new Float64Array(length);
    this.scores = new Float64Array(length);
  }
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
