import { Status } from 'nice-grpc-common';
import { closeKernelClient, createSchedulerClient, createSecretClient, createSequenceClient } from '../../clients/src';
import { OverlapPolicy } from '../../gen/proto/axis/kernel/scheduler/v1/job';
import { SecretKind } from '../../gen/proto/axis/kernel/secrets/v1/secret';
import { ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { createPrismaClient, inTenantPrismaTransaction, PrismaTenantReads } from '../../services/platform/database/prisma-tenant-client';
import { KernelError } from '../../services/platform/kernel-error';
import { listSchedules, listSchedulesWithPrisma } from '../../services/scheduler/schedules';
import { listSecrets, listSecretsWithPrisma } from '../../services/secrets/secret-store';
import { listSeriesWithPrisma, SeriesStore } from '../../services/sequences/series-store';
import { startTestKernel, TEST_BACKEND, type TestKernel } from '../support/test-kernel';

/** The generated Prisma Client agrees with the migrated database and respects tenant RLS. */
describe('Prisma Client on the kernel database', () => {
  let kernel: TestKernel;
  let prisma: ReturnType<typeof createPrismaClient>;
  let reads: PrismaTenantReads;

  beforeAll(async () => {
    kernel = await startTestKernel();
    prisma = createPrismaClient(kernel.databaseUrl);
    reads = new PrismaTenantReads(kernel.databaseUrl, { poolSize: 2, connectionsPerTenant: 2, statementTimeoutMs: 5000, lockTimeoutMs: 1000, acquireTimeoutMs: 2000 });
    const client = createSequenceClient({ address: kernel.address, tenantId: 'typed', token: await kernel.token({ tenants: ['typed'] }) });
    await client.createSeries({ series: { seriesId: 'inv', pattern: 'I{SEQ:3}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
    await client.issueNumber({ seriesId: 'inv', subjectRef: 'doc-1' });
    closeKernelClient(client);
  });
  afterAll(async () => {
    await reads?.close();
    await prisma?.$disconnect();
    await kernel?.stop();
  });

  test('every model reads through Prisma from the migrated schema', async () => {
    await inTenantPrismaTransaction(prisma, 'typed', async (tx) => {
      await expect(tx.idempotencyRecord.findMany({ where: { method: { contains: 'SequenceService' } } })).resolves.toHaveLength(2);
      await expect(tx.auditEvent.findMany({ where: { action: { startsWith: 'axis.kernel.sequences.' } } })).resolves.toHaveLength(2);
      await expect(tx.auditSequence.findMany()).resolves.toBeDefined();
      await expect(tx.auditNode.findMany()).resolves.toBeDefined();
      await expect(tx.auditCheckpoint.findMany()).resolves.toBeDefined();
      await expect(tx.auditPolicy.findMany()).resolves.toEqual([]);
      await expect(tx.sequenceCounter.findMany()).resolves.toEqual([expect.objectContaining({ seriesId: 'inv', period: '', nextValue: 2n })]);
      const numbers = await tx.sequenceNumber.findMany({ include: { series: true } });
      expect(numbers).toEqual([expect.objectContaining({ value: 1n, status: 'ISSUED', subjectRef: 'doc-1', series: expect.objectContaining({ pattern: 'I{SEQ:3}' }) })]);
    });
  });

  test('a Prisma tenant transaction sees only its tenant (RLS), and cannot write another tenant', async () => {
    await inTenantPrismaTransaction(prisma, 'someone-else', async (tx) => {
      await expect(tx.sequenceSeries.findMany()).resolves.toEqual([]);
      await expect(tx.auditEvent.count()).resolves.toBe(0);
    });
    await expect(
      inTenantPrismaTransaction(prisma, 'someone-else', (tx) =>
        tx.sequenceSeries.create({
          data: { tenantId: 'typed', seriesId: 'planted', displayName: '', pattern: '{SEQ}', resetPolicy: 'NEVER', startValue: 1n, timeZone: 'UTC', defaultReservationTtlSeconds: 60 },
        }),
      ),
    ).rejects.toThrow();
    await inTenantPrismaTransaction(prisma, 'typed', async (tx) => {
      await expect(tx.sequenceSeries.findMany({ select: { seriesId: true } })).resolves.toEqual([{ seriesId: 'inv' }]);
    });
  });

  describe('the cold read paths (PrismaTenantReads)', () => {
    const tenant = 'cold';
    const otherTenant = 'cold-other';

    beforeAll(async () => {
      const options = { address: kernel.address, tenantId: tenant, token: await kernel.token({ tenants: [tenant] }) };
      const sequences = createSequenceClient(options);
      const secrets = createSecretClient(options);
      const scheduler = createSchedulerClient(options);
      try {
        for (const id of ['b-series', 'a-series', 'c-series']) {
          await sequences.createSeries({ series: { seriesId: id, displayName: `Series ${id}`, pattern: '{YYYY}-{SEQ:4}', resetPolicy: ResetPolicy.RESET_POLICY_YEARLY, startValue: 7, timeZone: 'Europe/Prague', defaultReservationTtl: { seconds: 120, nanos: 0 } } });
        }
        await secrets.createSecret({ secret: { secretId: 'plain', kind: SecretKind.SECRET_KIND_OPAQUE } });
        await secrets.createSecret({ secret: { secretId: 'rotated', kind: SecretKind.SECRET_KIND_OPAQUE, description: 'rotates', rotationPeriod: { seconds: 86_400, nanos: 0 } } });
        await secrets.addSecretVersion({ secretId: 'rotated', value: Buffer.from('v1') });
        await scheduler.createSchedule({ schedule: { scheduleId: 'nightly', cron: '0 2 * * *', timeZone: 'UTC', jobType: 'kernel.noop', payload: { n: 1, nested: { list: [1, 'two', null] } }, overlapPolicy: OverlapPolicy.OVERLAP_POLICY_SKIP } });
        await scheduler.createSchedule({ schedule: { scheduleId: 'hourly', cron: '0 * * * *', timeZone: 'America/New_York', jobType: 'kernel.noop', overlapPolicy: OverlapPolicy.OVERLAP_POLICY_ALLOW_ALL } });
        await scheduler.pauseSchedule({ scheduleId: 'hourly', paused: true });
      } finally {
        closeKernelClient(sequences);
        closeKernelClient(secrets);
        closeKernelClient(scheduler);
      }
    });

    /** The same read through the kernel's pg transaction and through Prisma: identical records. */
    async function both<T>(pg: Parameters<typeof kernel.kernel.db.inTenantTransaction<T>>[1], viaPrisma: Parameters<PrismaTenantReads['read']>[2]) {
      const fromPg = await kernel.kernel.db.inTenantTransaction(tenant, pg, { readOnly: true });
      const fromPrisma = await reads.read(tenant, 'SELECT', viaPrisma as never);
      return { fromPg, fromPrisma };
    }

    test.each([
      ['ListSeries', (tx: never, after: string, limit: number) => new SeriesStore().list(tx, after, limit), listSeriesWithPrisma, 3],
      ['ListSecrets', listSecrets, listSecretsWithPrisma, 2],
      ['ListSchedules', listSchedules, listSchedulesWithPrisma, 2],
    ] as const)('%s: Prisma returns exactly what pg returns, page by page', async (_name, viaPg, viaPrisma, total) => {
      const all = await both((tx) => (viaPg as (tx: never, a: string, l: number) => Promise<unknown[]>)(tx as never, '', 100), (tx) => (viaPrisma as (tx: never, a: string, l: number) => Promise<unknown[]>)(tx as never, '', 100));
      expect(all.fromPg).toHaveLength(total);
      expect(all.fromPrisma).toEqual(all.fromPg);
      // A page after a position, with a limit: the same slice.
      const page = await both((tx) => (viaPg as (tx: never, a: string, l: number) => Promise<unknown[]>)(tx as never, 'a', 1), (tx) => (viaPrisma as (tx: never, a: string, l: number) => Promise<unknown[]>)(tx as never, 'a', 1));
      expect(page.fromPg).toHaveLength(1);
      expect(page.fromPrisma).toEqual(page.fromPg);
    });

    test('a read opens like every kernel transaction: application role, the tenant, read-only, transaction-local', async () => {
      const settings = await reads.read(tenant, 'SELECT', (tx) =>
        tx.db.$queryRawUnsafe<Array<{ role: string; tenant: string; read_only: string; timeout: string }>>(
          "SELECT current_user AS role, current_setting('axis.tenant_id') AS tenant, current_setting('transaction_read_only') AS read_only, current_setting('statement_timeout') AS timeout",
        ),
      );
      expect(settings).toEqual([{ role: 'axis_kernel_app', tenant, read_only: 'on', timeout: '5s' }]);
      await expect(reads.read(tenant, 'INSERT', (tx) => tx.db.$executeRawUnsafe("INSERT INTO sequence_counter (tenant_id, series_id, period, next_value) VALUES ('cold', 'a-series', '1999', 1)"))).rejects.toThrow(
        /read-only transaction/,
      );
      // Row-level security: another tenant's read sees none of these rows.
      await expect(reads.read(otherTenant, 'SELECT', (tx) => listSeriesWithPrisma(tx, '', 100))).resolves.toEqual([]);
      await expect(reads.read(otherTenant, 'SELECT', (tx) => listSecretsWithPrisma(tx, '', 100))).resolves.toEqual([]);
    });

    // PGlite does not enforce statement_timeout (the pg path's timeout tests skip it too, liveness.spec.ts).
    (TEST_BACKEND === 'embedded' ? test.skip : test)('database failures are answered as on the pg path (statement timeout: DEADLINE_EXCEEDED)', async () => {
      const quick = new PrismaTenantReads(kernel.databaseUrl, { poolSize: 1, connectionsPerTenant: 1, statementTimeoutMs: 100, lockTimeoutMs: 100, acquireTimeoutMs: 2000 });
      try {
        const failure = await quick.read(tenant, 'SELECT', (tx) => tx.db.$queryRawUnsafe('SELECT pg_sleep(2)::text')).catch((error: unknown) => error);
        expect(failure).toBeInstanceOf(KernelError);
        expect(failure).toMatchObject({ code: Status.DEADLINE_EXCEEDED, reason: 'STATEMENT_TIMEOUT' });
      } finally {
        await quick.close();
      }
    });

    test('the RPCs that read through Prisma answer as before (ListSeries pages)', async () => {
      const client = createSequenceClient({ address: kernel.address, tenantId: tenant, token: await kernel.token({ tenants: [tenant] }) });
      try {
        const first = await client.listSeries({ pageSize: 2, pageToken: '' });
        expect(first.series.map((s) => s.seriesId)).toEqual(['a-series', 'b-series']);
        expect(first.series[0]).toMatchObject({ displayName: 'Series a-series', startValue: 7, timeZone: 'Europe/Prague', defaultReservationTtl: { seconds: 120, nanos: 0 } });
        const second = await client.listSeries({ pageSize: 2, pageToken: first.nextPageToken });
        expect(second).toEqual({ series: [expect.objectContaining({ seriesId: 'c-series' })], nextPageToken: '' });
      } finally {
        closeKernelClient(client);
      }
    });
  });
});
