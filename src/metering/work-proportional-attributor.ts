/**
 * Splits what a replica spends over each interval (joules, dollars) across the requests running on it,
 * in proportion to the work each did in that interval. What no request was running for is kept as idle.
 *
 * The split conserves the total: for every interval, the shares handed to requests plus the idle share
 * equal the interval's amount (up to floating-point rounding), so per-request figures plus idle add up
 * to the replica's total. Pure and clock-free: the caller decides when intervals close.
 */
export interface AttributedAmounts {
  energyJoules: number;
  costUsd: number;
}

interface ActiveRequest {
  /** Cumulative weighted work, read at each interval close. */
  readWork: () => number;
  workAtLastClose: number;
  energyJoules: number;
  costUsd: number;
}

export class WorkProportionalAttributor {
  private readonly active = new Map<string, ActiveRequest>();
  private idleEnergyJoules = 0;
  private idleCostUsd = 0;
  private totalEnergyJoules = 0;
  private totalCostUsd = 0;

  /**
   * A request starts sharing this replica's intervals. `readWork` returns its cumulative weighted work
   * (e.g. prefill tokens × prefill weight + decode tokens × decode weight); it must never decrease.
   */
  begin(requestId: string, readWork: () => number): void {
    this.active.set(requestId, { readWork, workAtLastClose: readWork(), energyJoules: 0, costUsd: 0 });
  }

  /**
   * Closes an interval with what the replica spent during it. Requests that did work share it by their
   * work; if requests were running but none did measurable work (all waiting on a first step), they
   * share it equally; with no request running it is idle.
   */
  closeInterval(amounts: AttributedAmounts): void {
    this.totalEnergyJoules += amounts.energyJoules;
    this.totalCostUsd += amounts.costUsd;
    if (this.active.size === 0) {
      this.idleEnergyJoules += amounts.energyJoules;
      this.idleCostUsd += amounts.costUsd;
      return;
    }
    let totalWork = 0;
    const workDone: number[] = [];
    for (const request of this.active.values()) {
      const work = request.readWork();
      const done = Math.max(0, work - request.workAtLastClose);
      request.workAtLastClose = work;
      workDone.push(done);
      totalWork += done;
    }
    let index = 0;
    for (const request of this.active.values()) {
      const share = totalWork > 0 ? (workDone[index] as number) / totalWork : 1 / this.active.size;
      request.energyJoules += amounts.energyJoules * share;
      request.costUsd += amounts.costUsd * share;
      index++;
    }
  }

  /** The request leaves; returns everything attributed to it. Close the interval first to include its last work. */
  end(requestId: string): AttributedAmounts {
    const request = this.active.get(requestId);
    if (!request) return { energyJoules: 0, costUsd: 0 };
    this.active.delete(requestId);
    return { energyJoules: request.energyJoules, costUsd: request.costUsd };
  }

  get activeRequests(): number {
    return this.active.size;
  }

  totals(): { energyJoules: number; costUsd: number; idleEnergyJoules: number; idleCostUsd: number } {
    return {
      energyJoules: this.totalEnergyJoules,
      costUsd: this.totalCostUsd,
      idleEnergyJoules: this.idleEnergyJoules,
      idleCostUsd: this.idleCostUsd,
    };
  }
}
