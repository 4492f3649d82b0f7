import type { Database, Sql } from '../database/database';
import type { Logger } from '../observability/logger';

/** One audit entry as the platform writes it (law 3). Never carries secrets or PII. */
export interface AuditEntry {
  tenantId: string;
  principal: string;
  /** Full RPC name, e.g. `axis.kernel.sequences.v1.SequenceService/IssueNumber`. */
  action: string;
  /** Tenant-relative resource name, e.g. `series/inv/periods/2026/numbers/17`. */
  resource: string;
  outcome: 'OK' | 'DENIED';
  traceId: string;
  idempotencyKey?: string;
  /** Hex SHA-256 of the request bytes: proves what was asked without storing it. */
  requestDigest?: string;
  detail?: Record<string, unknown>;
}

/**
 * The per-tenant audit log. Entries are appended inside the business transaction (a rollback
 * leaves none); the sequencer then gives every committed entry its gap-free per-tenant number
 * (see kernel_audit_integrate in the migrations for why nothing committed is skipped).
 */
export class AuditLog {
  constructor(
    private readonly db: Database,
    private readonly log: Logger,
  ) {}

  /** Appends an entry in the caller's transaction. (Mutating RPCs get theirs from the MutationCommitter.) */
  async append(tx: Sql, entry: AuditEntry): Promise<void> {
    await tx.query(
      `INSERT INTO kernel_audit_event (tenant_id, principal, action, resource, outcome, trace_id, idempotency_key, request_digest, detail)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        entry.tenantId,
        entry.principal,
        entry.action,
        entry.resource,
        entry.outcome,
        entry.traceId,
        entry.idempotencyKey ?? null,
        entry.requestDigest ?? null,
        JSON.stringify(entry.detail ?? {}),
      ],
    );
  }

  /** Records a refused security-relevant attempt in its own transaction (it must survive the refusal). */
  async recordDenial(denial: { tenantId: string; principal: string; action: string; reason: string; traceId: string }): Promise<void> {
    try {
      await this.db.inTenantTransaction(denial.tenantId, (tx) =>
        this.append(tx, {
          tenantId: denial.tenantId,
          principal: denial.principal,
          action: denial.action,
          resource: '',
          outcome: 'DENIED',
          traceId: denial.traceId,
          detail: { reason: denial.reason },
        }),
      );
    } catch (error) {
      // The refusal itself still goes to the caller; a lost denial record is surfaced loudly (law 10).
      this.log.error({ err: error, trace_id: denial.traceId, tenant: denial.tenantId }, 'could not record denied attempt in the audit log');
    }
  }

  /** Sequences committed entries until none are left; returns how many were sequenced. */
  async integrate(batchSize = 5000): Promise<number> {
    let total = 0;
    for (;;) {
      const [row] = await this.db.asSystem((sql) => sql.query<{ n: number }>('SELECT kernel_audit_integrate($1) AS n', [batchSize]));
      total += row.n;
      if (row.n < batchSize) return total;
    }
  }
}
