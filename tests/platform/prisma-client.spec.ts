import { closeKernelClient, createSequenceClient } from '../../clients/src';
import { ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { createPrismaClient, inTenantPrismaTransaction } from '../../services/platform/database/prisma-tenant-client';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

/** The generated Prisma Client agrees with the migrated database and respects tenant RLS. */
describe('Prisma Client on the kernel database', () => {
  let kernel: TestKernel;
  let prisma: ReturnType<typeof createPrismaClient>;

  beforeAll(async () => {
    kernel = await startTestKernel();
    prisma = createPrismaClient(kernel.databaseUrl);
    const client = createSequenceClient({ address: kernel.address, tenantId: 'typed', token: await kernel.token({ tenants: ['typed'] }) });
    await client.createSeries({ series: { seriesId: 'inv', pattern: 'I{SEQ:3}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
    await client.issueNumber({ seriesId: 'inv', subjectRef: 'doc-1' });
    closeKernelClient(client);
  });
  afterAll(async () => {
    await prisma?.$disconnect();
    await kernel?.stop();
  });

  test('every model reads through Prisma from the migrated schema', async () => {
    await inTenantPrismaTransaction(prisma, 'typed', async (tx) => {
      await expect(tx.idempotencyRecord.findMany()).resolves.toHaveLength(2);
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
});
