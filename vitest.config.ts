import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // node-llama-cpp is a native addon: separate processes keep each file's engine isolated.
    pool: 'forks',
    // Two cores: one file at a time keeps llama.cpp timings and port use predictable.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
