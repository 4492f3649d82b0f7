import { AuditServiceDefinition } from '../../gen/proto/axis/kernel/audit/v1/audit_service';
import { SYSTEM_PRINCIPAL, type AuditLog } from '../platform/audit/audit-log';
import type { Database } from '../platform/database/database';
import type { Logger } from '../platform/observability/logger';
import type { CapabilityModule, KernelDependencies } from '../platform/capability-module';
import { KernelKeys } from '../keymaster';
import { AuditSigner } from './audit-key';
import { auditService, purge } from './audit-service';
import { PURGE_ACTION } from './audit-store';
import { AuditIntegrator } from './integrator';

/**
 * The audit log (docs/capabilities/audit.md) as the kernel serves it: the AuditService, the integrator that every node runs on a
 * short period (nodes share the tenants, one integrates each at a time), and the retention
 * sweep as a system job.
 */
export function auditModule(deps: KernelDependencies): CapabilityModule {
  const signer = new AuditSigner(new KernelKeys(deps.envelope, deps.log, deps.metrics), deps.audit);
  const integrator = new AuditIntegrator(deps.db, signer, deps.log, deps.metrics, deps.config.KERNEL_AUDIT_BATCH_SIZE);
  return {
    definition: AuditServiceDefinition,
    implementation: auditService({ minRetentionSeconds: deps.config.KERNEL_AUDIT_MIN_RETENTION_SECONDS, signer }),
    scopes: { SetRetentionPolicy: 'audit:admin', SetLegalHold: 'audit:admin', PurgeExpired: 'audit:admin' },
    // VerifyLog reads the whole log; ExportLog streams (exempt from the default budget anyway).
    budgetsMs: { VerifyLog: 120_000 },
    periodicTasks: [{ name: 'audit integrator', everyMs: deps.config.KERNEL_AUDIT_SEQUENCER_MS, run: () => integrator.integrate() }],
    systemJobs: [
      {
        name: 'kernel.audit.purge-expired',
        everySeconds: deps.config.KERNEL_AUDIT_PURGE_SWEEP_MS / 1000,
        run: async (job) => void (await purgeExpiredEverywhere(job.db, deps.audit, job.log, job.trace.traceId)),
      },
    ],
  };
}

/** Applies every tenant's retention policy; each purge is recorded in that tenant's log. Returns entries purged. */
export async function purgeExpiredEverywhere(db: Database, audit: AuditLog, log: Logger, traceId: string): Promise<number> {
  const tenants = await db.asSystem((sql) => sql.query<{ t: string }>('SELECT t FROM kernel_audit_retention_tenants() AS t'));
  let total = 0;
  for (const { t } of tenants) {
    const purged = await db.inTenantTransaction(t, async (tx) => {
      const result = await purge(tx, 10_000);
      if (result.purged > 0) {
        audit.append(tx, { tenantId: t, principal: SYSTEM_PRINCIPAL, action: PURGE_ACTION, resource: 'log', outcome: 'OK', traceId, detail: { purged: result.purged, through_seq: result.throughSeq } });
      }
      return result.purged;
    });
    if (purged > 0) log.info({ tenant: t, purged }, 'audit entries purged under the retention policy');
    total += purged;
  }
  return total;
}
