import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { RequestContext } from '../core/request-context.js';
import type { RequestObserver } from '../core/request-observer.js';
import type { EngineAdapter, EngineCounters } from '../engines/engine-adapter.js';
import { LeanHistogram, LeanValue } from './lean-metrics.js';

const secondsPerMs = 1 / 1000;

/**
 * prom-client's default gauges that end in `_total`: Prometheus keeps that suffix for counters, and
 * `promtool check metrics` refuses them. Each is the sum of the same family without the suffix
 * (`nodejs_active_handles`, by type), so dropping them loses nothing: `sum(nodejs_active_handles)`.
 */
const misnamedDefaultGauges = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** The `tenant` value of every tenant past `metrics.maxTenantLabels`; tenant names cannot start with `(`. */
export const otherTenantsLabel = '(other)';

/** Why authentication refused a request: no `Authorization` header, or a key that is not valid (unknown, wrong secret, revoked). */
export type AuthFailureReason = 'missing_key' | 'invalid_key';

/**
 * Prometheus metrics for the gateway, named by Prometheus conventions (base units, `_total` counters).
 * docs/metrics.md lists each one. Latencies are observed when a request ends, from its context, so the
 * per-token path does no metrics work.
 */
export class PrometheusMetrics implements RequestObserver {
  readonly registry = new Registry();
  private readonly requests: LeanValue<'endpoint' | 'model' | 'status'>;
  private readonly promptTokens: LeanValue<'model' | 'tier' | 'tenant'>;
  private readonly cachedPromptTokens: LeanValue<'model' | 'tier' | 'tenant'>;
  private readonly completionTokens: LeanValue<'model' | 'tier' | 'tenant'>;
  private readonly energy: LeanValue<'model' | 'tier' | 'tenant' | 'source'>;
  private readonly cost: LeanValue<'model' | 'tier' | 'tenant'>;
  private readonly price: LeanValue<'model' | 'tier' | 'tenant'>;
  private readonly carbon: LeanValue<'model' | 'tier' | 'tenant'>;
  private readonly queueWait: LeanHistogram<'model'>;
  private readonly gatewayOverhead: LeanHistogram<'endpoint'>;
  private readonly timeToFirstToken: LeanHistogram<'model'>;
  private readonly interTokenLatency: LeanHistogram<'model'>;
  private readonly requestDuration: LeanHistogram<'endpoint' | 'model'>;
  private readonly inFlight: LeanValue<'model'>;
  private readonly authFailures: Record<AuthFailureReason, Counter.Internal>;

  /** Tenants given their own `tenant` label value so far, in order of first appearance. */
  private readonly labelledTenants = new Set<string>();
  private readonly maxTenantLabels: number;

  constructor(
    engines: () => readonly EngineAdapter[],
    /** The gateway's queues in front of the engines, read at scrape time. */
    queues: () => Iterable<EngineQueueFigures> = () => [],
    options: PrometheusMetricsOptions = {},
  ) {
    this.maxTenantLabels = options.maxTenantLabels ?? Number.POSITIVE_INFINITY;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    for (const name of misnamedDefaultGauges) this.registry.removeSingleMetric(name);
    this.requests = new LeanValue({
      type: 'counter',
      name: 'gravity_requests_total',
      help: 'Requests handled, by endpoint, model and HTTP status (499: client disconnected).',
      labelNames: ['endpoint', 'model', 'status'],
      registers,
    });
    this.promptTokens = new LeanValue({
      type: 'counter',
      name: 'gravity_prompt_tokens_total',
      help: 'Prompt tokens processed, by model, tier and tenant.',
      labelNames: ['model', 'tier', 'tenant'],
      registers,
    });
    this.cachedPromptTokens = new LeanValue({
      type: 'counter',
      name: 'gravity_cached_prompt_tokens_total',
      help: 'Prompt tokens served from an engine prefix cache, by model, tier and tenant.',
      labelNames: ['model', 'tier', 'tenant'],
      registers,
    });
    this.completionTokens = new LeanValue({
      type: 'counter',
      name: 'gravity_completion_tokens_total',
      help: 'Completion tokens generated, by model, tier and tenant.',
      labelNames: ['model', 'tier', 'tenant'],
      registers,
    });
    this.energy = new LeanValue({
      type: 'counter',
      name: 'gravity_energy_joules_total',
      help: 'Energy attributed to requests, by model, tier, tenant and source (measured:nvml, measured:rapl, estimated:power-model, estimated:performance-model).',
      labelNames: ['model', 'tier', 'tenant', 'source'],
      registers,
    });
    this.cost = new LeanValue({
      type: 'counter',
      name: 'gravity_cost_usd_total',
      help: 'Serving cost attributed to requests in US dollars, by model, tier and tenant.',
      labelNames: ['model', 'tier', 'tenant'],
      registers,
    });
    this.price = new LeanValue({
      type: 'counter',
      name: 'gravity_price_usd_total',
      help: 'Price charged for requests in US dollars, by model, tier and tenant.',
      labelNames: ['model', 'tier', 'tenant'],
      registers,
    });
    this.carbon = new LeanValue({
      type: 'counter',
      name: 'gravity_carbon_grams_total',
      help: 'Carbon attributed to requests in grams CO2e (energy × configured grid intensity), by model, tier and tenant.',
      labelNames: ['model', 'tier', 'tenant'],
      registers,
    });
    // The request-path histograms are lean ones (lean-histogram.ts): up to one observation per token.
    this.gatewayOverhead = new LeanHistogram({
      name: 'gravity_gateway_overhead_seconds',
      help: 'Time Gravity itself spent per request, excluding the engine: parsing, validation and routing, plus handling each streamed chunk until written.',
      labelNames: ['endpoint'],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers,
    });
    this.queueWait = new LeanHistogram({
      name: 'gravity_queue_wait_seconds',
      help: 'Time requests waited for an engine slot, by model.',
      labelNames: ['model'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.timeToFirstToken = new LeanHistogram({
      name: 'gravity_time_to_first_token_seconds',
      help: 'Time from request arrival to the first generated text, by model.',
      labelNames: ['model'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.interTokenLatency = new LeanHistogram({
      name: 'gravity_inter_token_latency_seconds',
      help: 'Gaps between consecutive streamed text chunks of one response, by model.',
      labelNames: ['model'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.requestDuration = new LeanHistogram({
      name: 'gravity_request_duration_seconds',
      help: 'Time from request arrival to the end of the response, by endpoint and model.',
      labelNames: ['endpoint', 'model'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.inFlight = new LeanValue({
      type: 'gauge',
      name: 'gravity_requests_in_flight',
      help: 'Requests being served right now, by model.',
      labelNames: ['model'],
      registers,
    });
    const slotsGauge = new Gauge({
      name: 'gravity_engine_slots',
      help: 'Execution slots of each engine, by state (busy or total).',
      labelNames: ['engine', 'state'],
      registers,
      collect() {
        // Reset first: an engine removed at run time (EPP discovery) must not keep its last figures.
        slotsGauge.reset();
        for (const engine of engines()) {
          const load = engine.load();
          slotsGauge.set({ engine: engine.id, state: 'busy' }, load.slotsBusy);
          slotsGauge.set({ engine: engine.id, state: 'total' }, load.slotsTotal);
        }
      },
    });
    const waitingGauge = new Gauge({
      name: 'gravity_engine_waiting_requests',
      help: 'Requests waiting for a free slot, by engine.',
      labelNames: ['engine'],
      registers,
      collect() {
        // Reset first: an engine removed at run time (EPP discovery) must not keep its last figures.
        waitingGauge.reset();
        for (const engine of engines()) waitingGauge.set({ engine: engine.id }, engine.load().waiting);
      },
    });
    const authFailures = new Counter({
      name: 'gravity_auth_failures_total',
      help: 'Requests refused with 401 for their API key, by reason (missing_key, invalid_key); they write no ledger row.',
      labelNames: ['reason'],
      registers,
    });
    // Both children made once: a flood of keyless requests costs one increment each.
    this.authFailures = {
      missing_key: authFailures.labels({ reason: 'missing_key' }),
      invalid_key: authFailures.labels({ reason: 'invalid_key' }),
    };
    registerEngineCounterMetrics(this.registry, engines);
    registerQueueMetrics(this.registry, queues);
  }

  /**
   * Admissions decided while the shared limit store (Redis) did not answer: admitted without limits
   * (`state.onUnavailable: open`) or refused with 503 (`closed`). Read from admission at scrape time, so
   * an outage costs the request path nothing more than admission's own count.
   */
  observeSharedState(
    admission: { readonly sharedUnavailableTotal: number },
    onUnavailable: 'open' | 'closed',
  ): void {
    let counted = 0;
    const unavailable = new Counter({
      name: 'gravity_shared_state_unavailable_total',
      help: 'Admissions decided without the shared limit store (Redis) because it did not answer; on_unavailable: open admitted them without limits, closed refused them (503 limits_unavailable).',
      labelNames: ['on_unavailable'],
      registers: [this.registry],
      collect() {
        const total = admission.sharedUnavailableTotal;
        if (total > counted) unavailable.inc({ on_unavailable: onUnavailable }, total - counted);
        counted = total;
      },
    });
    // Zero from the start, so that a rate over it exists before the first outage.
    unavailable.inc({ on_unavailable: onUnavailable }, 0);
  }

  /** A request refused by authentication (401): counted here, since it never reaches the ledger. */
  countAuthFailure(reason: AuthFailureReason): void {
    this.authFailures[reason].inc();
  }

  onRequestStart(context: RequestContext): void {
    this.perModel(context.model).inFlight.inc();
  }

  /**
   * Label children are looked up once per label combination and kept: prom-client hashes the label
   * object on every call otherwise, which the overhead bench showed on each request's path.
   */
  private readonly children = new Map<string, unknown>();
  private child<Child>(key: string, make: () => Child): Child {
    let found = this.children.get(key) as Child | undefined;
    if (found === undefined) {
      found = make();
      this.children.set(key, found);
    }
    return found;
  }

  private perModel(model: string) {
    return this.child(`model\0${model}`, () => ({
      inFlight: this.inFlight.labels({ model }),
      timeToFirstToken: this.timeToFirstToken.labels({ model }),
      interTokenLatency: this.interTokenLatency.labels({ model }),
      queueWait: this.queueWait.labels({ model }),
    }));
  }

  onRequestEnd(context: RequestContext): void {
    const { model, endpoint } = context;
    const tier = context.serviceTier === 'auto' ? 'default' : context.serviceTier;
    const tenant = this.tenantLabel(context.tenant ?? 'anonymous');
    const perModel = this.perModel(model);
    const perSeries = this.child(`series\0${model}\0${tier}\0${tenant}`, () => {
      const labels = { model, tier, tenant };
      return {
        promptTokens: this.promptTokens.labels(labels),
        cachedPromptTokens: this.cachedPromptTokens.labels(labels),
        completionTokens: this.completionTokens.labels(labels),
        cost: this.cost.labels(labels),
        price: this.price.labels(labels),
        carbon: this.carbon.labels(labels),
      };
    });
    perModel.inFlight.dec();
    this.child(`requests\0${endpoint}\0${model}\0${context.status}`, () =>
      this.requests.labels({ endpoint, model, status: String(context.status) }),
    ).inc();
    // Requests cut short have no final usage: count what was generated, as the ledger does.
    perSeries.promptTokens.inc(context.usage?.promptTokens ?? context.prefillTokens);
    perSeries.cachedPromptTokens.inc(context.usage?.cachedPromptTokens ?? 0);
    perSeries.completionTokens.inc(context.usage?.completionTokens ?? context.decodeTokens);
    const metered = context.metered;
    if (metered) {
      this.child(`energy\0${model}\0${tier}\0${tenant}\0${metered.energySource}`, () =>
        this.energy.labels({ model, tier, tenant, source: metered.energySource }),
      ).inc(metered.energyJoules);
      perSeries.cost.inc(metered.costUsd);
      perSeries.price.inc(metered.priceUsd);
      perSeries.carbon.inc(metered.carbonGrams);
    }
    if (context.queueWaitMs !== null) perModel.queueWait.observe(context.queueWaitMs * secondsPerMs);
    if (context.status !== 0) {
      this.child(`overhead\0${endpoint}`, () => this.gatewayOverhead.labels({ endpoint })).observe(
        context.gatewayOverheadMs * secondsPerMs,
      );
    }
    if (context.firstTokenAtMs !== null) {
      perModel.timeToFirstToken.observe((context.firstTokenAtMs - context.receivedAtMs) * secondsPerMs);
    }
    for (const gapMs of context.interTokenGapsMs) perModel.interTokenLatency.observe(gapMs * secondsPerMs);
    if (context.finishedAtMs !== null) {
      this.child(`duration\0${endpoint}\0${model}`, () =>
        this.requestDuration.labels({ endpoint, model }),
      ).observe((context.finishedAtMs - context.receivedAtMs) * secondsPerMs);
    }
  }

  /**
   * The `tenant` label value for a tenant: its name for the first `maxTenantLabels` tenants seen, then
   * `(other)`. Keys can name any number of tenants; this bounds the series (and the children kept above).
   */
  private tenantLabel(tenant: string): string {
    if (this.labelledTenants.has(tenant)) return tenant;
    if (this.labelledTenants.size >= this.maxTenantLabels) return otherTenantsLabel;
    this.labelledTenants.add(tenant);
    return tenant;
  }

  contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * vLLM's own metrics (names, units, labels `model_name` and `engine`) for every engine that counts its
 * own work, i.e. engines Gravity runs itself such as the emulated one. A Gravity in front of this one can
 * then scrape it exactly as it would scrape a vLLM server. Read lazily at scrape time: the engines keep
 * running totals, so no metrics work happens per token.
 */
function registerEngineCounterMetrics(registry: Registry, engines: () => readonly EngineAdapter[]): void {
  const registers = [registry];
  const counted = () =>
    engines().flatMap((engine) => {
      const counters = engine.extensions?.counters;
      return counters
        ? [
            {
              engine,
              counters,
              labels: { model_name: engine.models()[0]?.id ?? engine.id, engine: engine.id },
            },
          ]
        : [];
    });
  const gauge = (name: string, help: string, read: (engine: EngineAdapter) => number) => {
    const metric: Gauge<'model_name' | 'engine'> = new Gauge({
      name,
      help,
      labelNames: ['model_name', 'engine'],
      registers,
      collect() {
        for (const { engine, labels } of counted()) metric.set(labels, read(engine));
      },
    });
  };
  gauge(
    'vllm:num_requests_waiting',
    'Requests waiting to be admitted to the batch.',
    (engine) => engine.load().waiting,
  );
  gauge('vllm:num_requests_running', 'Requests in the running batch.', (engine) => engine.load().slotsBusy);
  gauge(
    'vllm:kv_cache_usage_perc',
    'KV cache usage: 1 means every block is in use.',
    (engine) => engine.load().kvUsedFraction ?? 0,
  );

  // Counters advance by the difference since the last scrape, so they stay counters (TYPE counter).
  const counter = (name: string, help: string, read: (counters: EngineCounters) => number) => {
    const seen = new Map<string, number>();
    const metric: Counter<'model_name' | 'engine'> = new Counter({
      name,
      help,
      labelNames: ['model_name', 'engine'],
      registers,
      collect() {
        for (const { engine, counters, labels } of counted()) {
          const value = read(counters());
          const previous = seen.get(engine.id);
          // Touch the series even at zero so it is exposed from the first scrape.
          metric.inc(labels, previous === undefined ? value : Math.max(0, value - previous));
          seen.set(engine.id, Math.max(value, previous ?? 0));
        }
      },
    });
  };
  // prom-client appends nothing: the names below are exactly vLLM's exposed names.
  counter(
    'vllm:prefix_cache_queries_total',
    'Prompt tokens looked up in the prefix cache (in whole KV blocks).',
    (counters) => counters.prefixCacheQueriedTokens,
  );
  counter(
    'vllm:prefix_cache_hits_total',
    'Prompt tokens found in the prefix cache (in whole KV blocks).',
    (counters) => counters.prefixCacheHitTokens,
  );
  counter(
    'vllm:num_preemptions_total',
    'Preemptions of running requests.',
    (counters) => counters.preemptions,
  );
  counter(
    'vllm:prompt_tokens_total',
    'Prompt tokens of requests whose prefill finished.',
    (counters) => counters.promptTokens,
  );
  counter('vllm:generation_tokens_total', 'Generated tokens.', (counters) => counters.generationTokens);
}

export interface PrometheusMetricsOptions {
  /** How many tenants get their own `tenant` label value (by first appearance); later ones share `(other)`. Unbounded when absent. */
  maxTenantLabels?: number;
}

/** What the gateway's queue in front of one engine reports (its ReplicaScheduler, src/scheduling/). */
export interface EngineQueueFigures {
  engine: string;
  queued: number;
  running: number;
  /** Refused at arrival (flex whose TTFT target cannot be met): 429. */
  shedTotal: number;
  /** Refused after waiting past the tier's bound: 503 overloaded. */
  expiredTotal: number;
}

function registerQueueMetrics(registry: Registry, queues: () => Iterable<EngineQueueFigures>): void {
  const requests = new Gauge({
    name: 'gravity_scheduler_requests',
    help: "Requests in the gateway's queue in front of each engine, by state (queued or running).",
    labelNames: ['engine', 'state'],
    registers: [registry],
    collect() {
      // Reset first: an engine removed at run time (EPP discovery) must not keep its last figures.
      requests.reset();
      for (const queue of queues()) {
        requests.set({ engine: queue.engine, state: 'queued' }, queue.queued);
        requests.set({ engine: queue.engine, state: 'running' }, queue.running);
      }
    },
  });
  // The scheduler keeps running totals; each scrape adds what changed since the last one.
  const reported = new Map<string, number>();
  const refused: Counter<'engine' | 'reason'> = new Counter({
    name: 'gravity_scheduler_refused_total',
    help: 'Requests the scheduler refused: shed at arrival (429) or over their queue bound (503 overloaded).',
    labelNames: ['engine', 'reason'],
    registers: [registry],
    collect() {
      for (const queue of queues()) {
        for (const [reason, total] of [
          ['shed', queue.shedTotal],
          ['overloaded', queue.expiredTotal],
        ] as const) {
          const key = `${queue.engine}\u0000${reason}`;
          const delta = total - (reported.get(key) ?? 0);
          if (delta > 0) refused.inc({ engine: queue.engine, reason }, delta);
          else refused.inc({ engine: queue.engine, reason }, 0);
          reported.set(key, total);
        }
      }
    },
  });
}
