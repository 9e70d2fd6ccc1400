/** Every default setting in one place; docs/configuration.md documents each. */
export const defaults = {
  host: '127.0.0.1',
  port: 8080,
  bodyLimitBytes: 4 * 1024 * 1024,
  shutdownGraceMs: 10_000,
  // A client that reads nothing for this long while a response waits for it is treated as gone.
  writeStallTimeoutMs: 30_000,
  logLevel: 'info',
  dataDir: '.gravity',
  /**
   * Bounds on how long a client may take to send a request, and how many connections may be open. No
   * idle bound by default: a non-streamed completion, or a request waiting in the queue, writes nothing
   * for as long as it runs, and must not be cut for it (docs/configuration.md).
   */
  http: {
    headersTimeoutMs: 20_000,
    bodyTimeoutMs: 30_000,
    uploadBodyTimeoutMs: 600_000,
    idleTimeoutMs: 0,
    maxConnections: 10_000,
  },
  // Loopback scrapers need no key by default (a Prometheus on the same machine); see docs/metrics.md.
  // Tenant label values: 7 tenant-labelled counters × models × tiers × (100 + `(other)`) series at most (docs/metrics.md).
  metrics: { requireAdminKey: false, maxTenantLabels: 100 },
  llamaCpp: {
    contextTokens: 4096,
    slots: 4,
    // One thread per context: on 2 cores the library's default (4 threads) was ~40x slower in our trials.
    threads: 1,
    batchSize: 512,
    // One embedding context: embeddings wait for it one request at a time, like a slot (see the
    // llama-cpp README); raise it where embeddings are a large share of the load.
    embeddingContexts: 1,
  },
  metering: {
    intervalMs: 250,
    // Each usage summary scans its range of the ledger on one reader thread, one after another: a few may
    // wait, more get a 503 rather than queueing for minutes.
    maxPendingUsageQueries: 4,
    commitWindowMs: 1,
    // A world-average-like placeholder (gCO2e per kWh); operators set their grid's figure.
    gridIntensityGramsPerKwh: 400,
    // Decode tokens each run a full pass over the weights for one token; prefill tokens share one pass
    // across the whole prompt, so one costs a fraction of a decode token. A declared default until the
    // performance model supplies per-engine figures.
    prefillTokenWeight: 0.2,
    decodeTokenWeight: 1,
  },
  pricing: {
    // Example list prices ($ per 1M tokens) so margins are visible out of the box; set your own.
    // Embeddings: input tokens only, at a fifth of a chat prompt token (prefill only, nothing kept).
    default: {
      inputPerMillionUsd: 0.1,
      cachedInputPerMillionUsd: 0.05,
      outputPerMillionUsd: 0.4,
      embeddingInputPerMillionUsd: 0.02,
    },
    tierMultipliers: { priority: 2, default: 1, flex: 0.5, batch: 0.5, scale: 1 },
  },
  emulated: {
    devices: 1,
    prefixCaching: true,
    ordering: 'fcfs',
  },
  // Fewest requests in the replica: the load-aware baseline (round-robin and random are blind to load).
  routing: { policy: 'least-loaded' },
  /**
   * Latency targets per service tier, which the scheduler sheds and bounds against, and how long a
   * request of each tier may wait in the gateway's queue. Set them to your SLOs.
   */
  tiers: {
    priority: { ttftMs: 500, tpotMs: 50, maxQueueWaitMs: 60_000 },
    default: { ttftMs: 2000, tpotMs: 100, maxQueueWaitMs: 30_000 },
    flex: { ttftMs: 10_000, tpotMs: 200, maxQueueWaitMs: 120_000 },
    batch: { ttftMs: 86_400_000, tpotMs: 1000, maxQueueWaitMs: 86_400_000 },
  },
  scheduling: {
    enabled: true,
    tierBands: true,
    ordering: 'earliest-deadline',
    fairness: 'vtc',
    saturation: 'slo',
    batchReserveFraction: 0.25,
    priorityReserveFraction: 0.5,
    // VTC (OSDI'24) weighs an output token twice a prompt token.
    inputTokenWeight: 1,
    outputTokenWeight: 2,
  },
  auth: {
    // A revoked key keeps working for at most this long on a running server; a key lookup then costs a
    // Map read instead of an SQLite read.
    keyCacheMs: 1000,
    // What a request without max_tokens reserves against a tokens-per-minute limit until its real usage
    // is known (a 1k-token answer is a generous chat reply).
    unboundedCompletionReserveTokens: 1024,
  },
  upstream: {
    connectTimeoutMs: 30_000,
    maxConcurrentRequests: 64,
    // The prefill of a long prompt on a busy vLLM can take tens of seconds before the first token.
    firstTokenTimeoutMs: 60_000,
    idleTimeoutMs: 30_000,
  },
  epp: {
    // Kubernetes' own DNS caches answers for 5 s (CoreDNS's default TTL for cluster names): asking more
    // often learns nothing sooner.
    discoveryIntervalMs: 5000,
  },
  batch: {
    // Lines of one batch in flight at once; the scheduler further holds batch-tier lines to spare capacity.
    maxConcurrentLines: 4,
    // OpenAI's limits for a batch input file.
    fileLimitBytes: 100 * 1024 * 1024,
    maxLinesPerBatch: 50_000,
    // A shared store's batch lease: a killed replica's batch waits up to this long for another replica.
    // Renewed every second, so it only needs to outlast a pause of the process or a store failover.
    leaseMs: 30_000,
  },
  telemetry: {
    serviceName: 'gravity',
    sampleRatio: 1,
    otlpTimeoutMs: 10_000,
    // Spans waiting for export: a collector that is down or slow costs at most this many spans' memory,
    // and further spans are dropped rather than waited for (export never blocks a request).
    maxQueueSpans: 2048,
    maxExportBatchSpans: 512,
    exportIntervalMs: 1000,
    // At shutdown, how long the last spans may take to leave: a collector that is down must not hold up
    // Gravity's exit for a whole export timeout.
    shutdownExportMs: 5000,
  },
} as const;
