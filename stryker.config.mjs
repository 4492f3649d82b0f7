// Mutation testing of the kernel's pure modules: `npm run test:mutation` (see
// docs/mutation-testing.md). Not run in CI: it takes many minutes on a 2-core machine.
// Each mutant runs only the tests that cover it (per-test coverage); those are the DB-free
// unit and property tests of these modules (plus the inline-parameters spec, which also
// round-trips literals through the local PostgreSQL).
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'jest',
  jest: {
    configFile: 'jest.config.ts',
    config: {
      testMatch: [
        '**/tests/audit/merkle.spec.ts',
        '**/tests/audit/log-verifier.spec.ts',
        '**/tests/audit/signed-note.spec.ts',
        '**/tests/scheduler/cron.spec.ts',
        '**/tests/scheduler/cron-oracle.spec.ts',
        '**/tests/scheduler/cron-predicate.spec.ts',
        '**/tests/sequences/series-pattern.spec.ts',
        '**/tests/platform/inline-parameters.spec.ts',
      ],
      // Fixed fast-check seed: the same generated cases for every mutant.
      setupFiles: ['<rootDir>/tests/support/fast-check-fixed-seed.ts'],
    },
    enableFindRelatedTests: false,
  },
  coverageAnalysis: 'perTest',
  checkers: ['typescript'],
  // The type check of each mutant needs only the mutated modules and what they import: a far
  // smaller program than the whole project's, so far faster.
  tsconfigFile: 'tsconfig.stryker.json',
  mutate: [
    'services/audit/merkle.ts',
    'services/audit/log-verifier.ts',
    'services/audit/signed-note.ts',
    'services/scheduler/cron.ts',
    'services/sequences/series-pattern.ts',
    'services/platform/database/inline-parameters.ts',
    // number-ledger.ts is SQL but for this resource name; the rest is mutated by the stores run.
    'services/sequences/number-ledger.ts:40-41',
  ],
  concurrency: 2,
  timeoutMS: 20000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/pure.html' },
  jsonReporter: { fileName: 'reports/mutation/pure.json' },
  // Re-runs only mutants whose code or covering tests changed since the last run.
  incremental: true,
  incrementalFile: 'reports/mutation/pure-incremental.json',
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
  thresholds: { high: 90, low: 80, break: null },
};
