import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Builds use namespaces, mounts and a shared Docker daemon: keep files in separate
    // processes but limit parallelism to the machine (2 cores).
    pool: 'forks',
    maxWorkers: 2,
  },
});
