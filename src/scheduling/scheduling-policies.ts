/**
 * The gateway's queue in front of each engine replica is three separate policies, so each can be replaced
 * alone (the split the Kubernetes Gateway API Inference Extension's flow control makes between intra-flow
 * dispatch, inter-flow dispatch and saturation detection):
 *
 * - ordering: which request goes first within one tier and tenant (a flow);
 * - fairness: which tenant's flow goes next within a tier (virtual token counters, VTC — OSDI'24);
 * - saturation: whether a request may wait at all, given the wait the queue predicts for it.
 *
 * Tiers themselves are strict bands: priority, then default, then flex; batch only in spare capacity.
 * Every policy is a plain object of functions over plain state; the per-band state (VTC counters) lives
 * in the scheduler that uses them, created on demand. Nothing here reads a clock: callers pass times.
 */

import type { ServiceBand } from '../core/service-tiers.js';

/** A request as the queue sees it. */
export interface QueuedRequestView {
  readonly arrivalOrder: number;
  readonly arrivalMs: number;
  /** Latest time its first token should appear: arrival + the tier's TTFT target. */
  readonly deadlineMs: number;
  readonly promptTokens: number;
}

export interface OrderingPolicy {
  readonly name: string;
  /** Negative when `a` goes before `b`. */
  compare(a: QueuedRequestView, b: QueuedRequestView): number;
}

/** Earliest deadline first; arrival breaks ties. Within one tier deadlines follow arrivals unless a request carries its own. */
export const earliestDeadlineFirst: OrderingPolicy = {
  name: 'earliest-deadline',
  compare: (a, b) => a.deadlineMs - b.deadlineMs || a.arrivalOrder - b.arrivalOrder,
};

export const arrivalOrder: OrderingPolicy = {
  name: 'arrival',
  compare: (a, b) => a.arrivalOrder - b.arrivalOrder,
};

/** A tenant's queue within a tier, as the fairness policy sees it. */
export interface FlowView {
  readonly tenant: string;
  /** VTC's counter: weighted tokens served to this tenant in this tier. */
  readonly servedTokens: number;
  /** Arrival order of the flow's head request. */
  readonly headArrivalOrder: number;
}

export interface FairnessPolicy {
  readonly name: string;
  /** Index of the flow to serve next among non-empty flows (never empty). */
  pick(flows: readonly FlowView[]): number;
  /**
   * A tenant's counter when its flow becomes backlogged again: VTC lifts an idle tenant to the least
   * counter of the backlogged ones, so credit saved while idle cannot be spent as a burst later.
   */
  counterOnBacklog(previous: number, backloggedMinimum: number | null): number;
}

/** VTC: serve the backlogged tenant with the fewest weighted tokens served (ties: oldest head). */
export const virtualTokenCounter: FairnessPolicy = {
  name: 'vtc',
  pick: (flows) => {
    let best = 0;
    for (let index = 1; index < flows.length; index++) {
      const flow = flows[index] as FlowView;
      const current = flows[best] as FlowView;
      if (
        flow.servedTokens < current.servedTokens ||
        (flow.servedTokens === current.servedTokens && flow.headArrivalOrder < current.headArrivalOrder)
      )
        best = index;
    }
    return best;
  },
  counterOnBacklog: (previous, backloggedMinimum) =>
    backloggedMinimum === null ? previous : Math.max(previous, backloggedMinimum),
};

/** No fairness: the flow whose head arrived first, i.e. first come, first served across tenants. */
export const noFairness: FairnessPolicy = {
  name: 'none',
  pick: (flows) => {
    let best = 0;
    for (let index = 1; index < flows.length; index++)
      if ((flows[index] as FlowView).headArrivalOrder < (flows[best] as FlowView).headArrivalOrder)
        best = index;
    return best;
  },
  counterOnBacklog: (previous) => previous,
};

export interface TierTargets {
  ttftMs: number;
  tpotMs: number;
  /** How long a request of this tier may wait in the queue before it is refused as overloaded. */
  maxQueueWaitMs: number;
}

/** What the saturation policy decides for a request on arrival. */
export type AdmissionDecision =
  | { kind: 'queue'; expiresAtMs: number }
  | { kind: 'shed'; retryAfterMs: number; predictedTtftMs: number };

export interface SaturationPolicy {
  readonly name: string;
  decide(options: {
    tier: ServiceBand;
    nowMs: number;
    /** The queue's estimate of this request's time to first token if it waits its turn. */
    predictedTtftMs: number;
    predictedWaitMs: number;
    targets: TierTargets;
  }): AdmissionDecision;
}

/**
 * SLO-aware shedding, per tier, when the predicted TTFT would miss the tier's target: `flex` is refused
 * at once (429 with Retry-After: cheap work should come back later, not clog the queue); `default` waits
 * up to its bound and is then refused as overloaded; `priority` always waits (it is served first
 * anyway); `batch` always waits (it runs only in spare capacity and has hours).
 */
export const sloShedding: SaturationPolicy = {
  name: 'slo',
  decide: ({ tier, nowMs, predictedTtftMs, predictedWaitMs, targets }) => {
    if (tier === 'flex' && predictedTtftMs > targets.ttftMs)
      return {
        kind: 'shed',
        // An unbounded predicted wait (higher tiers saturate the replica): come back in a minute.
        retryAfterMs: Math.min(60_000, Math.max(1000, predictedWaitMs)),
        predictedTtftMs,
      };
    return { kind: 'queue', expiresAtMs: nowMs + targets.maxQueueWaitMs };
  },
};

/** Never sheds: every request waits until served or until its tier's queue bound. */
export const neverShed: SaturationPolicy = {
  name: 'none',
  decide: ({ nowMs, targets }) => ({ kind: 'queue', expiresAtMs: nowMs + targets.maxQueueWaitMs }),
};

export const orderingPolicies: Record<string, OrderingPolicy> = {
  [earliestDeadlineFirst.name]: earliestDeadlineFirst,
  [arrivalOrder.name]: arrivalOrder,
};
export const fairnessPolicies: Record<string, FairnessPolicy> = {
  [virtualTokenCounter.name]: virtualTokenCounter,
  [noFairness.name]: noFairness,
};
export const saturationPolicies: Record<string, SaturationPolicy> = {
  [sloShedding.name]: sloShedding,
  [neverShed.name]: neverShed,
};
