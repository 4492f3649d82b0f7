import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient, type Prisma } from '../../../gen/prisma/client';
import { transactionSettings } from './database';

export type { Prisma };

/**
 * Prisma Client (driver adapter @prisma/adapter-pg) on the kernel's database, for typed access
 * off the hot paths: operator tooling and domain teams' reads of kernel tables. The kernel's
 * own request path uses the pg-based transaction helper (Database), which measured about three
 * times the throughput of Prisma interactive transactions on this machine.
 */
export function createPrismaClient(connectionString: string): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString }) });
}

/**
 * Runs `fn` in a Prisma interactive transaction scoped to one tenant, as the application role,
 * with the same transaction-local settings as every kernel transaction — so RLS applies.
 */
export function inTenantPrismaTransaction<T>(
  prisma: PrismaClient,
  tenantId: string,
  fn: (tx: Prisma.TransactionClient) => Promise<T>,
  timeouts: { statementTimeoutMs: number; lockTimeoutMs: number } = { statementTimeoutMs: 5000, lockTimeoutMs: 1000 },
): Promise<T> {
  return prisma.$transaction(async (tx) => {
    // The kernel's one opening statement (role, tenant, timeouts); the tenant id is escaped there.
    await tx.$queryRawUnsafe(transactionSettings(tenantId, timeouts));
    return fn(tx);
  });
}
