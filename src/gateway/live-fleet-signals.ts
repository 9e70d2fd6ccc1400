import type { Clock } from '../core/clock.js';
import type { EngineAdapter } from '../engines/engine-adapter.js';
import type { FleetCore, ReplicaSignals } from '../fleet/fleet-core.js';
import type { ReplicaHealthSnapshot } from '../routing/replica-health.js';
import type { RoutingConfig } from '../routing/routing-config.js';
import type { ReplicaLabels } from '../routing/routing-policy.js';
import { PrometheusScraper } from './engine-signals/prometheus-scraper.js';

/**
 * What only a live fleet has: engines to ask for their load, Prometheus endpoints to scrape, replicas to
 * probe on a timer. These are the fleet core's inputs, not its decisions — the core (src/fleet/) stays
 * clock-free and runs unchanged in the simulator, where the modelled replicas give the same signals.
 */
export class LiveFleetSignals {
  private readonly scrapers = new Map<string, PrometheusScraper>();
  private healthTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: {
      engines: readonly EngineAdapter[];
      routing: Pick<RoutingConfig, 'replicas' | 'health'>;
      clock: Clock;
    },
  ) {
    for (const [id, replica] of Object.entries(options.routing.replicas))
      if (replica.metrics)
        this.scrapers.set(
          id,
          new PrometheusScraper({ ...replica.metrics, nowMs: () => options.clock.nowMs() }),
        );
  }

  /** An engine's figures as the core reads them: its own load, refined by scraped metrics when fresh. */
  signalsOf(engine: EngineAdapter): ReplicaSignals {
    const scraper = this.scrapers.get(engine.id);
    if (!scraper) {
      return {
        get waitingRequests() {
          return engine.load().waiting;
        },
        get runningRequests() {
          return engine.load().slotsBusy;
        },
        get kvUsedFraction() {
          return engine.load().kvUsedFraction ?? null;
        },
      };
    }
    return {
      // Scraped figures see the engine's own queue; Gravity's count adds what Gravity has sent it.
      get waitingRequests() {
        return engine.load().waiting + (scraper.current()?.waitingRequests ?? 0);
      },
      get runningRequests() {
        return Math.max(engine.load().slotsBusy, scraper.current()?.runningRequests ?? 0);
      },
      get kvUsedFraction() {
        return scraper.current()?.kvUsedFraction ?? engine.load().kvUsedFraction ?? null;
      },
    };
  }

  /** Starts scrapers and active health checks; probe results go to the core's health. */
  start(core: FleetCore<unknown>): void {
    for (const scraper of this.scrapers.values()) scraper.start();
    const { intervalMs, timeoutMs } = this.options.routing.health;
    // Every engine is looked at on each tick, not a list taken now: engines join and leave at run time.
    const engines = this.options.engines;
    if (intervalMs > 0) {
      this.healthTimer = setInterval(() => {
        for (const engine of engines) if (engine.probe) void this.probe(core, engine, timeoutMs);
      }, intervalMs);
      this.healthTimer.unref();
    }
  }

  /** Runs one active check now (also what the timer does). */
  async probe(
    core: FleetCore<unknown>,
    engine: EngineAdapter,
    timeoutMs = this.options.routing.health.timeoutMs,
  ): Promise<void> {
    if (!engine.probe) return;
    try {
      await engine.probe(AbortSignal.timeout(timeoutMs));
      core.onProbe(engine.id, this.options.clock.nowMs(), null);
      // A probe may have taught the engine its models' context windows (an upstream's `/models`).
      core.replicas.find((replica) => replica.id === engine.id)?.updateModels(engine.models());
    } catch (error) {
      core.onProbe(engine.id, this.options.clock.nowMs(), (error as Error).message);
    }
  }

  close(): void {
    for (const scraper of this.scrapers.values()) scraper.close();
    if (this.healthTimer) clearInterval(this.healthTimer);
  }

  /** Health, scraped-signal freshness and labels per replica (`GET /v1/routing/replicas`). */
  snapshot(core: FleetCore<unknown>): {
    replicas: Array<{
      id: string;
      labels: ReplicaLabels;
      health: ReplicaHealthSnapshot | null;
      signals: { stale: boolean; lastError: string | null } | null;
    }>;
    prefixIndexBlocks: number;
  } {
    const health = new Map(
      core.health.snapshot(this.options.clock.nowMs()).map((entry) => [entry.replica, entry]),
    );
    return {
      replicas: core.replicas.map((replica) => {
        const scraper = this.scrapers.get(replica.id);
        return {
          id: replica.id,
          labels: replica.labels,
          health: health.get(replica.id) ?? null,
          signals: scraper ? { stale: scraper.current() === null, lastError: scraper.lastError } : null,
        };
      }),
      prefixIndexBlocks: core.routingState.prefixIndex.size,
    };
  }
}
