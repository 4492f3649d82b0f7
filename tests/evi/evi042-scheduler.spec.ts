import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { trace as otelTrace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Metadata, Status } from 'nice-grpc-common';
import { Client } from 'pg';
import { withConnection } from '../support/superuser-sql';
import { closeKernelClient, createSchedulerClient, type SchedulerClient } from '../../clients/src';
import { JobState, OverlapPolicy } from '../../gen/proto/axis/kernel/scheduler/v1/job';
import { mintDevelopmentToken } from '../../services/platform/auth/token-verifier';
import { enqueueJob } from '../../services/scheduler/job-api';
import { spawnKernel, type KernelProcess } from '../support/kernel-process';
import { refusal } from '../support/refusal';
import { createBackendDatabase, startTestKernel, type TestBackendDatabase, type TestKernel } from '../support/test-kernel';
import { waitFor as pollUntil } from '../support/wait-for';

const ROOT = path.resolve(__dirname, '../..');
const SCOPES = 'scheduler:read scheduler:write scheduler:work';
/**
 * [A] runs on both backends: on the embedded database the three kernel processes share the test
 * process's PGlite server over the wire protocol (one session, transactions one at a time), which
 * still exercises the unique tick keys, SKIP LOCKED claims and LISTEN/NOTIFY relay.
 */
const multiProcess = test;
/** The test kernel's in-process workers: jobs at once, and jobs leased ahead into its local queue. */
const CONCURRENCY = 16;
const PREFETCH = 32;

describe('EVI042 Scheduler / heartbeat (K-M5)', () => {
  let db: TestBackendDatabase;
  let kernel: TestKernel;
  const clients: SchedulerClient[] = [];
  const exporter = new InMemorySpanExporter();

  beforeAll(async () => {
    otelTrace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    db = await createBackendDatabase();
    kernel = await startTestKernel({
      databaseUrl: db.url,
      env: { KERNEL_SCHEDULER_CONCURRENCY: String(CONCURRENCY), KERNEL_SCHEDULER_PREFETCH: String(PREFETCH), KERNEL_SCHEDULER_POLL_MS: '250' },
    });
  });

  afterAll(async () => {
    clients.forEach(closeKernelClient);
    await kernel?.stop();
    await db?.close();
    otelTrace.disable();
  });

  const clientFor = async (tenant: string, address = kernel.address, secret = kernel.secret) => {
    const token = await mintDevelopmentToken({ secret, subject: 'tester', tenants: [tenant], scope: SCOPES });
    const client = createSchedulerClient({ address, tenantId: tenant, token });
    clients.push(client);
    return client;
  };

  const sql = withConnection;

  multiProcess('[A] three kernel processes run a per-second cron for 10 s: each tick fires and runs exactly once; after all nodes were down 5 s, catch-up follows the policy', async () => {
    const own = await createBackendDatabase();
    const secret = randomBytes(32).toString('base64url');
    const env = { DATABASE_URL: own.url, KERNEL_AUTH_SECRET: secret, KERNEL_SCHEDULER_CRON_MS: '100' };
    let nodes: KernelProcess[] = [];
    try {
      nodes = await Promise.all([1, 2, 3].map(() => spawnKernel(env)));
      const client = await clientFor('tenant-a', nodes[0].address, secret);
      const every = (scheduleId: string, overlapPolicy: OverlapPolicy) =>
        client.createSchedule({
          schedule: { scheduleId, cron: '* * * * * *', timeZone: 'Europe/Berlin', jobType: 'kernel.noop', overlapPolicy, catchupWindow: { seconds: 3, nanos: 0 } },
        });
      await every('all', OverlapPolicy.OVERLAP_POLICY_ALLOW_ALL);
      await every('skip', OverlapPolicy.OVERLAP_POLICY_SKIP);
      await new Promise((r) => setTimeout(r, 10_000));
      await Promise.all(nodes.map((n) => n.stop()));
      const stoppedAt = await sql(own.url, async (c) => (await c.query('SELECT now() AS t')).rows[0].t as Date);
      nodes = [];
      await new Promise((r) => setTimeout(r, 5000));
      nodes = [await spawnKernel(env)];
      const restartedAt = await sql(own.url, async (c) => (await c.query('SELECT now() AS t')).rows[0].t as Date);
      await waitFor(() =>
        sql(own.url, async (c) => {
          const { rows } = await c.query(
            `SELECT count(*)::int AS n FROM scheduler_schedule WHERE tenant_id = 'tenant-a' AND next_fire_time > $1`, [restartedAt]);
          return rows[0].n === 2;
        }),
      );
      // Caught up: pause both, let the last jobs finish, stop.
      const resumed = await clientFor('tenant-a', nodes[0].address, secret);
      await resumed.pauseSchedule({ scheduleId: 'all', paused: true });
      await resumed.pauseSchedule({ scheduleId: 'skip', paused: true });
      await waitFor(() =>
        sql(own.url, async (c) => (await c.query(`SELECT count(*)::int AS n FROM scheduler_job WHERE tenant_id = 'tenant-a' AND state IN ('QUEUED', 'RUNNING')`)).rows[0].n === 0),
      );
      await Promise.all(nodes.map((n) => n.stop()));
      nodes = [];

      await sql(own.url, async (c) => {
        const ticks = async (id: string) =>
          (await c.query(`SELECT tick_time, outcome, job_id, create_time FROM scheduler_schedule_tick WHERE tenant_id = 'tenant-a' AND schedule_id = $1 ORDER BY tick_time`, [id])).rows as Array<{
            tick_time: Date; outcome: string; job_id: string | null; create_time: Date;
          }>;
        for (const id of ['all', 'skip']) {
          const rows = await ticks(id);
          // Every second from the first tick to the last has exactly one tick row (the primary key forbids two).
          const seconds = rows.map((r) => r.tick_time.getTime() / 1000);
          expect(seconds.every((s, i) => i === 0 || s === seconds[i - 1] + 1)).toBe(true);
          expect(rows.length).toBeGreaterThanOrEqual(15);
          // Each enqueued tick has exactly one job, which ran exactly once (one attempt, succeeded).
          const jobs = (await c.query(`SELECT job_id, tick_time, state, attempt FROM scheduler_job WHERE tenant_id = 'tenant-a' AND schedule_id = $1`, [id])).rows;
          const enqueued = rows.filter((r) => r.outcome === 'ENQUEUED');
          expect(jobs.map((j) => j.job_id).sort()).toEqual(enqueued.map((r) => r.job_id).sort());
          expect(new Set(jobs.map((j) => j.tick_time.getTime())).size).toBe(jobs.length);
          expect(jobs.filter((j) => !(j.state === 'SUCCEEDED' && j.attempt === 1))).toEqual([]);
          // While the nodes ran, ALLOW_ALL enqueued every tick; SKIP enqueued or skipped (a run still pending).
          const live = rows.filter((r) => r.tick_time.getTime() < stoppedAt.getTime() - 2000);
          expect(live.every((r) => r.outcome === (id === 'all' ? 'ENQUEUED' : r.outcome) && r.outcome !== 'MISSED')).toBe(true);
          // Catch-up: ticks of the outage older than the 3 s window when processed are MISSED.
          const outage = rows.filter((r) => r.tick_time > stoppedAt && r.tick_time < restartedAt);
          expect(outage.length).toBeGreaterThanOrEqual(5);
          for (const r of outage) {
            const late = r.create_time.getTime() - r.tick_time.getTime();
            expect(r.outcome === 'MISSED').toBe(late > 3000);
          }
          const caughtUp = outage.filter((r) => r.outcome !== 'MISSED');
          expect(caughtUp.length).toBeGreaterThan(0);
          if (id === 'all') expect(caughtUp.every((r) => r.outcome === 'ENQUEUED')).toBe(true);
          // SKIP: at most one catch-up run (none if a run fired just before the outage was still
          // pending); the other late ticks overlap it and are skipped.
          if (id === 'skip') expect(caughtUp.filter((r) => r.outcome === 'ENQUEUED').length).toBeLessThanOrEqual(1);
        }
        // The work was shared by the nodes: ticks were fired by more than one process.
        const owners = (await c.query(`SELECT count(DISTINCT lease_owner)::int AS n FROM scheduler_job WHERE tenant_id = 'tenant-a'`)).rows[0].n;
        expect(owners).toBeGreaterThan(1);
      });
    } finally {
      await Promise.all(nodes.map((n) => n.kill()));
      await own.close();
    }
  });

  test('[A] a backfill fires only ticks never fired: over ticks the cron already fired, or an earlier backfill fired, it enqueues nothing', async () => {
    const tenant = 'tenant-a-backfill';
    const client = await clientFor(tenant);
    await client.createSchedule({
      schedule: { scheduleId: 'every-second', cron: '* * * * * *', timeZone: 'UTC', jobType: 'kernel.noop', overlapPolicy: OverlapPolicy.OVERLAP_POLICY_ALLOW_ALL, catchupWindow: { seconds: 60, nanos: 0 } },
    });
    const ticks = () =>
      sql(kernel.databaseUrl, async (c) =>
        (await c.query(`SELECT tick_time, kind FROM scheduler_schedule_tick WHERE tenant_id = $1 AND schedule_id = 'every-second' ORDER BY tick_time`, [tenant])).rows as Array<{ tick_time: Date; kind: string }>,
      );
    const jobsPerTick = () =>
      sql(kernel.databaseUrl, async (c) =>
        (await c.query(`SELECT tick_time, count(*)::int AS n FROM scheduler_job WHERE tenant_id = $1 AND schedule_id = 'every-second' GROUP BY tick_time ORDER BY tick_time`, [tenant])).rows as Array<{
          tick_time: Date;
          n: number;
        }>,
      );
    await waitFor(async () => (await ticks()).length >= 3);
    // Paused: the pause waits for any firing in progress (row lock), so the fired ticks are final.
    await client.pauseSchedule({ scheduleId: 'every-second', paused: true });
    const fired = await ticks();
    expect(fired.every((t) => t.kind === 'CRON')).toBe(true);
    const [first, last] = [fired[0].tick_time.getTime(), fired[fired.length - 1].tick_time.getTime()];
    expect((await jobsPerTick()).map((j) => [j.tick_time.getTime(), j.n])).toEqual(fired.map((t) => [t.tick_time.getTime(), 1]));

    // (first − 1 s, last] holds exactly the ticks the cron fired: none fires again.
    const overFired = await client.backfillSchedule({ scheduleId: 'every-second', startTime: new Date(first - 1000), endTime: new Date(last) });
    expect(overFired.ticks).toEqual([]);
    // One second further back there is one tick never fired: only it fires, and only once.
    const window = { scheduleId: 'every-second', startTime: new Date(first - 2000), endTime: new Date(last) };
    const once = await client.backfillSchedule(window);
    expect(once.ticks.map((t) => t.tickTime!.getTime())).toEqual([first - 1000]);
    expect(once.ticks[0].jobId).not.toBe('');
    expect((await client.backfillSchedule(window)).ticks).toEqual([]);
    // One job per tick, the backfilled one included, and no other.
    expect((await jobsPerTick()).map((j) => [j.tick_time.getTime(), j.n])).toEqual([[first - 1000, 1], ...fired.map((t) => [t.tick_time.getTime(), 1])]);
    expect((await ticks()).map((t) => t.kind)).toEqual(['BACKFILL', ...fired.map(() => 'CRON')]);
  });

  test('[B] a worker process killed with SIGKILL mid-job: the job is re-leased after the lease expires and the old worker\'s CompleteJob is refused (fencing)', async () => {
    const client = await clientFor('tenant-b');
    const { job } = await client.enqueueJob({ job: { jobType: 'remote.crash', queue: 'crash', maxAttempts: 3, payload: { doc: 42 } } });
    const token = await mintDevelopmentToken({ secret: kernel.secret, subject: 'worker', tenants: ['tenant-b'], scope: SCOPES });
    const worker = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'tests/scheduler/remote-worker.ts'), kernel.address, 'tenant-b', token, 'crash', '2'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    const first = await new Promise<{ jobId: string; leaseToken: number; attempt: number }>((resolve) =>
      createInterface({ input: worker.stdout! }).once('line', (line) => resolve(JSON.parse(line))),
    );
    expect(first).toMatchObject({ jobId: job!.jobId, attempt: 1 });
    worker.kill('SIGKILL');
    await exited;

    // Another worker long-polls: it gets the job once the dead worker's lease has lapsed and was rescued.
    const { leases } = await client.leaseJobs({ queue: 'crash', wait: { seconds: 30, nanos: 0 }, leaseDuration: { seconds: 30, nanos: 0 } }, { deadline: 45_000 });
    expect(leases).toHaveLength(1);
    const second = leases[0];
    expect(second.job).toMatchObject({ jobId: job!.jobId, attempt: 2, state: JobState.JOB_STATE_RUNNING });
    expect(second.leaseToken).toBeGreaterThan(first.leaseToken);
    expect(second.job!.errors).toEqual([expect.objectContaining({ attempt: 1, error: expect.stringMatching(/^LEASE_EXPIRED/) })]);

    // The zombie comes back: every call with its fencing token is refused, nothing changes.
    for (const call of [
      () => client.completeJob({ jobId: job!.jobId, leaseToken: first.leaseToken }),
      () => client.failJob({ jobId: job!.jobId, leaseToken: first.leaseToken, error: 'late' }),
      () => client.heartbeat({ jobId: job!.jobId, leaseToken: first.leaseToken }),
    ]) {
      const refused = await refusal(call());
      expect([refused.code, refused.reason]).toEqual([Status.FAILED_PRECONDITION, 'LEASE_LOST']);
    }
    expect((await client.getJob({ jobId: job!.jobId })).job).toMatchObject({ state: JobState.JOB_STATE_RUNNING, attempt: 2 });
    const done = await client.completeJob({ jobId: job!.jobId, leaseToken: second.leaseToken });
    expect(done.job!.state).toBe(JobState.JOB_STATE_SUCCEEDED);
  });

  test('[C] a failing job is retried with exponential backoff, then dead-lettered with its errors recorded, an audit event, a notification and an error log with its trace id', async () => {
    const attempts: number[] = [];
    kernel.kernel.jobs.register('evi.always-fails', async (job) => {
      attempts.push(job.attempt);
      throw new Error(`upstream refused attempt ${job.attempt}`);
    });
    const listener = new Client({ connectionString: kernel.databaseUrl });
    await listener.connect();
    const events: string[] = [];
    listener.on('notification', (n) => events.push(n.payload ?? ''));
    await listener.query('LISTEN axis_scheduler_dead_letter');
    try {
      const client = await clientFor('tenant-c');
      const { job } = await client.enqueueJob({ job: { jobType: 'evi.always-fails', payload: { invoice: 7 }, maxAttempts: 4, backoffBase: { seconds: 0, nanos: 100_000_000 } } });
      await waitFor(async () => (await client.getJob({ jobId: job!.jobId })).job!.state === JobState.JOB_STATE_DEAD, 30_000);
      const dead = (await client.getJob({ jobId: job!.jobId })).job!;
      expect(attempts).toEqual([1, 2, 3, 4]);
      expect(dead.attempt).toBe(4);
      expect(dead.errors.map((e) => [e.attempt, e.error])).toEqual([1, 2, 3, 4].map((n) => [n, `upstream refused attempt ${n}`]));
      // Backoff: attempt n waits 100 ms · 2^(n-1), ±50 % jitter; the last attempt has no retry.
      dead.errors.slice(0, 3).forEach((e, i) => {
        const delay = e.retryTime!.getTime() - e.errorTime!.getTime();
        expect(delay).toBeGreaterThanOrEqual(0.5 * 100 * 2 ** i);
        expect(delay).toBeLessThan(1.5 * 100 * 2 ** i + 1);
      });
      expect(dead.errors[3].retryTime).toBeUndefined();

      await sql(kernel.databaseUrl, async (c) => {
        const letter = (await c.query(`SELECT * FROM scheduler_dead_letter WHERE tenant_id = 'tenant-c' AND job_id = $1`, [job!.jobId])).rows;
        expect(letter).toEqual([expect.objectContaining({ type: 'evi.always-fails', attempts: 4, last_error: 'upstream refused attempt 4', payload: { invoice: 7 }, trace_id: dead.traceId })]);
        expect(letter[0].errors).toHaveLength(4);
        const audit = (await c.query(`SELECT action, resource, trace_id, principal FROM kernel_audit_event WHERE tenant_id = 'tenant-c' AND action LIKE '%DeadLetterJob'`)).rows;
        expect(audit).toEqual([{ action: 'axis.kernel.scheduler.v1.SchedulerService/DeadLetterJob', resource: `jobs/${job!.jobId}`, trace_id: expect.stringMatching(/^[0-9a-f]{32}$/), principal: 'system:kernel' }]);
        expect(audit[0].trace_id).toBe(dead.traceId);
      });
      await waitFor(async () => events.includes(`tenant-c/${job!.jobId}`));
      const logged = kernel.logs.entries().filter((e) => e.level === 'error' && e.job_id === job!.jobId);
      expect(logged).toEqual([expect.objectContaining({ msg: 'job dead-lettered after its last attempt', trace_id: dead.traceId, tenant: 'tenant-c' })]);
      expect(kernel.kernel.metrics.total('scheduler_jobs_dead_lettered_total')).toBeGreaterThanOrEqual(1);
    } finally {
      await listener.end();
    }
  });

  test("[D] a tenant with 50,000 queued jobs does not starve another tenant's job (bounded wait); tenant isolation", async () => {
    const started: string[] = [];
    kernel.kernel.jobs.register('evi.bulk', async (job) => {
      started.push(job.tenantId);
    });
    // 50,000 ready jobs of the noisy tenant, inserted the way enqueueJob does (one statement).
    await kernel.kernel.db.inTenantTransaction('tenant-d-noisy', (tx) =>
      tx.query(
        `INSERT INTO scheduler_job (tenant_id, job_id, queue, type, payload, max_attempts, backoff_base_ms, timeout_ms, traceparent, trace_id)
         SELECT 'tenant-d-noisy', gen_random_uuid()::text, 'default', 'evi.bulk', jsonb_build_object('n', n), 3, 1000, 60000,
                '00-' || md5(n::text) || '-' || left(md5('s' || n), 16) || '-01', md5(n::text)
         FROM generate_series(1, 50000) AS n`,
      ),
    );
    const quiet = await clientFor('tenant-d-quiet');
    const noisy = await clientFor('tenant-d-noisy');
    // Let the backlog get going, then the quiet tenant enqueues one job.
    await waitFor(() => sql(kernel.databaseUrl, async (c) => (await c.query(`SELECT count(*)::int AS n FROM scheduler_job WHERE tenant_id = 'tenant-d-noisy' AND state = 'SUCCEEDED'`)).rows[0].n >= 100));
    // Enqueued through the in-process API, counting the jobs started up to the moment its COMMIT
    // is sent (the job can start on another connection before this one hears the COMMIT's answer).
    let beforeCommit = -1;
    const job = {
      jobId: await kernel.kernel.db.inTenantTransaction('tenant-d-quiet', async (tx) => {
        const { jobId } = await enqueueJob(tx, { type: 'evi.bulk', payload: { urgent: true } });
        beforeCommit = started.length;
        return jobId;
      }),
    };
    await waitFor(async () => (await quiet.getJob({ jobId: job!.jobId })).job!.state === JobState.JOB_STATE_SUCCEEDED, 60_000);
    // Bounded wait, counted in jobs not time: before the quiet job, only noisy jobs the node had
    // already leased start — its local queue (PREFETCH) and running jobs (CONCURRENCY), plus at most
    // one more leased batch (PREFETCH) taken while the COMMIT was in flight — while tens of
    // thousands of the noisy tenant's jobs are still waiting. The next claim after the commit is
    // the quiet tenant's turn (round-robin by tenant).
    const ahead = started.slice(beforeCommit, started.indexOf('tenant-d-quiet')).length;
    expect(started.indexOf('tenant-d-quiet')).toBeGreaterThanOrEqual(beforeCommit);
    expect(ahead).toBeLessThanOrEqual(2 * PREFETCH + CONCURRENCY);
    await sql(kernel.databaseUrl, async (c) => {
      const waiting = (await c.query(`SELECT count(*)::int AS n FROM scheduler_job WHERE tenant_id = 'tenant-d-noisy' AND state = 'QUEUED'`)).rows[0].n;
      expect(waiting).toBeGreaterThan(10_000);
    });

    // Isolation: the quiet tenant sees and touches nothing of the noisy one.
    const [noisyJob] = (await noisy.listJobs({ pageSize: 1 })).jobs;
    for (const call of [() => quiet.getJob({ jobId: noisyJob.jobId }), () => quiet.cancelJob({ jobId: noisyJob.jobId }), () => quiet.completeJob({ jobId: noisyJob.jobId, leaseToken: 1 })]) {
      const refused = await refusal(call());
      expect([refused.code, refused.reason]).toEqual([Status.NOT_FOUND, 'JOB_NOT_FOUND']);
    }
    expect((await quiet.listJobs({ pageSize: 1000 })).jobs.map((j) => j.jobId)).toEqual([job.jobId]);
    const forged = await refusal(quiet.getJob({ jobId: noisyJob.jobId }, { tenantId: 'tenant-d-noisy' }));
    expect([forged.code, forged.reason]).toEqual([Status.PERMISSION_DENIED, 'TENANT_NOT_ALLOWED']);
    await sql(kernel.databaseUrl, async (c) => {
      await c.query('BEGIN');
      try {
        await c.query(`SELECT set_config('role', 'axis_kernel_app', true), set_config('axis.tenant_id', 'tenant-d-quiet', true)`);
        for (const table of ['scheduler_job', 'scheduler_dead_letter', 'scheduler_schedule', 'scheduler_schedule_tick']) {
          expect((await c.query(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = 'tenant-d-noisy'`)).rows[0].n).toBe(0);
        }
        const stolen = await c.query(`UPDATE scheduler_job SET state = 'CANCELLED' WHERE tenant_id = 'tenant-d-noisy' RETURNING 1`);
        expect(stolen.rows).toEqual([]);
      } finally {
        await c.query('ROLLBACK');
      }
      // Free the machine for the other proofs.
      await c.query(`DELETE FROM scheduler_job WHERE tenant_id = 'tenant-d-noisy' AND state = 'QUEUED'`);
    });
  });

  test("[E] the job carries the enqueuer's trace context, its execution span belongs to and links that trace, its logs carry the trace id; schedule changes are audited", async () => {
    const seen: Array<{ traceId: string; spanId: string }> = [];
    kernel.kernel.jobs.register('evi.traced', async (job) => {
      seen.push({ traceId: job.trace.traceId, spanId: job.trace.spanId });
      job.log.info({ step: 'inside' }, 'traced job working');
    });
    const client = await clientFor('tenant-e');
    const traceId = randomBytes(16).toString('hex');
    const callerSpan = randomBytes(8).toString('hex');
    const metadata = () => Metadata({ traceparent: `00-${traceId}-${callerSpan}-01` });
    const { job } = await client.enqueueJob({ job: { jobType: 'evi.traced', payload: {} } }, { metadata: metadata() });
    expect(job!.traceId).toBe(traceId);
    await waitFor(async () => (await client.getJob({ jobId: job!.jobId })).job!.state === JobState.JOB_STATE_SUCCEEDED);

    expect(seen).toEqual([{ traceId, spanId: expect.stringMatching(/^[0-9a-f]{16}$/) }]);
    const span = exporter.getFinishedSpans().find((s) => s.name === 'job evi.traced');
    expect(span).toBeDefined();
    expect(span!.spanContext().traceId).toBe(traceId);
    expect(span!.spanContext().spanId).toBe(seen[0].spanId);
    const enqueueSpanId = span!.parentSpanContext!.spanId;
    expect(span!.parentSpanContext!.traceId).toBe(traceId);
    expect(span!.links.map((l) => l.context.traceId)).toEqual([traceId]);
    expect(span!.attributes).toMatchObject({ 'axis.job.id': job!.jobId, 'axis.tenant': 'tenant-e' });
    const logs = kernel.logs.entries().filter((e) => e.step === 'inside');
    expect(logs).toEqual([expect.objectContaining({ trace_id: traceId, job_id: job!.jobId, tenant: 'tenant-e' })]);

    // Schedule changes are audited (one entry per change, with the caller's trace id).
    await client.createSchedule({ schedule: { scheduleId: 'audited', cron: '0 9 * * MON-FRI', timeZone: 'America/New_York', jobType: 'evi.traced', overlapPolicy: OverlapPolicy.OVERLAP_POLICY_SKIP } }, { metadata: metadata() });
    await client.pauseSchedule({ scheduleId: 'audited', paused: true }, { metadata: metadata() });
    const { tick } = await client.triggerSchedule({ scheduleId: 'audited' }, { metadata: metadata() });
    await client.backfillSchedule({ scheduleId: 'audited', startTime: new Date('2026-11-02T00:00:00Z'), endTime: new Date('2026-11-04T00:00:00Z') }, { metadata: metadata() });
    const triggered = (await client.getJob({ jobId: tick!.jobId })).job!;
    expect(triggered.traceId).toBe(traceId);
    await sql(kernel.databaseUrl, async (c) => {
      const { rows } = await c.query(
        `SELECT action, resource, trace_id, outcome FROM kernel_audit_event WHERE tenant_id = 'tenant-e' AND resource = 'schedules/audited' ORDER BY event_id`,
      );
      expect(rows.map((r) => r.action.split('/')[1])).toEqual(['CreateSchedule', 'PauseSchedule', 'TriggerSchedule', 'BackfillSchedule']);
      expect(rows.every((r) => r.trace_id === traceId && r.outcome === 'OK')).toBe(true);
      const enqueued = (await c.query(`SELECT trace_id FROM kernel_audit_event WHERE tenant_id = 'tenant-e' AND resource = $1`, [`jobs/${job!.jobId}`])).rows;
      expect(enqueued).toEqual([{ trace_id: traceId }]);
    });
    expect(enqueueSpanId).toMatch(/^[0-9a-f]{16}$/);
  });
});

/** This file's polling: up to 20 s, every 100 ms. */
const waitFor = (condition: () => Promise<boolean>, timeoutMs = 20_000) => pollUntil(condition, timeoutMs, 100);
