/**
 * Ordering: which waiting request an engine replica admits next. One of the three queueing policies
 * (ordering, fairness, saturation: src/scheduling/scheduling-policies.ts); plain functions of the
 * requests' fields, so the emulated engine and the simulator run the same code.
 */
export interface OrderedRequest {
  /** Position in arrival order at this replica; preempted requests keep theirs. */
  readonly arrivalOrder: number;
  /** Lower runs first: the tier's rank (priority 0, default 1, flex 2, batch 3). */
  readonly priority: number;
}

export interface QueueOrderingPolicy {
  readonly name: string;
  /** Negative when `a` should be admitted before `b`. A total order: ties are broken by arrival. */
  compare(a: OrderedRequest, b: OrderedRequest): number;
}

/** First come, first served: what vLLM's default `fcfs` policy does. */
export const firstComeFirstServed = {
  name: 'fcfs',
  compare: (a: OrderedRequest, b: OrderedRequest) => a.arrivalOrder - b.arrivalOrder,
} satisfies QueueOrderingPolicy;

/** Strict tier priority, arrival within a tier: vLLM's `priority` policy with tiers as priorities. */
export const tierPriority = {
  name: 'priority',
  compare: (a: OrderedRequest, b: OrderedRequest) =>
    a.priority - b.priority || a.arrivalOrder - b.arrivalOrder,
} satisfies QueueOrderingPolicy;

export const queueOrderingPolicies: Record<string, QueueOrderingPolicy> = {
  [firstComeFirstServed.name]: firstComeFirstServed,
  [tierPriority.name]: tierPriority,
};
export const queueOrderingPolicyNames = Object.keys(queueOrderingPolicies) as [string, ...string[]];
