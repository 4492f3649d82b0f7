import { Status } from 'nice-grpc-common';
import { Client } from 'pg';
import { closeKernelClient, createSchedulerClient, type SchedulerClient } from '../../clients/src';
import { JobState, OverlapPolicy } from '../../gen/proto/axis/kernel/scheduler/v1/job';
import { enqueueJob } from '../../services/scheduler/job-api';
import { refusal } from '../support/refusal';
import { startTestKernel, type TestKernel } from '../support/test-kernel';
import { waitFor as pollUntil } from '../support/wait-for';

/** Jobs end to end on one in-process kernel: in-process handlers, de-duplication, remote workers, fencing. */
describe('scheduler jobs', () => {
  let kernel: TestKernel;
  const clients: SchedulerClient[] = [];
  const ran: string[] = [];
  const aborted: string[] = [];

  beforeAll(async () => {
    kernel = await startTestKernel({ env: { KERNEL_SCHEDULER_POLL_MS: '200' } });
    kernel.kernel.jobs.register('test.record', async (job) => {
      ran.push(`${job.tenantId}:${(job.payload as { n: number }).n}:${job.attempt}`);
    });
    // Runs until its signal aborts (it never finishes on its own): the job's timeout must stop it.
    kernel.kernel.jobs.register('test.until-aborted', async (job) => {
      await new Promise<void>((resolve) => job.signal.addEventListener('abort', () => resolve(), { once: true }));
      aborted.push(String((job.signal.reason as Error).message));
    });
  });
  afterAll(async () => {
    clients.forEach(closeKernelClient);
    await kernel?.stop();
  });
  const clientFor = async (tenant: string) => {
    const client = createSchedulerClient({ address: kernel.address, tenantId: tenant, token: await kernel.token({ tenants: [tenant] }) });
    clients.push(client);
    return client;
  };

  test('an enqueued job runs on an in-process handler and succeeds; enqueue inside a tenant transaction commits with it', async () => {
    const client = await clientFor('t-jobs');
    const { job } = await client.enqueueJob({ job: { jobType: 'test.record', payload: { n: 1 } } });
    expect(job).toMatchObject({ state: JobState.JOB_STATE_QUEUED, queue: 'default', maxAttempts: 25 });
    await waitFor(async () => (await client.getJob({ jobId: job!.jobId })).job!.state === JobState.JOB_STATE_SUCCEEDED);
    expect(ran).toContain('t-jobs:1:1');

    // Rolled back with its transaction: never runs.
    await expect(
      kernel.kernel.db.inTenantTransaction('t-jobs', async (tx) => {
        await enqueueJob(tx, { type: 'test.record', payload: { n: 2 } });
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    const committed = await kernel.kernel.db.inTenantTransaction('t-jobs', (tx) => enqueueJob(tx, { type: 'test.record', payload: { n: 3 } }));
    await waitFor(async () => (await client.getJob({ jobId: committed.jobId })).job!.state === JobState.JOB_STATE_SUCCEEDED);
    expect(ran).not.toContain('t-jobs:2:1');
  });

  test('a job past its timeout is stopped: the signal of its handler aborts with the TIMEOUT reason and the attempt fails', async () => {
    const client = await clientFor('t-timeout');
    const { jobId } = await kernel.kernel.db.inTenantTransaction('t-timeout', (tx) =>
      enqueueJob(tx, { type: 'test.until-aborted', payload: {}, timeoutMs: 300, maxAttempts: 1 }),
    );
    await waitFor(async () => (await client.getJob({ jobId })).job!.state === JobState.JOB_STATE_DEAD);
    await waitFor(async () => aborted.length > 0);
    expect(aborted[0]).toMatch(/^TIMEOUT: the job ran longer than 300 ms/);
  });

  test('job keys de-duplicate while the job is queued', async () => {
    const client = await clientFor('t-dedup');
    const runTime = new Date(Date.now() + 3600_000);
    const first = await client.enqueueJob({ job: { jobType: 'remote.thing', queue: 'remote', jobKey: 'k1', runTime } });
    const second = await client.enqueueJob({ job: { jobType: 'remote.thing', queue: 'remote', jobKey: 'k1', runTime } });
    expect(second.deduplicated).toBe(true);
    expect(second.job!.jobId).toBe(first.job!.jobId);
    const cancelled = await client.cancelJob({ jobId: first.job!.jobId });
    expect(cancelled.job!.state).toBe(JobState.JOB_STATE_CANCELLED);
    const third = await client.enqueueJob({ job: { jobType: 'remote.thing', queue: 'remote', jobKey: 'k1', runTime } });
    expect(third.deduplicated).toBe(false);
    const again = await refusal(client.cancelJob({ jobId: first.job!.jobId }));
    expect([again.code, again.reason]).toEqual([Status.FAILED_PRECONDITION, 'JOB_NOT_CANCELLABLE']);
  });

  test('a remote worker leases, heartbeats and completes; a stale token is refused with LEASE_LOST', async () => {
    const client = await clientFor('t-remote');
    const { job } = await client.enqueueJob({ job: { jobType: 'remote.work', queue: 'remote', payload: { hello: 'world' } } });
    const { leases } = await client.leaseJobs({ queue: 'remote', maxJobs: 5, wait: { seconds: 5, nanos: 0 }, leaseDuration: { seconds: 10, nanos: 0 } });
    expect(leases).toHaveLength(1);
    expect(leases[0].job).toMatchObject({ jobId: job!.jobId, payload: { hello: 'world' }, state: JobState.JOB_STATE_RUNNING, attempt: 1 });
    const token = leases[0].leaseToken;
    await client.heartbeat({ jobId: job!.jobId, leaseToken: token });
    const stale = await refusal(client.completeJob({ jobId: job!.jobId, leaseToken: token + 1000 }));
    expect([stale.code, stale.reason]).toEqual([Status.FAILED_PRECONDITION, 'LEASE_LOST']);
    const done = await client.completeJob({ jobId: job!.jobId, leaseToken: token });
    expect(done.job!.state).toBe(JobState.JOB_STATE_SUCCEEDED);
    const twice = await refusal(client.completeJob({ jobId: job!.jobId, leaseToken: token }));
    expect([twice.code, twice.reason]).toEqual([Status.FAILED_PRECONDITION, 'LEASE_LOST']);
  });

  test('a long-poll LeaseJobs wakes up when a job is enqueued', async () => {
    const client = await clientFor('t-poll');
    const polling = client.leaseJobs({ queue: 'poll', wait: { seconds: 20, nanos: 0 } });
    await new Promise((r) => setTimeout(r, 300));
    const { job } = await client.enqueueJob({ job: { jobType: 'poll.work', queue: 'poll' } });
    const { leases } = await polling;
    expect(leases.map((l) => l.job!.jobId)).toEqual([job!.jobId]);
  });

  test('schedules: create, trigger, pause, backfill once', async () => {
    const client = await clientFor('t-sched');
    const { schedule } = await client.createSchedule({
      schedule: { scheduleId: 'nightly', cron: '0 3 * * *', timeZone: 'Europe/Berlin', jobType: 'remote.nightly', queue: 'remote', overlapPolicy: OverlapPolicy.OVERLAP_POLICY_ALLOW_ALL, catchupWindow: { seconds: 0, nanos: 0 } },
    });
    expect(schedule!.nextFireTime!.getTime()).toBeGreaterThan(Date.now());
    const { tick } = await client.triggerSchedule({ scheduleId: 'nightly' });
    expect(tick!.jobId).not.toBe('');
    const paused = await client.pauseSchedule({ scheduleId: 'nightly', paused: true });
    expect(paused.schedule!.paused).toBe(true);
    const start = new Date(Date.now() - 5 * 86_400_000);
    const end = new Date(Date.now() - 86_400_000);
    const first = await client.backfillSchedule({ scheduleId: 'nightly', startTime: start, endTime: end });
    expect(first.ticks.length).toBeGreaterThanOrEqual(3);
    const second = await client.backfillSchedule({ scheduleId: 'nightly', startTime: start, endTime: end });
    expect(second.ticks).toEqual([]);
  });

  test("a trigger in the millisecond of the schedule's latest tick (or before it) takes the next millisecond: no TICK_EXISTS", async () => {
    const client = await clientFor('t-triggers');
    await client.createSchedule({
      schedule: { scheduleId: 'burst', cron: '0 0 1 1 *', timeZone: 'UTC', jobType: 'remote.burst', queue: 'remote', overlapPolicy: OverlapPolicy.OVERLAP_POLICY_ALLOW_ALL },
    });
    // The latest tick 50 ms ahead of the database's clock: as if another trigger of the same
    // commit group had just taken this very millisecond (ticks keep milliseconds).
    const sql = new Client({ connectionString: kernel.databaseUrl });
    await sql.connect();
    try {
      const { rows } = await sql.query<{ latest: Date }>(
        `INSERT INTO scheduler_schedule_tick (tenant_id, schedule_id, tick_time, kind, outcome)
         VALUES ('t-triggers', 'burst', date_trunc('milliseconds', clock_timestamp()) + interval '50 milliseconds', 'TRIGGER', 'SKIPPED')
         RETURNING tick_time AS latest`,
      );
      const { tick } = await client.triggerSchedule({ scheduleId: 'burst' });
      expect(tick!.tickTime!.getTime()).toBe(rows[0].latest.getTime() + 1);
      const again = await client.triggerSchedule({ scheduleId: 'burst' });
      expect(again.tick!.tickTime!.getTime()).toBeGreaterThan(tick!.tickTime!.getTime());
    } finally {
      await sql.end();
    }
  });

  test('a LeaseJobs long-poll that waits for work is not a latency-budget violation', async () => {
    const client = await clientFor('tenant-budget');
    const before = kernel.kernel.metrics.total('rpc_budget_violations_total');
    const { leases } = await client.leaseJobs({ queue: 'empty-queue', maxJobs: 1, wait: { seconds: 1, nanos: 0 } });
    expect(leases).toEqual([]);
    expect(kernel.kernel.metrics.total('rpc_budget_violations_total')).toBe(before);
  });
});

/** This file's polling: up to 15 s, every 50 ms. */
const waitFor = (condition: () => Promise<boolean>, timeoutMs = 15_000) => pollUntil(condition, timeoutMs, 50);
