import { cancelSignalOf } from './cancel-signal';
import type { KernelCallContext } from './call-context';
import type { TenantTransaction } from './database/database';
import type { PrismaTenantReads, PrismaTenantTransaction } from './database/prisma-tenant-client';

/**
 * One read of a cold path (a registry listing; docs/prisma.md lists them): through Prisma Client
 * in a read-only transaction of the call's tenant when the kernel gave the capability
 * `prismaReads`, otherwise through the call's pg unit of work. Both open with the same statement
 * (application role and tenant, transaction-local), so row-level security scopes both alike;
 * both functions must read the same rows and map them with the same function.
 */
export function coldRead<T>(
  ctx: KernelCallContext,
  prismaReads: PrismaTenantReads | undefined,
  read: { operation: string; prisma: (tx: PrismaTenantTransaction) => Promise<T>; pg: (tx: TenantTransaction) => Promise<T> },
): Promise<T> {
  if (!prismaReads) return ctx.unitOfWork.run(read.pg);
  return prismaReads.read(ctx.tenantId, read.operation, read.prisma, { signal: cancelSignalOf(ctx), trace: ctx.otel });
}
