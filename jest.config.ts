import type { Config } from 'jest';

// One project, real services: tests start kernels on port 0 against PostgreSQL (DATABASE_URL)
// or the embedded database, so they run serially per file and have generous timeouts.
const config: Config = {
  testEnvironment: 'node',
  roots: ['<rootDir>/tests'],
  testMatch: ['**/*.spec.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }] },
  testTimeout: 120_000,
  maxWorkers: 2,
};

export default config;
