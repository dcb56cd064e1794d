import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real processes (control plane, runner, sandboxes);
    // forks keep each file in its own process so a crash cannot take others down.
    pool: 'forks',
    poolOptions: { forks: { execArgv: ['--no-node-snapshot'] } },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: more workers only add contention between real sandboxes.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
