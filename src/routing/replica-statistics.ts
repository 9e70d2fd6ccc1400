/**
 * What the router learns from outcomes: an exponentially weighted moving average of each replica's TTFT
 * and inter-token latency. Fed by `RoutingPolicy.observe`; read by the latency scorer.
 */
export interface ReplicaLatency {
  ttftMs: number | null;
  interTokenMs: number | null;
  samples: number;
}

export class ReplicaStatistics {
  private readonly latencies = new Map<string, ReplicaLatency>();

  /** `alpha`: weight of the newest sample (0.2 ≈ the last ten samples matter). */
  constructor(private readonly alpha = 0.2) {}

  observe(replica: string, ttftMs: number | null, interTokenMs: number | null): void {
    let latency = this.latencies.get(replica);
    if (!latency) {
      latency = { ttftMs: null, interTokenMs: null, samples: 0 };
      this.latencies.set(replica, latency);
    }
    latency.samples++;
    if (ttftMs !== null)
      latency.ttftMs =
        latency.ttftMs === null ? ttftMs : latency.ttftMs + this.alpha * (ttftMs - latency.ttftMs);
    if (interTokenMs !== null)
      latency.interTokenMs =
        latency.interTokenMs === null
          ? interTokenMs
          : latency.interTokenMs + this.alpha * (interTokenMs - latency.interTokenMs);
  }

  /** Forgets a replica that left the fleet. */
  forget(replica: string): void {
    this.latencies.delete(replica);
  }

  latency(replica: string): ReplicaLatency | undefined {
    return this.latencies.get(replica);
  }
}
