import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { Admission } from '../admission/admission.js';
import type { KeyStore } from '../admission/key-store.js';
import { keysPathOf, openModeWarning, refuseOpenModeOffLoopback } from '../admission/open-mode.js';
import { openSharedState, type SharedState } from '../admission/shared-state.js';
import { SqliteKeyStore } from '../admission/sqlite-key-store.js';
import { type MetricsListener, startMetricsListener } from '../api/metrics-listener.js';
import { createHttpServer } from '../api/server.js';
import { createBatchApi } from '../batch/batch-api.js';
import { registerBatchRoutes } from '../batch/batch-routes.js';
import type { GravityConfig } from '../config/config-schema.js';
import { type Clock, systemClock } from '../core/clock.js';
import { registerDashboardRoutes } from '../dashboard/dashboard-routes.js';
import { RecentRequests } from '../dashboard/recent-requests.js';
import { createEngines, engineConfigSchema, engineDefinition } from '../engines/engine-registry.js';
import { type AddressResolver, startDnsEndpointDiscovery } from '../epp/dns-endpoint-discovery.js';
import { EndpointDirectory } from '../epp/endpoint-directory.js';
import type { EndpointPicker } from '../epp/endpoint-picker.js';
import { eppEngineConfig, eppEngineId } from '../epp/epp-config.js';
import { startEndpointPicker } from '../epp/ext-proc-server.js';
import { startKubernetesEndpointDiscovery } from '../epp/kubernetes-endpoint-discovery.js';
import { Gateway } from '../gateway/gateway.js';
import { SharedFleetState } from '../gateway/shared-fleet-state.js';
import type { LedgerStore } from '../metering/ledger/ledger-store.js';
import { ledgerStoreSettings, openLedgerStore } from '../metering/ledger/open-ledger-store.js';
import { MeteringService } from '../metering/metering-service.js';
import { PrometheusMetrics } from '../metering/prometheus-metrics.js';
import { RequestPipeline, type Sleep } from '../pipeline/request-pipeline.js';
import { openResponseStore } from '../responses/open-response-store.js';
import { registerResponsesRoutes } from '../responses/responses-routes.js';
import { schedulerSettings } from '../scheduling/scheduler-settings.js';

export interface GravityServer {
  gateway: Gateway;
  http: FastifyInstance;
  /** e.g. `http://127.0.0.1:8080` */
  url: string;
  /** Where `/metrics` is served when `metrics.port` gives it its own port. */
  metricsUrl?: string | undefined;
  /** The Endpoint Picker's ext_proc address (`host:port`) when `epp.port` is set. */
  eppAddress?: string | undefined;
  /** Graceful stop: no new requests, in-flight ones get `shutdownGraceMs`, then everything closes. */
  close(): Promise<void>;
}

/** Builds every stage from config, loads the engines, and listens. Used by `gravity serve` and tests. */
export async function startGravityServer(
  config: GravityConfig,
  options: {
    clock?: Clock;
    env?: NodeJS.ProcessEnv;
    /** How requests waiting for a rate limit (batch lines) sleep; tests pass one that moves `clock`. */
    sleep?: Sleep;
    /** How `epp.discovery.dns` resolves its name; tests point a Resolver at a DNS server on loopback. */
    resolveEndpointAddresses?: AddressResolver;
  } = {},
): Promise<GravityServer> {
  const clock = options.clock ?? systemClock;
  // The HTTP server's logger exists only later; metering logs through this forwarder.
  const logger = {
    error: (details: Record<string, unknown>, message: string) => httpLog?.error(details, message),
    warn: (details: Record<string, unknown>, message: string) => httpLog?.warn(details, message),
  };
  let httpLog: FastifyInstance['log'] | undefined;
  // Shared state first: a replica that cannot reach its Redis stops here (exit 1, the URL named).
  const shared: SharedState | undefined =
    config.state.store === 'redis'
      ? await openSharedState(config.state, {
          clock,
          log: (message, details) => logger.warn(details, message),
        })
      : undefined;
  // Before any engine loads: an open server on a reachable host must not start at all.
  const keys: KeyStore = shared ? shared.keys : new SqliteKeyStore(keysPathOf(config));
  const closeKeys = () => (shared ? shared.close() : keys.close());
  try {
    refuseOpenModeOffLoopback(config, keys);
  } catch (error) {
    closeKeys();
    throw error;
  }
  // The ledger before the engines: a replica whose PostgreSQL is unreachable stops here, quickly.
  let store: LedgerStore | undefined;
  if (config.metering.enabled) {
    try {
      store = await openLedgerStore(ledgerStoreSettings(config));
    } catch (error) {
      closeKeys();
      throw error;
    }
  }
  let engines: Awaited<ReturnType<typeof createEngines>>;
  try {
    engines = await createEngines(config, options.env);
  } catch (error) {
    // Nothing else holds them yet: a PostgreSQL pool left open would keep the process alive.
    await store?.close();
    closeKeys();
    throw error;
  }
  // The gateway is built after the metrics (it observes requests through them); queues are read at scrape.
  let queuesOf: Gateway | undefined;
  const metrics = new PrometheusMetrics(
    // The gateway's live list once it exists: the EPP's discovered endpoints join and leave it.
    () => queuesOf?.engines ?? engines,
    () =>
      [...(queuesOf?.schedulers ?? [])].map(([engine, queue]) => ({
        engine,
        queued: queue.queuedRequests,
        running: queue.runningRequests,
        shedTotal: queue.shedTotal,
        expiredTotal: queue.expiredTotal,
      })),
    { maxTenantLabels: config.metrics.maxTenantLabels },
  );
  let metering: MeteringService | undefined;
  if (store) {
    metering = new MeteringService({
      config,
      engines,
      clock,
      store,
      log: (message, details) => logger.error(details, message),
    });
  }
  const ledger = store;
  const admission = new Admission({
    keys,
    clock,
    keyCacheMs: config.auth.keyCacheMs,
    required: config.auth.required,
    tenants: config.tenants,
    unboundedCompletionReserveTokens: config.auth.unboundedCompletionReserveTokens,
    spentUsd: ledger
      ? ({ tenant, apiKeyId, fromEpochMs, toEpochMs }) =>
          ledger.spentUsd({ tenant, apiKeyId, fromMs: fromEpochMs, toMs: toEpochMs })
      : undefined,
    shared: shared && {
      limiter: shared.limiter,
      onUnavailable: config.state.onUnavailable,
      reserveUsd: mostUsdPerToken(config.pricing),
      log: (message, details) => logger.warn(details, message),
    },
  });
  if (shared) metrics.observeSharedState(admission, config.state.onUnavailable);
  // What the dashboard shows of requests finished and in flight (`GET /v1/dashboard/snapshot`).
  const recentRequests = new RecentRequests(clock);
  // Metering runs first so that the Prometheus observer and the dashboard see each request's metered
  // figures, and admission each request's price.
  // Tracing comes last: its spans carry the figures metering set. Off (no `telemetry.otlp`), it is absent.
  // The OpenTelemetry SDK is loaded only when tracing is on: off, it costs no memory (~8 MB resident).
  const tracing = config.telemetry.otlp
    ? (await import('../telemetry/open-telemetry.js')).startRequestTracing(
        config.telemetry,
        clock,
        (message, details) => logger.warn(details, message),
      )
    : null;
  // Live routing draws from Math.random; the simulator seeds the same policies.
  const gateway = new Gateway({
    engines,
    clock,
    observers: [
      ...(metering ? [metering, admission, metrics, recentRequests] : [admission, metrics, recentRequests]),
      ...(tracing ? [tracing.observer] : []),
    ],
    log: (message, details) => logger.error(details, message),
    routing: config.routing,
    placedEngineIds: config.epp && new Set(config.epp.endpoints.map(eppEngineId)),
    // The queue lets through as many requests as the engine runs at once (its generation slots, or an
    // emulated or vLLM replica's max_num_seqs), so the engine never queues generations internally and the
    // order is decided here. Slots that only embed (llama-cpp's embedding contexts) are left out: the
    // seats are shared by both kinds, and a generation let through must find a generation slot.
    schedulerFor: config.scheduling.enabled
      ? (engine) => {
          const load = engine.load();
          return schedulerSettings(
            config.scheduling,
            config.tiers,
            config.scheduling.slotsPerReplica ?? Math.max(1, load.slotsTotal - (load.embeddingSlots ?? 0)),
          );
        }
      : null,
  });
  queuesOf = gateway;
  await gateway.start();
  // With Redis, VTC counters and replica ejections are exchanged with the other replicas off the hot path.
  const fleetState =
    shared &&
    new SharedFleetState({
      redis: shared.fleetConnection,
      core: gateway.core,
      clock,
      syncIntervalMs: config.state.syncIntervalMs,
      log: (message, details) => logger.warn(details, message),
    });
  fleetState?.start();
  metering?.start();
  // One request lifecycle for the HTTP endpoints and batch lines alike.
  const pipeline = new RequestPipeline({
    gateway,
    admission,
    log: (context, error) => logger.error({ err: error, requestId: context.requestId }, 'request failed'),
    sleep: options.sleep,
  });
  const batch = config.batch.enabled
    ? await createBatchApi({
        config,
        pipeline,
        admission,
        clock,
        log: (message, details) => logger.error(details, message),
      })
    : undefined;

  // Stored responses (`/v1/responses` with `store`, `previous_response_id`), per tenant.
  const responses = await openResponseStore(config);

  const http = createHttpServer({
    gateway,
    pipeline,
    metrics,
    ledger: store,
    bodyLimitBytes: config.server.bodyLimitBytes,
    writeStallTimeoutMs: config.server.writeStallTimeoutMs,
    logLevel: config.server.logLevel,
    limits: config.server,
    metricsRequireAdminKey: config.metrics.requireAdminKey,
    metricsOnOwnPort: config.metrics.port !== undefined,
    extraRoutes: [
      (app: FastifyInstance) =>
        registerDashboardRoutes(app, {
          gateway,
          clock,
          recent: recentRequests,
          tiers: config.tiers,
          ledger: store !== undefined,
        }),
      ...(batch ? [(app: FastifyInstance) => registerBatchRoutes(app, batch.routes)] : []),
      (app: FastifyInstance) =>
        registerResponsesRoutes(app, {
          pipeline,
          clock,
          store: responses,
          writeStallTimeoutMs: config.server.writeStallTimeoutMs,
        }),
    ],
    admission,
  });
  httpLog = http.log;
  if (admission.authenticator.isOpen()) http.log.warn(openModeWarning(config));
  await http.listen({ host: config.server.host, port: config.server.port });
  let metricsListener: MetricsListener | undefined;
  if (config.metrics.port !== undefined) {
    try {
      metricsListener = await startMetricsListener(metrics, {
        host: config.metrics.host,
        port: config.metrics.port,
      });
    } catch (error) {
      await http.close();
      throw error;
    }
  }
  // The EPP beside the HTTP API: the same gateway, admission and ledger, another entry point.
  let endpointPicker: EndpointPicker | undefined;
  const epp = config.epp;
  const endpointDirectory = epp && new EndpointDirectory(epp.endpoints);
  if (epp?.port !== undefined) {
    try {
      endpointPicker = await startEndpointPicker({
        config: { ...epp, port: epp.port },
        gateway,
        endpoints: endpointDirectory,
        admission,
        bodyLimitBytes: config.server.bodyLimitBytes,
        log: (message, details) => logger.error(details, message),
      });
    } catch (error) {
      await http.close();
      await metricsListener?.close();
      throw error;
    }
  }
  // Endpoints from DNS or Kubernetes once the EPP listens: its readiness stays false until one joins.
  let endpointDiscovery: { close(): void } | undefined;
  const discovery = epp?.discovery;
  if (discovery && epp && endpointDirectory) {
    const models = epp.models.map((model) => ({
      id: model,
      upstreamModel: config.models[model]?.upstreamModel,
      contextTokens: config.models[model]?.contextTokens,
    }));
    const membership = {
      fixed: epp.endpoints,
      gateway,
      directory: endpointDirectory,
      createEngine: (address: string) => {
        const engineConfig = engineConfigSchema.parse(eppEngineConfig(epp, address));
        return engineDefinition(engineConfig.type).create({
          id: eppEngineId(address),
          config: engineConfig,
          models,
          dataDir: config.dataDir,
          env: options.env ?? process.env,
        });
      },
      log: (message: string, details: Record<string, unknown>) => logger.warn(details, message),
    };
    endpointDiscovery = discovery.kubernetes
      ? await startKubernetesEndpointDiscovery({ ...membership, kubernetes: discovery.kubernetes })
      : discovery.dns
        ? await startDnsEndpointDiscovery({
            ...membership,
            dns: discovery.dns,
            resolve: options.resolveEndpointAddresses,
          })
        : undefined;
  }
  const address = http.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  // Unfinished batches (from before a restart) resume once the server is up.
  batch?.start();

  let closing: Promise<void> | undefined;
  return {
    gateway,
    http,
    url: `http://${host}:${address.port}`,
    metricsUrl: metricsListener?.url,
    eppAddress: endpointPicker?.address,
    close() {
      closing ??= (async () => {
        endpointDiscovery?.close();
        await endpointPicker?.close();
        // Stop accepting first, then drain: the listener closes while in-flight streams finish.
        const listenerClosed = http.close();
        // Batch lines in flight drain with the rest; those cancelled run again after the restart.
        batch?.stopDispatching();
        const { cancelled } = await gateway.shutdown(config.server.shutdownGraceMs);
        if (cancelled > 0) http.log.warn({ cancelled }, 'cancelled in-flight requests at shutdown');
        await batch?.close();
        await metering?.close();
        // The spans of the requests that just drained, exported before Gravity exits.
        await tracing?.shutdown();
        await responses.close();
        fleetState?.close();
        closeKeys();
        // Connections whose requests finished during the drain are idle keep-alives now; without this,
        // close would wait for each client's keep-alive timeout.
        http.server.closeAllConnections();
        await listenerClosed;
        await metricsListener?.close();
      })();
      return closing;
    },
  };
}

/**
 * The most `tokens` tokens can cost at any model's dearest per-token price and the dearest tier: what a
 * request reserves against a shared spend budget until its real price is known (docs/admission.md).
 */
function mostUsdPerToken(pricing: GravityConfig['pricing']): (tokens: number) => number {
  let perMillionUsd = 0;
  for (const price of [pricing.default, ...Object.values(pricing.models)])
    perMillionUsd = Math.max(
      perMillionUsd,
      price.inputPerMillionUsd,
      price.outputPerMillionUsd,
      price.embeddingInputPerMillionUsd ?? 0,
    );
  const multiplier = Math.max(...Object.values(pricing.tierMultipliers));
  return (tokens) => (tokens * perMillionUsd * multiplier) / 1_000_000;
}
