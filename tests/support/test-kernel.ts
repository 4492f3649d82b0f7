import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { mintDevelopmentToken } from '../../services/platform/auth/token-verifier';
import { loadConfig, type KernelConfig } from '../../services/platform/config';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../services/platform/database/embedded-postgres';
import { startKernel, type RunningKernel } from '../../services/kernel/kernel';
import { createLogger } from '../../services/platform/observability/logger';
import { createTestDatabase, type TestDatabase } from './test-database';
import { TEST_MASTER_KEYS } from './test-master-keys';

/** Which database the tests run on: real PostgreSQL (default, and CI) or the embedded one. */
export const TEST_BACKEND: 'postgres' | 'embedded' = process.env.KERNEL_TEST_BACKEND === 'embedded' ? 'embedded' : 'postgres';

/** A database for one test file: a fresh PostgreSQL database, or a fresh in-memory embedded one. */
export interface TestBackendDatabase {
  readonly url: string;
  close(): Promise<void>;
}

export async function createBackendDatabase(): Promise<TestBackendDatabase> {
  if (TEST_BACKEND === 'embedded') {
    const embedded: EmbeddedPostgres = await startEmbeddedPostgres({});
    return { url: embedded.url, close: () => embedded.stop() };
  }
  const db: TestDatabase = await createTestDatabase();
  return { url: db.url, close: () => db.drop() };
}

/** Captures the kernel's JSON log lines in memory so tests can assert on them. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    done();
  }
  entries(): Array<Record<string, unknown>> {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
  text(): string {
    return this.lines.join('\n');
  }
}

export interface TestKernel {
  readonly kernel: RunningKernel;
  readonly address: string;
  readonly databaseUrl: string;
  readonly secret: string;
  readonly logs: LogCapture;
  /** Mints a token for this kernel. Defaults: sub "tester", every scope the kernel serves. */
  token(claims: { tenants: string[]; sub?: string; scope?: string; ttlSeconds?: number }): Promise<string>;
  stop(): Promise<void>;
}

export interface TestKernelOptions {
  /** Reuse this database (e.g. several kernels on one database); otherwise a fresh one is made and dropped. */
  databaseUrl?: string;
  env?: Record<string, string>;
}

/** Starts a real kernel on 127.0.0.1:0 for a test file. */
export async function startTestKernel(options: TestKernelOptions = {}): Promise<TestKernel> {
  const owned = options.databaseUrl ? undefined : await createBackendDatabase();
  const databaseUrl = options.databaseUrl ?? owned!.url;
  const secret = randomBytes(32).toString('base64url');
  const dataDir = mkdtempSync(path.join(tmpdir(), 'axis-kernel-test-'));
  const config: KernelConfig = loadConfig({
    KERNEL_GRPC_ADDR: '127.0.0.1:0',
    DATABASE_URL: databaseUrl,
    KERNEL_AUTH_SECRET: secret,
    KERNEL_DATA_DIR: dataDir,
    LOG_LEVEL: 'info',
    KERNEL_AUDIT_SEQUENCER_MS: '50',
    KERNEL_RESERVATION_SWEEP_MS: '200',
    KERNEL_SHUTDOWN_GRACE_MS: '2000',
    KERNEL_MASTER_KEYS: TEST_MASTER_KEYS,
    ...options.env,
  });
  const logs = new LogCapture();
  const kernel = await startKernel(config, { log: createLogger(config.LOG_LEVEL, logs) });
  return {
    kernel,
    address: kernel.address,
    databaseUrl,
    secret,
    logs,
    token: ({ tenants, sub = 'tester', scope, ttlSeconds }) =>
      mintDevelopmentToken({ secret, subject: sub, tenants, scope: scope ?? kernel.scopes.join(' '), ttlSeconds }),
    async stop() {
      await kernel.stop();
      await owned?.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
