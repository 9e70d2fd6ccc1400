import type { ServiceBand } from '../../core/service-tiers.js';
import type { FleetAttempt } from '../../fleet/fleet-core.js';
import type { PromptSegment } from '../../performance-model/block-hashes.js';

/** One request as the simulator carries it from arrival to completion. */
export interface SimulatedRequest {
  /** Arrival order, from 0. */
  id: number;
  arrivalMs: number;
  tenant: string;
  tier: ServiceBand;
  promptTokens: number;
  outputTokens: number;
  promptBlockHashes: number[] | null;
  outputSeed: number | null;
  /**
   * Request features beyond plain text it uses (core/request-features.ts), drawn from its class's
   * `features`; absent: none. Routing's `serves-features` filter reads them.
   */
  features?: readonly string[] | undefined;
  /** Who sent it: follow-ups (next turn, next closed-loop request) go back to this client. */
  client: SimulatedClient | null;
  /** Set by the simulator: the fleet core's attempt that runs it (replica, queue place, timings). */
  attempt?: FleetAttempt<SimulatedRequest>;
}

/** A sender with state between requests: a multi-turn session or a closed-loop user. */
export interface SimulatedClient {
  /** Conversation so far (system prompt, earlier turns) for the next turn's prompt. */
  segments: PromptSegment[];
  classIndex: number;
  turnsLeft: number;
}

/**
 * Where requests come from. Open-loop sources know their next arrival time in advance; closed-loop ones
 * and sessions also react to completions (`onComplete` returns when the client sends again).
 */
export interface WorkloadSource {
  /** Time of the next arrival that does not depend on completions, or Infinity. */
  peekArrivalMs(): number;
  /** Takes that arrival. */
  takeArrival(): SimulatedRequest;
  /** A request finished at `atMs`; returns the client's next request (with its arrival time) or null. */
  onComplete(request: SimulatedRequest, atMs: number): SimulatedRequest | null;
  /** How many requests the run will create, when known in advance (for progress). */
  readonly expectedRequests: number | null;
}
