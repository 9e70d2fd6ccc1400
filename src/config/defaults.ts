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
  upstream: {
    connectTimeoutMs: 30_000,
    maxConcurrentRequests: 64,
  },
} as const;
