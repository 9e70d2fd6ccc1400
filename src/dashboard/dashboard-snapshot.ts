/**
 * The JSON the dashboard page polls (`GET /v1/dashboard/snapshot`), shared as types with the page's code
 * (src/dashboard/client). Snake case, as the rest of Gravity's HTTP API. Times are epoch milliseconds.
 */

/** One finished request, as the recent-requests table and the live charts read it. */
export interface RecentRequestJson {
  /** Increases by one per request recorded: the page asks only for those after the last it saw. */
  sequence: number;
  request_id: string;
  finished_at_ms: number;
  /** The band it was scheduled in: priority, default, flex or batch. */
  tier: string;
  tenant: string;
  model: string;
  replica: string | null;
  status: number;
  error_code: string | null;
  prompt_tokens: number;
  cached_prompt_tokens: number;
  completion_tokens: number;
  ttft_ms: number | null;
  itl_p50_ms: number | null;
  itl_p95_ms: number | null;
  energy_joules: number | null;
  /** `measured:…` or `estimated:…`; null when metering is off. */
  energy_source: string | null;
  cost_usd: number | null;
  price_usd: number | null;
  margin_usd: number | null;
  /** Routing's explanation (the ledger's `route`, parsed); null when no routing ran. */
  route: unknown;
}

export interface TierTargetJson {
  tier: string;
  ttft_target_ms: number;
  /** The tier's time-per-output-token target: the SLO line on the inter-token latency chart. */
  itl_target_ms: number;
}

export interface TierQueueJson {
  tier: string;
  /** Requests in Gravity that have not started on an engine yet (in the gateway's queue, or being routed). */
  waiting: number;
  running: number;
}

export interface ReplicaJson {
  id: string;
  /** The routing circuit: closed (healthy), open (ejected) or half-open (on probation). */
  health: string;
  last_error: string | null;
  slots_busy: number;
  slots_total: number;
  waiting: number;
  /** In [0, 1]; null where the engine cannot tell. */
  kv_used_fraction: number | null;
  /** Prompt tokens found in the engine's prefix cache over those looked up; null before any lookup. */
  prefix_hit_rate: number | null;
}

export interface DashboardSnapshotJson {
  object: 'dashboard.snapshot';
  now_ms: number;
  /** Whether a ledger backs `/v1/usage` (history); false when metering is off. */
  ledger: boolean;
  tiers: TierTargetJson[];
  queues: TierQueueJson[];
  replicas: ReplicaJson[];
  /** Requests finished after the `after` sequence asked for, oldest first (at most the buffer's size). */
  requests: RecentRequestJson[];
  /** The newest sequence recorded: the next poll's `after`. */
  last_sequence: number;
}
