import type { Database, Sql, TenantTransaction } from '../database/database';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';

/** The principal of entries the kernel writes for its own work (expiry, purges, the audit key's creation). */
export const SYSTEM_PRINCIPAL = 'system:kernel';

/** One audit entry as the platform writes it (law 3). Never carries secrets or PII. */
export interface AuditEntry {
  tenantId: string;
  principal: string;
  /** Full RPC name, e.g. `axis.kernel.sequences.v1.SequenceService/IssueNumber`, or a domain action (AppendEvents). */
  action: string;
  /** Tenant-relative resource name, e.g. `series/inv/periods/2026/numbers/17`. */
  resource: string;
  outcome: 'OK' | 'DENIED' | 'FAILED';
  traceId: string;
  idempotencyKey?: string;
  /** Hex HMAC-SHA-256 (kernel key) of the request bytes: proves what was asked without storing it. */
  requestDigest?: string;
  detail?: Record<string, unknown>;
}

/** A refused security-relevant attempt. */
export interface Denial {
  tenantId: string;
  principal: string;
  action: string;
  reason: string;
  traceId: string;
}

/**
 * Anonymous denials (authentication failures) may be recorded this often per tenant and node:
 * whoever can reach the port could otherwise fill a tenant's log. Beyond it they are counted,
 * and the count rides on the next recorded one (`suppressed_before`).
 */
const ANONYMOUS_DENIALS_PER_SECOND = 20;
const ANONYMOUS_DENIAL_BURST = 100;

/**
 * The write side of the per-tenant audit log (K-W1). Entries are appended inside the business
 * transaction (a rollback leaves none); the audit integrator (services/audit) later gives every
 * committed entry its gap-free seq, leaf and chain hash and signs checkpoints.
 */
export class AuditLog {
  private readonly buckets = new Map<string, { tokens: number; at: number; suppressed: number }>();

  constructor(
    private readonly db: Database,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
  ) {}

  /** Appends an entry in the caller's transaction. (Mutating RPCs get theirs from the MutationCommitter.) */
  async append(tx: Sql, entry: AuditEntry): Promise<void> {
    await this.appendMany(tx, [entry]);
  }

  /** Appends entries in the caller's transaction, in order; returns their event ids. */
  async appendMany(tx: Sql, entries: readonly AuditEntry[]): Promise<string[]> {
    if (entries.length === 0) return [];
    // nextval in a materialized CTE numbers the rows in input order, so the ids come back in it.
    const rows = await tx.query<{ id: string }>(
      `WITH input AS MATERIALIZED (
         SELECT nextval(pg_get_serial_sequence('kernel_audit_event', 'event_id')) AS id, u.*
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
                WITH ORDINALITY AS u(tenant_id, principal, action, resource, outcome, trace_id, idempotency_key, request_digest, detail, ord)
       ), inserted AS (
         INSERT INTO kernel_audit_event (event_id, tenant_id, principal, action, resource, outcome, trace_id, idempotency_key, request_digest, detail)
         SELECT id, tenant_id, principal, action, resource, outcome, trace_id, idempotency_key, request_digest, detail::jsonb FROM input
       )
       SELECT id::text FROM input ORDER BY ord`,
      [
        entries.map((e) => e.tenantId),
        entries.map((e) => e.principal),
        entries.map((e) => e.action),
        entries.map((e) => e.resource),
        entries.map((e) => e.outcome),
        entries.map((e) => e.traceId),
        entries.map((e) => e.idempotencyKey ?? null),
        entries.map((e) => e.requestDigest ?? null),
        entries.map((e) => JSON.stringify(e.detail ?? {})),
      ],
    );
    return rows.map((r) => r.id);
  }

  /**
   * Appends in the transaction shared by a commit group: the entries of every call that asks
   * within one event-loop turn go in one statement (see MutationCommitter).
   */
  appendBatched(tx: TenantTransaction, entries: readonly AuditEntry[]): Promise<string[]> {
    return tx.scoped(AuditEntryBatcher, () => new AuditEntryBatcher(this, tx)).append(entries);
  }

  /** Records a refused security-relevant attempt in its own transaction (it must survive the refusal). */
  async recordDenial(denial: Denial, options: { anonymous?: boolean } = {}): Promise<void> {
    const detail: Record<string, unknown> = { reason: denial.reason };
    if (options.anonymous) {
      const allowed = this.takeToken(denial.tenantId);
      if (allowed === false) {
        this.metrics?.increment('audit_denials_suppressed_total');
        return;
      }
      if (allowed > 0) detail.suppressed_before = allowed;
    }
    try {
      await this.db.inTenantTransaction(denial.tenantId, (tx) =>
        this.append(tx, {
          tenantId: denial.tenantId,
          principal: denial.principal,
          action: denial.action,
          resource: '',
          outcome: 'DENIED',
          traceId: denial.traceId,
          detail,
        }),
      );
    } catch (error) {
      // The refusal itself still goes to the caller; a lost denial record is surfaced loudly (law 10).
      this.log.error({ err: error, trace_id: denial.traceId, tenant: denial.tenantId }, 'could not record denied attempt in the audit log');
    }
  }

  /** Token bucket per tenant: false when over the rate, else how many were suppressed since the last record. */
  private takeToken(tenantId: string): number | false {
    const now = Date.now();
    const bucket = this.buckets.get(tenantId) ?? { tokens: ANONYMOUS_DENIAL_BURST, at: now, suppressed: 0 };
    bucket.tokens = Math.min(ANONYMOUS_DENIAL_BURST, bucket.tokens + ((now - bucket.at) / 1000) * ANONYMOUS_DENIALS_PER_SECOND);
    bucket.at = now;
    this.buckets.set(tenantId, bucket);
    if (this.buckets.size > 10_000) this.buckets.delete(this.buckets.keys().next().value!);
    if (bucket.tokens < 1) {
      if (bucket.suppressed === 0) this.log.warn({ tenant: tenantId }, 'authentication failures for this tenant exceed the audit rate; further ones are counted, not recorded one by one');
      bucket.suppressed++;
      return false;
    }
    bucket.tokens -= 1;
    const suppressed = bucket.suppressed;
    bucket.suppressed = 0;
    return suppressed;
  }
}

/** Gathers the audit appends of a commit group's concurrent calls into one statement per turn. */
class AuditEntryBatcher {
  private pending: Array<{ entries: readonly AuditEntry[]; resolve(ids: string[]): void; reject(error: unknown): void }> = [];
  private scheduled = false;

  constructor(
    private readonly audit: AuditLog,
    private readonly tx: TenantTransaction,
  ) {}

  append(entries: readonly AuditEntry[]): Promise<string[]> {
    return new Promise((resolve, reject) => {
      this.pending.push({ entries, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const asks = this.pending;
    this.pending = [];
    this.audit.appendMany(this.tx, asks.flatMap((a) => a.entries)).then(
      (ids) => {
        let at = 0;
        for (const ask of asks) {
          ask.resolve(ids.slice(at, at + ask.entries.length));
          at += ask.entries.length;
        }
      },
      (error) => asks.forEach((ask) => ask.reject(error)),
    );
  }
}
