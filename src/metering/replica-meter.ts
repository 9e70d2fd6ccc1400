import type { RequestContext } from '../core/request-context.js';
import type { EngineMeteringConfig } from '../engines/engine-metering-config.js';
import type { PowerSource } from './energy/power-source.js';
import { chargeForTokensUsd } from './token-rates.js';
import { type AttributedAmounts, WorkProportionalAttributor } from './work-proportional-attributor.js';

const msPerHour = 3_600_000;

/**
 * Energy and cost accounting for one replica. Each interval it reads the replica's energy counter and its
 * hourly cost, and splits both across the requests running on it by their weighted work (prefill and
 * decode tokens); what falls in intervals with no request running is the replica's idle share. A paid
 * upstream API is charged per token instead, with nothing idle.
 */
export class ReplicaMeter {
  private readonly attributor = new WorkProportionalAttributor();
  private lastEnergyJoules: number;
  private lastCloseMs: number;

  constructor(
    readonly replicaId: string,
    private readonly powerSource: PowerSource,
    private readonly config: EngineMeteringConfig,
    nowMs: number,
  ) {
    this.lastEnergyJoules = powerSource.energyJoules(nowMs);
    this.lastCloseMs = nowMs;
  }

  get energySource(): string {
    return this.powerSource.source;
  }

  get costSource(): string {
    if (!this.config.cost) return 'none';
    return 'hourlyUsd' in this.config.cost ? 'amortized-hourly' : 'per-token-api';
  }

  /**
   * The request starts sharing this replica. The interval is closed first, so energy spent before the
   * request arrived goes to whoever was running then (or to idle), not to the newcomer.
   */
  begin(context: RequestContext, nowMs: number): void {
    this.closeInterval(nowMs);
    const { prefillTokenWeight, decodeTokenWeight } = this.config.work;
    this.attributor.begin(
      context.requestId,
      () => context.prefillTokens * prefillTokenWeight + context.decodeTokens * decodeTokenWeight,
    );
  }

  /** Closes the current interval at `nowMs`: what the replica spent since the last close is attributed. */
  closeInterval(nowMs: number): void {
    const energyJoules = this.powerSource.energyJoules(nowMs);
    const elapsedMs = Math.max(0, nowMs - this.lastCloseMs);
    const cost = this.config.cost;
    const costUsd = cost && 'hourlyUsd' in cost ? (cost.hourlyUsd * elapsedMs) / msPerHour : 0;
    this.attributor.closeInterval({
      energyJoules: Math.max(0, energyJoules - this.lastEnergyJoules),
      costUsd,
    });
    this.lastEnergyJoules = energyJoules;
    this.lastCloseMs = Math.max(this.lastCloseMs, nowMs);
  }

  /** The request's share, including its last work (the interval is closed first). */
  end(context: RequestContext, nowMs: number): AttributedAmounts {
    this.closeInterval(nowMs);
    const share = this.attributor.end(context.requestId);
    return { energyJoules: share.energyJoules, costUsd: share.costUsd + this.perTokenCostUsd(context) };
  }

  private perTokenCostUsd(context: RequestContext): number {
    const cost = this.config.cost;
    if (!context.usage || !cost || 'hourlyUsd' in cost) return 0;
    return chargeForTokensUsd(context.usage, cost, context.endpoint);
  }

  totals() {
    return this.attributor.totals();
  }

  close(): void {
    this.powerSource.close();
  }
}
