import { Status } from 'nice-grpc-common';
import { Client } from 'pg';
import { closeKernelClient, createSchedulerClient, type SchedulerClient } from '../../clients/src';
import { OverlapPolicy } from '../../gen/proto/axis/kernel/scheduler/v1/job';
import { mintDevelopmentToken } from '../../services/platform/auth/token-verifier';
import { refusal } from '../support/refusal';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

/**
 * Bad input to the scheduler RPCs: every refusal has a precise status and reason, the kernel
 * stays up, and nothing changes (no job, schedule, tick or audit row appears).
 */
describe('scheduler input validation', () => {
  let kernel: TestKernel;
  let client: SchedulerClient;
  let reader: SchedulerClient;
  const TENANT = 'bad-input';
  const UNKNOWN_JOB = '0190a6f1-0000-7000-8000-000000000000';

  beforeAll(async () => {
    kernel = await startTestKernel();
    client = createSchedulerClient({ address: kernel.address, tenantId: TENANT, token: await kernel.token({ tenants: [TENANT] }) });
    const readOnly = await mintDevelopmentToken({ secret: kernel.secret, subject: 'reader', tenants: [TENANT], scope: 'scheduler:read scheduler:write' });
    reader = createSchedulerClient({ address: kernel.address, tenantId: TENANT, token: readOnly });
  });
  afterAll(async () => {
    closeKernelClient(client);
    closeKernelClient(reader);
    await kernel?.stop();
  });

  const expectRefused = async (call: Promise<unknown>, code: Status, reason: string) => {
    const error = await refusal(call);
    expect([error.code, error.reason]).toEqual([code, reason]);
  };
  const schedule = (overrides: Record<string, unknown>) => ({
    schedule: { scheduleId: 'bad', cron: '* * * * *', timeZone: 'UTC', jobType: 'x.y', overlapPolicy: OverlapPolicy.OVERLAP_POLICY_SKIP, ...overrides },
  });

  test('EnqueueJob refuses bad job types, queues, payloads, delays and limits', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ jobType: '' }, 'FIELD_INVALID'],
      [{ jobType: 'Has Spaces' }, 'FIELD_INVALID'],
      [{ jobType: 'x'.repeat(101) }, 'FIELD_INVALID'],
      [{ jobType: 'ok', queue: '../etc' }, 'FIELD_INVALID'],
      [{ jobType: 'ok', payload: { blob: 'x'.repeat(70_000) } }, 'PAYLOAD_TOO_LARGE'],
      // The platform's request guard refuses U+0000 in any string before the handler runs.
      [{ jobType: 'ok', payload: { nul: 'a\u0000b' } }, 'FIELD_INVALID'],
      [{ jobType: 'ok', runTime: new Date(Date.now() + 400 * 86_400_000) }, 'RUN_TIME_OUT_OF_RANGE'],
      [{ jobType: 'ok', runTime: new Date('1000-01-01T00:00:00Z') }, 'RUN_TIME_OUT_OF_RANGE'],
      // Outside google.protobuf.Timestamp's range: the platform's request guard refuses it.
      [{ jobType: 'ok', runTime: new Date(-8.64e15) }, 'FIELD_INVALID'],
      [{ jobType: 'ok', priority: 5000 }, 'FIELD_INVALID'],
      [{ jobType: 'ok', maxAttempts: -1 }, 'FIELD_INVALID'],
      [{ jobType: 'ok', maxAttempts: 101 }, 'FIELD_INVALID'],
      [{ jobType: 'ok', timeout: { seconds: -5, nanos: 0 } }, 'FIELD_INVALID'],
      [{ jobType: 'ok', timeout: { seconds: 10 ** 12, nanos: 0 } }, 'FIELD_INVALID'],
      [{ jobType: 'ok', backoffBase: { seconds: 0, nanos: -1 } }, 'FIELD_INVALID'],
      [{ jobType: 'ok', jobKey: 'k'.repeat(256) }, 'FIELD_INVALID'],
      [{ jobType: 'ok', jobKey: 'has space' }, 'FIELD_INVALID'],
    ];
    for (const [request, reason] of cases) await expectRefused(client.enqueueJob({ job: request } as never), Status.INVALID_ARGUMENT, reason);
  });

  test('schedules refuse invalid cron expressions, unknown time zones, missing policies and bad ranges', async () => {
    await expectRefused(client.createSchedule(schedule({ cron: '61 * * * *' })), Status.INVALID_ARGUMENT, 'CRON_INVALID');
    await expectRefused(client.createSchedule(schedule({ cron: '* * 30 2 *' })), Status.INVALID_ARGUMENT, 'CRON_INVALID');
    await expectRefused(client.createSchedule(schedule({ cron: '' })), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    await expectRefused(client.createSchedule(schedule({ timeZone: 'Mars/Olympus' })), Status.INVALID_ARGUMENT, 'TIME_ZONE_UNKNOWN');
    await expectRefused(client.createSchedule(schedule({ overlapPolicy: OverlapPolicy.OVERLAP_POLICY_UNSPECIFIED })), Status.INVALID_ARGUMENT, 'ENUM_UNSPECIFIED');
    await expectRefused(client.createSchedule(schedule({ scheduleId: 'Bad Id' })), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    await expectRefused(client.createSchedule(schedule({ catchupWindow: { seconds: -1, nanos: 0 } })), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    await expectRefused(client.createSchedule({}), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    await expectRefused(client.getSchedule({ scheduleId: 'missing' }), Status.NOT_FOUND, 'SCHEDULE_NOT_FOUND');
    await expectRefused(client.triggerSchedule({ scheduleId: 'missing' }), Status.NOT_FOUND, 'SCHEDULE_NOT_FOUND');
    await expectRefused(client.pauseSchedule({ scheduleId: 'missing', paused: true }), Status.NOT_FOUND, 'SCHEDULE_NOT_FOUND');
    await client.createSchedule(schedule({ scheduleId: 'good', cron: '0 0 1 1 *' }));
    await expectRefused(client.createSchedule(schedule({ scheduleId: 'good' })), Status.ALREADY_EXISTS, 'SCHEDULE_EXISTS');
    const now = Date.now();
    await expectRefused(client.backfillSchedule({ scheduleId: 'good', startTime: new Date(now), endTime: new Date(now - 1000) }), Status.INVALID_ARGUMENT, 'RANGE_INVALID');
    await expectRefused(client.backfillSchedule({ scheduleId: 'good' }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    const everySecond = schedule({ scheduleId: 'fast', cron: '* * * * * *' });
    await client.createSchedule(everySecond);
    await expectRefused(client.backfillSchedule({ scheduleId: 'fast', startTime: new Date(now - 86_400_000), endTime: new Date(now) }), Status.INVALID_ARGUMENT, 'BACKFILL_TOO_LARGE');
  });

  test('unknown job ids, malformed ids and leases the caller does not hold are refused', async () => {
    await expectRefused(client.getJob({ jobId: UNKNOWN_JOB }), Status.NOT_FOUND, 'JOB_NOT_FOUND');
    await expectRefused(client.getJob({ jobId: 'not-a-uuid' }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    await expectRefused(client.cancelJob({ jobId: UNKNOWN_JOB }), Status.NOT_FOUND, 'JOB_NOT_FOUND');
    await expectRefused(client.completeJob({ jobId: UNKNOWN_JOB, leaseToken: 1 }), Status.NOT_FOUND, 'JOB_NOT_FOUND');
    await expectRefused(client.heartbeat({ jobId: UNKNOWN_JOB, leaseToken: 1 }), Status.NOT_FOUND, 'JOB_NOT_FOUND');
    await expectRefused(client.failJob({ jobId: UNKNOWN_JOB, leaseToken: 1, error: 'x' }), Status.NOT_FOUND, 'JOB_NOT_FOUND');
    await expectRefused(client.completeJob({ jobId: UNKNOWN_JOB, leaseToken: 0 }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    await expectRefused(client.completeJob({ jobId: UNKNOWN_JOB, leaseToken: -5 }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    // A queued job nobody leased: completing it is LEASE_LOST, and it stays queued.
    const { job } = await client.enqueueJob({ job: { jobType: 'remote.only', queue: 'nobody', runTime: new Date(Date.now() + 3600_000) } });
    await expectRefused(client.completeJob({ jobId: job!.jobId, leaseToken: 12345 }), Status.FAILED_PRECONDITION, 'LEASE_LOST');
    await expectRefused(client.failJob({ jobId: job!.jobId, leaseToken: 12345, error: 'no' }), Status.FAILED_PRECONDITION, 'LEASE_LOST');
    expect((await client.getJob({ jobId: job!.jobId })).job).toMatchObject({ state: 1, attempt: 0, errors: [] });
    await expectRefused(client.leaseJobs({ queue: '' }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    await expectRefused(client.leaseJobs({ queue: 'q', maxJobs: 1000 }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    await expectRefused(client.leaseJobs({ queue: 'q', wait: { seconds: 3600, nanos: 0 } }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    await expectRefused(client.leaseJobs({ queue: 'q', leaseDuration: { seconds: 0, nanos: 5 } }), Status.INVALID_ARGUMENT, 'FIELD_INVALID');
    // Remote-worker RPCs need scheduler:work.
    await expectRefused(reader.leaseJobs({ queue: 'nobody' }), Status.PERMISSION_DENIED, 'SCOPE_MISSING');
    await expectRefused(reader.completeJob({ jobId: job!.jobId, leaseToken: 1 }), Status.PERMISSION_DENIED, 'SCOPE_MISSING');
    await expectRefused(client.listJobs({ pageToken: 'garbage' }), Status.INVALID_ARGUMENT, 'PAGE_TOKEN_INVALID');
  });

  test('nothing was written by the refusals', async () => {
    const sql = new Client({ connectionString: kernel.databaseUrl });
    await sql.connect();
    try {
      const jobs = await sql.query(`SELECT type FROM scheduler_job WHERE tenant_id = $1`, [TENANT]);
      expect(jobs.rows.map((r) => r.type)).toEqual(['remote.only']);
      const schedules = await sql.query(`SELECT schedule_id FROM scheduler_schedule WHERE tenant_id = $1 ORDER BY schedule_id`, [TENANT]);
      expect(schedules.rows.map((r) => r.schedule_id)).toEqual(['fast', 'good']);
      const ticks = await sql.query(`SELECT count(*)::int AS n FROM scheduler_schedule_tick WHERE tenant_id = $1 AND kind <> 'CRON'`, [TENANT]);
      expect(ticks.rows[0].n).toBe(0);
    } finally {
      await sql.end();
    }
    // Still serving.
    expect((await client.listSchedules({})).schedules.length).toBe(2);
  });
});
