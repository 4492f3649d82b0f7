import { Status } from 'nice-grpc-common';
import { Client } from 'pg';
import { closeKernelClient, createSchedulerClient, type SchedulerClient } from '../../clients/src';
import { JobState, OverlapPolicy } from '../../gen/proto/axis/kernel/scheduler/v1/job';
import { enqueueJob } from '../../services/scheduler/job-api';
import { startOwnPostgres, type OwnPostgres } from '../support/own-postgres';
import { refusal } from '../support/refusal';
import { startTestKernel, TEST_BACKEND, type TestKernel } from '../support/test-kernel';
import { waitFor } from '../support/wait-for';

/**
 * Leases are never lost to a caller that left, a finished job keeps its lease until its
 * completion is written, fencing tokens never repeat — not even across a database crash — and a
 * backfill only fires the past.
 */
describe('scheduler liveness', () => {
  let kernel: TestKernel;
  let su: Client;
  const clients: SchedulerClient[] = [];
  const runs = new Map<string, number>();

  const client = async (tenant: string, options: { deadlineMs?: number } = {}) => {
    const c = createSchedulerClient({ address: kernel.address, tenantId: tenant, maxAttempts: 1, token: await kernel.token({ tenants: [tenant] }), ...options });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    kernel = await startTestKernel({ env: { KERNEL_DB_LOCK_TIMEOUT_MS: '3000', KERNEL_SCHEDULER_LEASE_MS: '1000', KERNEL_SCHEDULER_POLL_MS: '100' } });
    su = new Client({ connectionString: kernel.databaseUrl });
    await su.connect();
    kernel.kernel.jobs.register('live.job', async (job) => {
      runs.set(job.jobId, (runs.get(job.jobId) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, (job.payload as { ms: number }).ms));
    });
  });
  afterAll(async () => {
    clients.forEach(closeKernelClient);
    await su?.end();
    await kernel?.stop();
  });

  (TEST_BACKEND === 'embedded' ? test.skip : test)('LeaseJobs never leases to a caller whose deadline passed while it claimed: the job stays QUEUED, no attempt spent', async () => {
    const worker = await client('live-lease', { deadlineMs: 500 });
    const patient = await client('live-lease');
    const { job } = await patient.enqueueJob({ job: { jobType: 'remote.work', queue: 'remote-live' } });
    // Hold the job table so the claim waits past the caller's deadline, then let it through.
    await su.query('BEGIN');
    await su.query('LOCK TABLE scheduler_job IN SHARE MODE');
    let answer: Status | undefined;
    try {
      const leasing = worker.leaseJobs({ queue: 'remote-live', maxJobs: 1 }).then(
        () => Status.OK,
        (e: { code: Status }) => e.code,
      );
      await new Promise((r) => setTimeout(r, 1200));
      await su.query('COMMIT');
      answer = await leasing;
    } catch (error) {
      await su.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
    expect(answer).toBe(Status.DEADLINE_EXCEEDED);
    await new Promise((r) => setTimeout(r, 300)); // the server side has finished with the call
    expect((await patient.getJob({ jobId: job!.jobId })).job).toMatchObject({ state: JobState.JOB_STATE_QUEUED, attempt: 0 });
    // The next worker gets it, as attempt 1.
    const { leases } = await patient.leaseJobs({ queue: 'remote-live', maxJobs: 1 });
    expect(leases.map((l) => [l.job!.jobId, l.job!.attempt])).toEqual([[job!.jobId, 1]]);
  });

  test('BackfillSchedule refuses an end in the future: only past ticks can be backfilled', async () => {
    const c = await client('live-backfill');
    await c.createSchedule({
      schedule: { scheduleId: 'every-second', cron: '* * * * * *', timeZone: 'UTC', queue: 'remote-bf', jobType: 'bf.none', overlapPolicy: OverlapPolicy.OVERLAP_POLICY_ALLOW_ALL, paused: true },
    });
    const now = Date.now();
    const refused = await refusal(c.backfillSchedule({ scheduleId: 'every-second', startTime: new Date(now - 10_000), endTime: new Date(now + 20_000) }));
    expect([refused.code, refused.reason]).toEqual([Status.INVALID_ARGUMENT, 'BACKFILL_IN_FUTURE']);
    const { ticks } = await c.backfillSchedule({ scheduleId: 'every-second', startTime: new Date(now - 5_000), endTime: new Date(now - 1_000) });
    expect(ticks.length).toBeGreaterThanOrEqual(3);
  });

  (TEST_BACKEND === 'embedded' ? test.skip : test)('a finished job keeps renewing its lease until its completion is written: a slow completion never makes it run twice', async () => {
    // Completions of jobs marked slow take 2.5 s to write (a lease here lasts 1 s).
    await su.query(`CREATE FUNCTION test_slow_completion() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2.5); RETURN NEW; END $$`);
    await su.query(`CREATE TRIGGER test_slow_completion BEFORE UPDATE ON scheduler_job FOR EACH ROW
                    WHEN (NEW.state = 'SUCCEEDED' AND OLD.payload->>'slow' = 'true') EXECUTE FUNCTION test_slow_completion()`);
    try {
      const ids = await kernel.kernel.db.inTenantTransaction('live-renew', async (tx) => [
        (await enqueueJob(tx, { type: 'live.job', payload: { ms: 0, slow: true } })).jobId,
        (await enqueueJob(tx, { type: 'live.job', payload: { ms: 300, slow: false } })).jobId,
      ]);
      const c = await client('live-renew');
      await waitFor(async () => {
        const states = await Promise.all(ids.map(async (jobId) => (await c.getJob({ jobId })).job!.state));
        return states.every((s) => s === JobState.JOB_STATE_SUCCEEDED);
      }, 20_000);
      // The second job's completion waited behind the first one's slow write, well past its lease.
      expect(ids.map((id) => runs.get(id))).toEqual([1, 1]);
      const jobs = await Promise.all(ids.map(async (jobId) => (await c.getJob({ jobId })).job!));
      expect(jobs.map((j) => [j.attempt, j.errors.length])).toEqual([
        [1, 0],
        [1, 0],
      ]);
    } finally {
      await su.query('DROP TRIGGER test_slow_completion ON scheduler_job');
      await su.query('DROP FUNCTION test_slow_completion()');
    }
  });
});

/**
 * A fencing token, once handed to a worker, is never handed out again: not after PostgreSQL
 * crashes either. Claims commit durably — an asynchronously committed claim could be lost in a
 * crash together with the token sequence's advance, and the same token would go to the next
 * holder of the same job while the first still works on it. This database is the test's own,
 * with the WAL writer slowed down so that nothing but a durable commit saves a claim.
 */
(TEST_BACKEND === 'embedded' ? describe.skip : describe)('fencing tokens across a database crash', () => {
  let pg: OwnPostgres;
  let kernel: TestKernel;
  const handed: Array<{ jobId: string; token: string }> = [];
  let started!: () => void;
  const firstStart = new Promise<void>((r) => (started = r));

  beforeAll(async () => {
    pg = await startOwnPostgres({ wal_writer_delay: '10000ms' });
    kernel = await startTestKernel({
      databaseUrl: pg.url,
      env: {
        // Nothing else commits on its own between the claim and the crash.
        KERNEL_SCHEDULER_CRON_MS: '3600000',
        KERNEL_AUDIT_SEQUENCER_MS: '3600000',
        KERNEL_SCHEDULER_LEASE_MS: '60000',
        KERNEL_SCHEDULER_POLL_MS: '100',
      },
    });
    kernel.kernel.jobs.register('crash.job', async (job) => {
      const [row] = await job.db.inTenantTransaction(job.tenantId, (tx) =>
        tx.query<{ token: string }>('SELECT lease_token::text AS token FROM scheduler_job WHERE job_id = $1', [job.jobId]),
      );
      handed.push({ jobId: job.jobId, token: row.token });
      started();
      // Still working when the database crashes; ends when the node stops (the signal aborts).
      await new Promise<void>((resolve) => job.signal.addEventListener('abort', () => resolve(), { once: true }));
    });
  }, 120_000);
  afterAll(async () => {
    await kernel?.stop();
    await pg?.destroy();
  });

  test('a crash right after a claim: the token stays with its holder and is never reissued', async () => {
    const { jobId } = await kernel.kernel.db.inTenantTransaction('crash', (tx) => enqueueJob(tx, { type: 'crash.job', payload: {} }));
    await firstStart;
    await pg.stop('immediate'); // a crash: no shutdown checkpoint, unflushed WAL is lost
    await pg.start();
    // The node reconnects by itself and keeps claiming; give a reissue every chance to happen.
    const su = new Client({ connectionString: pg.url });
    await waitFor(async () => {
      try {
        await su.connect();
        return true;
      } catch {
        return false;
      }
    }, 30_000);
    try {
      await new Promise((r) => setTimeout(r, 2000));
      const tokens = handed.map((h) => h.token);
      expect(new Set(tokens).size).toBe(tokens.length);
      const { rows } = await su.query(`SELECT state, attempt, lease_token::text AS token FROM scheduler_job WHERE tenant_id = 'crash' AND job_id = $1`, [jobId]);
      // The claim survived the crash: the job is still RUNNING under the first holder's token.
      expect(rows[0]).toEqual({ state: 'RUNNING', attempt: 1, token: handed[0].token });
    } finally {
      await su.end();
    }
  });
});
