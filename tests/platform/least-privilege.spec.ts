import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { closeKernelClient, createKeymasterClient, createSequenceClient, type KeymasterClient, type SequenceClient } from '../../clients/src';
import { Algorithm, KeyVersionState } from '../../gen/proto/axis/kernel/keymaster/v1/key';
import { NumberStatus, ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { ConfigError, loadConfig } from '../../services/platform/config';
import { startKernel } from '../../services/kernel/kernel';
import { createLogger } from '../../services/platform/observability/logger';
import { enqueueJob } from '../../services/scheduler/job-api';
import { adminDatabaseUrl } from '../support/test-database';
import { startTestKernel, TEST_BACKEND, type TestKernel } from '../support/test-kernel';
import { TEST_MASTER_KEYS } from '../support/test-master-keys';
import { waitFor } from '../support/wait-for';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');

/**
 * Production at the database: the roles set up by scripts/database-roles.sql (run here with
 * psql, as an operator would), the kernel migrating as a non-superuser owner and serving through
 * a runtime login with no powers of its own — and refusing to start on a login that has any.
 * Cross-tenant system work (reservation expiry, key destruction, dead letters, the audit
 * integrator's work list) runs as axis_kernel_system and must work with only its grants.
 */
(TEST_BACKEND === 'embedded' ? describe.skip : describe)('least privilege in production', () => {
  const suffix = randomBytes(4).toString('hex');
  const owner = `axis_test_owner_${suffix}`;
  const runtime = `axis_test_runtime_${suffix}`;
  const database = `axis_test_lp_${suffix}`;
  const url = (role: string) => {
    const u = new URL(adminDatabaseUrl);
    u.username = role;
    u.password = '';
    u.pathname = `/${database}`;
    return u.toString();
  };
  let kernel: TestKernel;
  const clients: Array<SequenceClient | KeymasterClient> = [];
  const env = (extra: Record<string, string> = {}) => ({
    KERNEL_ENV: 'production',
    KERNEL_APP_DATABASE_URL: url(runtime),
    KERNEL_KEY_DESTRUCTION_MIN_WINDOW_SECONDS: '1',
    KERNEL_RESERVATION_SWEEP_MS: '200',
    ...extra,
  });

  beforeAll(async () => {
    const admin = new URL(adminDatabaseUrl);
    await run('psql', [
      '-h', admin.hostname, '-p', admin.port || '5432', '-U', admin.username || 'postgres', '-d', admin.pathname.slice(1) || 'postgres', '-q', '-v', 'ON_ERROR_STOP=1',
      '-v', `owner_role=${owner}`, '-v', `runtime_role=${runtime}`, '-v', `database=${database}`, '-v', 'owner_password=unused-with-trust', '-v', 'runtime_password=unused-with-trust',
      '-f', path.join(ROOT, 'scripts/database-roles.sql'),
    ]);
    kernel = await startTestKernel({ databaseUrl: url(owner), env: env() });
    kernel.kernel.jobs.register('lp.fail', async () => {
      throw new Error('always fails');
    });
  }, 120_000);

  afterAll(async () => {
    clients.forEach(closeKernelClient);
    await kernel?.stop();
    const su = new Client({ connectionString: adminDatabaseUrl });
    await su.connect();
    try {
      await su.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      await su.query(`DROP ROLE IF EXISTS "${runtime}"`);
      await su.query(`DROP ROLE IF EXISTS "${owner}"`);
    } finally {
      await su.end();
    }
  });

  test('the kernel migrates as the non-superuser owner and serves through the powerless runtime login; system work runs with only its grants', async () => {
    const options = { address: kernel.address, tenantId: 'lp', maxAttempts: 1, token: await kernel.token({ tenants: ['lp'] }) };
    const sequences = createSequenceClient(options);
    const keys = createKeymasterClient(options);
    clients.push(sequences, keys);
    await sequences.createSeries({ series: { seriesId: 's', pattern: 'S{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
    expect((await sequences.issueNumber({ seriesId: 's' })).number!.value).toBe(1);
    // Reservation expiry (a system job, a SECURITY DEFINER sweep).
    const { number } = await sequences.reserveNumber({ seriesId: 's', ttl: { seconds: 1, nanos: 0 } });
    await waitFor(async () => (await sequences.listNumbers({ seriesId: 's' })).numbers.find((n) => n.value === number!.value)?.status === NumberStatus.NUMBER_STATUS_VOIDED, 20_000);
    // Key destruction (another system sweep).
    await keys.createKey({ key: { keyId: 'k', algorithm: Algorithm.ALGORITHM_ED25519 } });
    await keys.rotateKey({ keyId: 'k' });
    await keys.scheduleKeyVersionDestruction({ keyId: 'k', version: 1, restoreWindow: { seconds: 1, nanos: 0 } });
    await waitFor(async () => {
      const [row] = await kernel.kernel.db.inTenantTransaction('lp', (tx) =>
        tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM kernel_audit_event WHERE action LIKE '%/DestroyKeyVersion'`),
      );
      return row.n === 1;
    }, 20_000);
    expect((await keys.getKey({ keyId: 'k' })).key!.versions[0].state).toBe(KeyVersionState.KEY_VERSION_STATE_DESTROYED);
    // A dead letter (the scheduler's failure bookkeeping), recorded in the audit log.
    const { jobId } = await kernel.kernel.db.inTenantTransaction('lp', (tx) => enqueueJob(tx, { type: 'lp.fail', payload: {}, maxAttempts: 1 }));
    await waitFor(async () => {
      const [row] = await kernel.kernel.db.inTenantTransaction('lp', (tx) => tx.query<{ state: string }>('SELECT state FROM scheduler_job WHERE job_id = $1', [jobId]));
      return row.state === 'DEAD';
    }, 20_000);
    // The audit integrator's work list: every entry above gets integrated and signed.
    await waitFor(async () => {
      const [row] = await kernel.kernel.db.inTenantTransaction('lp', (tx) =>
        tx.query<{ pending: number }>('SELECT (SELECT count(*) FROM kernel_audit_position) - (SELECT count(*) FROM kernel_audit_sequence) AS pending'),
      );
      return Number(row.pending) === 0;
    }, 20_000);
  });

  test('RESET ROLE inside a transaction leaves the runtime login with no privilege', async () => {
    const c = new Client({ connectionString: url(runtime) });
    await c.connect();
    try {
      await c.query('BEGIN');
      await c.query(`SELECT set_config('role', 'axis_kernel_app', true), set_config('axis.tenant_id', 'lp', true)`);
      expect((await c.query('SELECT current_user AS role, (SELECT count(*) FROM sequence_number) >= 0 AS readable')).rows[0]).toEqual({ role: 'axis_kernel_app', readable: true });
      await c.query('RESET ROLE');
      expect((await c.query('SELECT current_user AS role')).rows[0].role).toBe(runtime);
      await expect(c.query('SELECT count(*) FROM public.sequence_number')).rejects.toMatchObject({ code: '42501' });
    } finally {
      await c.query('ROLLBACK').catch(() => undefined);
      await c.end();
    }
  });

  test.each([
    ['a superuser', () => adminDatabaseUrl.replace(/\/[^/]*$/, `/${database}`), 'SUPERUSER'],
    ['the owner of the kernel tables', () => url(owner), 'owner of the kernel tables'],
  ])('production refuses to start when the runtime logs in as %s, naming the setting', async (_, runtimeUrl, power) => {
    const config = loadConfig({
      KERNEL_GRPC_ADDR: '127.0.0.1:0',
      DATABASE_URL: url(owner),
      KERNEL_AUTH_SECRET: randomBytes(32).toString('base64url'),
      KERNEL_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'axis-lp-')),
      KERNEL_MASTER_KEYS: TEST_MASTER_KEYS,
      ...env({ KERNEL_APP_DATABASE_URL: runtimeUrl() }),
    });
    const error = await startKernel(config, { log: createLogger('silent'), backgroundTasks: false }).then(
      async (k) => {
        await k.stop();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain('KERNEL_APP_DATABASE_URL');
    expect((error as Error).message).toContain(power);
  });

  test('production needs a PostgreSQL server: the embedded database is refused', () => {
    expect(() => loadConfig({ KERNEL_ENV: 'production', KERNEL_AUTH_SECRET: 'x'.repeat(32), KERNEL_MASTER_KEYS: TEST_MASTER_KEYS })).toThrow('DATABASE_URL');
  });
});
