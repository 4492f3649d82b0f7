// Mutation testing of the stores (SQL-heavy modules) with the integration tests that exercise
// them against the local PostgreSQL: `npm run test:mutation:stores`. Much slower than the pure
// run (every test file starts a kernel on a fresh database), so it is its own script and never
// runs in CI; see docs/mutation-testing.md for its measured duration.
// Tests that spawn kernel processes exercise the stores outside the Jest process, where
// per-test coverage cannot see them: they add nothing here and are left out, and so are the
// long hostile-input property suites.
import base from './stryker.config.mjs';

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  ...base,
  jest: {
    ...base.jest,
    config: {
      ...base.jest.config,
      testMatch: [
        '**/tests/evi/evi055-sequences.spec.ts',
        '**/tests/sequences/sequence-input-validation.spec.ts',
        '**/tests/evi/evi047-secrets.spec.ts',
        '**/tests/secrets/secret-input-validation.spec.ts',
        '**/tests/secrets/secret-concurrency.spec.ts',
        '**/tests/evi/evi048-audit.spec.ts',
        '**/tests/audit/audit-cli.spec.ts',
      ],
    },
  },
  mutate: ['services/sequences/number-ledger.ts', 'services/sequences/series-store.ts', 'services/secrets/secret-store.ts', 'services/audit/audit-store.ts'],
  // Whole test files run per mutant, kernels included: generous timeouts, one runner at a time
  // besides the checker (the machine has two cores).
  concurrency: 2,
  timeoutMS: 180000,
  timeoutFactor: 2,
  htmlReporter: { fileName: 'reports/mutation/stores.html' },
  jsonReporter: { fileName: 'reports/mutation/stores.json' },
  incrementalFile: 'reports/mutation/stores-incremental.json',
};
