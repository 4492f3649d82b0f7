import { superuserQuery } from '../support/superuser-sql';
import { startTestKernel, type TestKernel } from '../support/test-kernel';
import { waitFor } from '../support/wait-for';

/**
 * The idempotency store's retention sweep: a system schedule of the scheduler, deleting expired
 * records in bounded batches by the expire_time index, leaving live ones alone.
 */
describe('idempotency retention sweep (system job kernel.platform.idempotency-sweep)', () => {
  let kernel: TestKernel;
  beforeAll(async () => {
    kernel = await startTestKernel();
  });
  afterAll(() => kernel?.stop());

  test('is installed as a system schedule every 30 s, and deletes only expired records, in batches, counted', async () => {
    await waitFor(async () => (await superuserQuery(kernel.databaseUrl, `SELECT 1 FROM scheduler_schedule WHERE schedule_id = 'kernel.platform.idempotency-sweep'`)).length === 1);
    const [schedule] = await superuserQuery(kernel.databaseUrl, `SELECT cron, job_type FROM scheduler_schedule WHERE schedule_id = 'kernel.platform.idempotency-sweep'`);
    expect(schedule).toEqual({ cron: '*/30 * * * * *', job_type: 'kernel.platform.idempotency-sweep' });

    // 12,000 expired records (three batches of at most 5000) and 10 live ones, two tenants.
    await superuserQuery(
      kernel.databaseUrl,
      `INSERT INTO kernel_idempotency_record (tenant_id, method, idempotency_key, request_hash, response, expire_time)
       SELECT CASE WHEN i % 2 = 0 THEN 'sweep-a' ELSE 'sweep-b' END, '/x.v1.S/M', 'k' || i, '\\x00', '\\x00',
              CASE WHEN i <= 12000 THEN now() - interval '1 hour' ELSE now() + interval '1 hour' END
         FROM generate_series(1, 12010) AS i`,
    );
    // The handler the schedule's runs execute, run once here rather than waiting for a tick.
    const handler = kernel.kernel.jobs.get('kernel.platform.idempotency-sweep');
    expect(handler).toBeDefined();
    await handler!({ db: kernel.kernel.db, log: kernel.kernel.log } as never);
    const [{ expired, live }] = await superuserQuery(
      kernel.databaseUrl,
      `SELECT count(*) FILTER (WHERE expire_time <= now())::int AS expired, count(*) FILTER (WHERE expire_time > now())::int AS live
         FROM kernel_idempotency_record WHERE tenant_id IN ('sweep-a', 'sweep-b')`,
    );
    expect({ expired, live }).toEqual({ expired: 0, live: 10 });
    expect(kernel.kernel.metrics.total('idempotency_records_swept_total')).toBeGreaterThanOrEqual(12_000);
  });
});
