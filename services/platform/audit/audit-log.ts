import type { Database, DeferredWrite, StatementBatcher, TenantTransaction } from '../database/database';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';

/** The principal of entries the kernel writes for its own work (expiry, purges, the audit key's creation). */
export const SYSTEM_PRINCIPAL = 'system:kernel';

/** One audit entry as the platform writes it (docs/laws.md#law-3). Never carries secrets or PII. */
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
  /** Drawn ahead (EVENT_IDS) when the call answers with it; otherwise drawn by the insert. */
  eventId?: string;
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
 * The one door to the audit log: every entry — of a mutating call, a denied attempt, a purge,
 * the kernel's own work — is written by this deferred write, with COMMIT (one statement per
 * transaction, in the same round trip). A rollback therefore leaves no entry, and the insert's
 * trigger (kernel_audit_assign_positions) gives the entries their gap-free per-tenant seqs under
 * the tenant's audit head row, which it locks until COMMIT — the last lock the transaction takes,
 * so positions follow commit order and no other lock can be waited for while holding it.
 * Entries may carry event ids drawn ahead (EVENT_IDS); the others draw theirs here.
 */
export const AUDIT_ENTRIES: DeferredWrite<AuditEntry> = {
  name: 'audit entries',
  order: 100,
  statement: (_tenantId, entries) => ({
    text: `INSERT INTO kernel_audit_event (event_id, tenant_id, principal, action, resource, outcome, trace_id, idempotency_key, request_digest, detail)
           SELECT coalesce(u.event_id, nextval(pg_get_serial_sequence('kernel_audit_event', 'event_id'))),
                  u.tenant_id, u.principal, u.action, u.resource, u.outcome, u.trace_id, u.idempotency_key, u.request_digest, u.detail::jsonb
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
                  WITH ORDINALITY AS u(event_id, tenant_id, principal, action, resource, outcome, trace_id, idempotency_key, request_digest, detail, ord)
            ORDER BY u.ord`,
    params: [
      entries.map((e) => e.eventId ?? null),
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
  }),
};

/**
 * Draws event ids ahead, for a call that must answer with them (AppendEvents): one statement for
 * every such call of a commit group. Ask: how many ids; answer: that many ids, in order. Drawing
 * from the sequence is never undone, which is fine: event ids are unique, not gap-free (the seq is).
 */
export const EVENT_IDS: StatementBatcher<number, string[]> = {
  name: 'audit event ids',
  key: () => '',
  changesNothing: true,
  async run(tx, counts) {
    const total = counts.reduce((a, b) => a + b, 0);
    const rows = await tx.query<{ id: string }>(
      `SELECT nextval(pg_get_serial_sequence('kernel_audit_event', 'event_id'))::text AS id FROM generate_series(1, $1::integer)`,
      [total],
    );
    let at = 0;
    return counts.map((n) => rows.slice(at, (at += n)).map((r) => r.id));
  },
};

/**
 * The audit log's platform side: writes entries in the caller's transaction (AUDIT_ENTRIES) and
 * records refused security-relevant attempts in their own. The audit integrator (services/audit)
 * later gives every committed entry its leaf and chain hash and signs checkpoints.
 */
export class AuditLog {
  private readonly buckets = new Map<string, { tokens: number; at: number; suppressed: number }>();

  constructor(
    private readonly db: Database,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
  ) {}

  /** Appends entries in the caller's transaction, in order, written with its COMMIT. (Mutating RPCs get theirs from the MutationCommitter.) */
  append(tx: TenantTransaction, ...entries: AuditEntry[]): void {
    for (const entry of entries) tx.defer(AUDIT_ENTRIES, entry);
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
      await this.db.inTenantTransaction(denial.tenantId, async (tx) =>
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
      // The refusal itself still goes to the caller; a lost denial record is surfaced loudly (docs/laws.md#law-10).
      this.metrics?.increment('audit_denials_lost_total');
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
