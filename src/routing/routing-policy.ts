/**
 * Routing: which replica of a model serves a request. A policy sees plain load figures and a clock
 * reading, never sockets or wall time, so the gateway and the fleet simulator run the same code
 * (../shared/STYLE.md). The filter → score → pick pipeline with per-tier profiles builds on this
 * boundary; here are the baseline policies that every comparison needs.
 */
export interface ReplicaLoadView {
  /** Stable id, e.g. `h100-0`. */
  readonly id: string;
  /** Requests waiting inside the replica's engine. */
  readonly waitingRequests: number;
  /** Requests the replica's engine is running. */
  readonly runningRequests: number;
  /** Fraction of the replica's KV cache in use, or null where unknown (an upstream without metrics). */
  readonly kvUsedFraction: number | null;
}

export interface RoutedRequestView {
  readonly promptTokens: number;
  /** Tier rank (priority 0 … batch 3). */
  readonly priority: number;
}

export interface RoutingPolicy {
  readonly name: string;
  /** Index into `replicas` (never empty) of the replica that should serve `request`. */
  pick(replicas: readonly ReplicaLoadView[], request: RoutedRequestView, nowMs: number): number;
}

export interface RoutingPolicyContext {
  /** Uniform in [0, 1): seeded in the simulator, Math.random live. */
  random: () => number;
}

type RoutingPolicyFactory = (context: RoutingPolicyContext) => RoutingPolicy;

/** Every replica in turn, blind to load: the baseline that load-aware routing is measured against. */
const roundRobin: RoutingPolicyFactory = () => {
  let next = 0;
  return {
    name: 'round-robin',
    pick: (replicas) => {
      const index = next % replicas.length;
      next = index + 1;
      return index;
    },
  };
};

/** Uniformly at random: what a plain Kubernetes Service does. */
const random: RoutingPolicyFactory = (context) => ({
  name: 'random',
  pick: (replicas) => Math.floor(context.random() * replicas.length),
});

/**
 * Fewest requests in the replica (waiting + running), ties broken at random so equal replicas share
 * load instead of the first one taking every tie.
 */
const leastLoaded: RoutingPolicyFactory = (context) => ({
  name: 'least-loaded',
  pick: (replicas) => {
    let best = -1;
    let bestLoad = Number.POSITIVE_INFINITY;
    let ties = 0;
    for (let index = 0; index < replicas.length; index++) {
      const replica = replicas[index] as ReplicaLoadView;
      const load = replica.waitingRequests + replica.runningRequests;
      if (load < bestLoad) {
        best = index;
        bestLoad = load;
        ties = 1;
      } else if (load === bestLoad && context.random() * ++ties < 1) {
        // Reservoir sampling over the tied replicas: each is picked with probability 1/ties.
        best = index;
      }
    }
    return best;
  },
});

export const routingPolicyFactories: Record<string, RoutingPolicyFactory> = {
  'round-robin': roundRobin,
  random,
  'least-loaded': leastLoaded,
};
export const routingPolicyNames = Object.keys(routingPolicyFactories) as [string, ...string[]];

export function createRoutingPolicy(name: string, context: RoutingPolicyContext): RoutingPolicy {
  const factory = routingPolicyFactories[name];
  if (!factory) throw new Error(`unknown routing policy '${name}' (known: ${routingPolicyNames.join(', ')})`);
  return factory(context);
}
