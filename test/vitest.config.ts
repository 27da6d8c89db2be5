import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    // A bound that catches a hang, never a measure: lab runs take tens of seconds on a loaded 2-core machine.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // The lab's setup: installs what the lab needs, builds dist/ when stale, fails under CI=true without root.
    globalSetup: ['test/lab/global-setup.ts'],
    pool: 'forks',
  },
});
