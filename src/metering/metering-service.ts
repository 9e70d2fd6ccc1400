import type { Clock } from '../core/clock.js';
import { quantileOfSorted } from '../core/quantile.js';
import type { MeteredFigures, RequestContext } from '../core/request-context.js';
import type { RequestObserver } from '../core/request-observer.js';
import type { EngineAdapter } from '../engines/engine-adapter.js';
import { type EngineConfig, engineHardware } from '../engines/engine-registry.js';
import { selectPowerSource } from './energy/select-power-source.js';
import type { LedgerStore, ReplicaPeriod } from './ledger/ledger-store.js';
import { LedgerWriter } from './ledger/ledger-writer.js';
import type { MeteringConfig, PricingConfig } from './metering-config.js';
import { PriceBook } from './price-book.js';
import { ReplicaMeter } from './replica-meter.js';
import type { UsageRecord } from './usage-record.js';

const joulesPerKwh = 3_600_000;
/** How often replica totals (including idle) are written to the ledger. */
const replicaPeriodMs = 10_000;

/**
 * Meters every request: attributes each replica's energy and cost to the requests it ran, prices them,
 * and writes one ledger record per request. Runs as a RequestObserver; the interval timer is the only
 * background work, and the per-token path never reaches it.
 */
export class MeteringService implements RequestObserver {
  private readonly meters = new Map<string, ReplicaMeter>();
  private readonly priceBook: PriceBook;
  private readonly writer: LedgerWriter;
  private timer: NodeJS.Timeout | undefined;
  private lastPeriod: { atEpochMs: number; totals: Map<string, ReturnType<ReplicaMeter['totals']>> };

  constructor(
    private readonly options: {
      /** Metering's slices of the config, and the engines whose hardware and meters it reads. */
      config: { metering: MeteringConfig; pricing: PricingConfig; engines: Record<string, EngineConfig> };
      engines: readonly EngineAdapter[];
      clock: Clock;
      store: LedgerStore;
      log: (message: string, details: Record<string, unknown>) => void;
    },
  ) {
    const { config, engines, clock } = options;
    this.priceBook = new PriceBook(config.pricing);
    this.writer = new LedgerWriter(options.store, options.log, config.metering.commitWindowMs);
    const hardwareById = new Map(
      Object.entries(config.engines).map(([id, engineConfig]) => [id, engineHardware(engineConfig)]),
    );
    const cpuEnginesOnHost = [...hardwareById.values()].filter(
      (hardware) => hardware.processor === 'cpu' && hardware.onThisHost,
    ).length;
    for (const engine of engines) {
      const engineConfig = config.engines[engine.id];
      const hardware = hardwareById.get(engine.id);
      if (!engineConfig || !hardware) continue;
      const powerSource = selectPowerSource({
        engine,
        hardware,
        energy: engineConfig.metering.energy,
        cpuEnginesOnHost,
      });
      this.meters.set(
        engine.id,
        new ReplicaMeter(engine.id, powerSource, engineConfig.metering, clock.nowMs()),
      );
    }
    this.lastPeriod = { atEpochMs: clock.epochMs(), totals: this.snapshotTotals() };
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.config.metering.intervalMs);
    this.timer.unref();
  }

  /** Closes an interval on every replica; writes replica periods when one is due. */
  tick(): void {
    const nowMs = this.options.clock.nowMs();
    for (const meter of this.meters.values()) meter.closeInterval(nowMs);
    if (this.options.clock.epochMs() - this.lastPeriod.atEpochMs >= replicaPeriodMs)
      void this.writeReplicaPeriods();
  }

  onRequestStart(): void {}

  onRouted(context: RequestContext): void {
    if (context.engineId) this.meters.get(context.engineId)?.begin(context, this.options.clock.nowMs());
  }

  /** A retry leaves this replica before its first token: close its share there (it did little work). */
  onRouteAbandoned(context: RequestContext): void {
    if (context.engineId) this.meters.get(context.engineId)?.end(context, this.options.clock.nowMs());
  }

  /**
   * Prices the request and writes its record. The record is written whatever fails on the way: a figure
   * that cannot be computed (energy attribution, the price) is recorded as 0 and the failure logged,
   * so an operator can see it and reprice from the token counts; a request is never lost from the ledger
   * and never fails its client because of metering.
   */
  onRequestEnd(context: RequestContext): Promise<void> {
    const { clock, config } = this.options;
    const meter = context.engineId ? this.meters.get(context.engineId) : undefined;
    const amounts = this.orZero(
      context,
      'energy and cost attribution',
      { energyJoules: 0, costUsd: 0 },
      () => (meter ? meter.end(context, clock.nowMs()) : { energyJoules: 0, costUsd: 0 }),
    );
    const tier = context.serviceTier === 'auto' ? 'default' : context.serviceTier;
    const usage = context.usage;
    const priceUsd = usage
      ? this.orZero(context, 'price', 0, () => {
          const price = this.priceBook.priceUsd(context.model, tier, usage, context.endpoint);
          if (!(Number.isFinite(price) && price >= 0)) throw new Error(`price ${price} is not a charge`);
          return price;
        })
      : 0;
    const metered: MeteredFigures = {
      energyJoules: amounts.energyJoules,
      energySource: meter?.energySource ?? 'none',
      costUsd: amounts.costUsd,
      costSource: meter?.costSource ?? 'none',
      priceUsd,
      marginUsd: priceUsd - amounts.costUsd,
      carbonGrams: (amounts.energyJoules / joulesPerKwh) * config.metering.gridIntensityGramsPerKwh,
    };
    context.metered = metered;
    return this.writer.write(this.recordOf(context, metered, tier));
  }

  /** `compute`'s result, or `fallback` with the failure logged (see onRequestEnd). */
  private orZero<T>(context: RequestContext, what: string, fallback: T, compute: () => T): T {
    try {
      return compute();
    } catch (error) {
      this.options.log(`metering: ${what} failed, recorded as 0`, {
        requestId: context.requestId,
        error: error instanceof Error ? error.message : String(error),
      });
      return fallback;
    }
  }

  private recordOf(context: RequestContext, metered: MeteredFigures, tier: string): UsageRecord {
    const epochOffsetMs = context.receivedAtEpochMs - context.receivedAtMs;
    const finishedAtMs = context.finishedAtMs ?? context.receivedAtMs;
    const gaps = [...context.interTokenGapsMs].sort((a, b) => a - b);
    const usage = context.usage;
    return {
      requestId: context.requestId,
      receivedAtMs: Math.round(context.receivedAtEpochMs),
      finishedAtMs: Math.round(finishedAtMs + epochOffsetMs),
      endpoint: context.endpoint,
      tenant: context.tenant ?? 'anonymous',
      apiKeyId: context.apiKeyId,
      model: context.model,
      engine: context.engineId,
      replica: context.engineId,
      tier,
      stream: context.stream,
      status: context.status,
      errorCode: context.errorCode,
      finishReason: context.finishReason,
      // A request cut short (disconnect, error) has no final usage: record what was generated so far.
      promptTokens: usage?.promptTokens ?? context.prefillTokens,
      cachedPromptTokens: usage?.cachedPromptTokens ?? 0,
      completionTokens: usage?.completionTokens ?? context.decodeTokens,
      usageSource:
        usage?.source ?? (context.decodeTokens > 0 || context.prefillTokens > 0 ? 'counted' : 'none'),
      queueWaitMs: context.queueWaitMs,
      ttftMs: context.firstTokenAtMs === null ? null : context.firstTokenAtMs - context.receivedAtMs,
      itlMeanMs: gaps.length === 0 ? null : gaps.reduce((sum, gap) => sum + gap, 0) / gaps.length,
      itlP50Ms: quantileOfSorted(gaps, 0.5),
      itlP95Ms: quantileOfSorted(gaps, 0.95),
      itlMaxMs: gaps.length === 0 ? null : (gaps.at(-1) as number),
      e2eMs: finishedAtMs - context.receivedAtMs,
      energyJoules: metered.energyJoules,
      energySource: metered.energySource,
      costUsd: metered.costUsd,
      costSource: metered.costSource,
      priceUsd: metered.priceUsd,
      marginUsd: metered.marginUsd,
      carbonGrams: metered.carbonGrams,
      route: context.route,
      // Cut short after its first token: an engine failure mid-stream, or the client leaving.
      partial: context.errorCode !== null && context.firstTokenAtMs !== null,
      clientRequestId: context.clientRequestId,
    };
  }

  private snapshotTotals() {
    return new Map([...this.meters].map(([id, meter]) => [id, meter.totals()]));
  }

  private async writeReplicaPeriods(): Promise<void> {
    const nowEpochMs = this.options.clock.epochMs();
    const totals = this.snapshotTotals();
    const periods: ReplicaPeriod[] = [];
    for (const [replica, current] of totals) {
      const previous = this.lastPeriod.totals.get(replica);
      const meter = this.meters.get(replica);
      if (!previous || !meter) continue;
      periods.push({
        replica,
        periodStartMs: Math.round(this.lastPeriod.atEpochMs),
        periodEndMs: Math.round(nowEpochMs),
        energyJoules: current.energyJoules - previous.energyJoules,
        idleEnergyJoules: current.idleEnergyJoules - previous.idleEnergyJoules,
        energySource: meter.energySource,
        costUsd: current.costUsd - previous.costUsd,
        idleCostUsd: current.idleCostUsd - previous.idleCostUsd,
      });
    }
    this.lastPeriod = { atEpochMs: nowEpochMs, totals };
    await this.options.store.appendReplicaPeriods(periods).catch((error: Error) => {
      this.options.log('ledger: replica periods not written', { error: error.message });
    });
  }

  /** Writes what is pending (records, the last replica period) and closes the ledger. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.tick();
    await this.writer.drain();
    await this.writeReplicaPeriods();
    for (const meter of this.meters.values()) meter.close();
    await this.options.store.close();
  }
}
