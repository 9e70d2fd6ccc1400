/** Every default setting in one place; docs/configuration.md documents each. */
export const defaults = {
  host: '127.0.0.1',
  port: 8080,
  bodyLimitBytes: 4 * 1024 * 1024,
  shutdownGraceMs: 10_000,
  logLevel: 'info',
  dataDir: '.gravity',
  llamaCpp: {
    contextTokens: 4096,
    slots: 4,
    // One thread per context: on 2 cores the library's default (4 threads) was ~40x slower in our trials.
    threads: 1,
    batchSize: 512,
  },
  metering: {
    intervalMs: 250,
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
    default: { inputPerMillionUsd: 0.1, cachedInputPerMillionUsd: 0.05, outputPerMillionUsd: 0.4 },
    tierMultipliers: { priority: 2, default: 1, flex: 0.5, batch: 0.5, scale: 1 },
  },
  emulated: {
    devices: 1,
    prefixCaching: true,
    ordering: 'fcfs',
  },
  // Fewest requests in the replica: the load-aware baseline (round-robin and random are blind to load).
  routing: { policy: 'least-loaded' },
  upstream: {
    connectTimeoutMs: 30_000,
    maxConcurrentRequests: 64,
  },
} as const;
