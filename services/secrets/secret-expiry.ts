import type { TenantTransaction } from '../platform/database/database';
import type { SecretKindName } from './secret-value';

export type ExpiryReasonName = 'CERTIFICATE_NOT_AFTER' | 'ROTATION_DUE';

export interface ExpiringRecord {
  secretId: string;
  kind: SecretKindName;
  reason: ExpiryReasonName;
  version: number;
  dueTime: Date;
  overdue: boolean;
}

/** Keyset position: due time in epoch microseconds (the column precision), then secret id and reason. */
export interface ExpiryCursor {
  dueMicros: string;
  secretId: string;
  reason: ExpiryReasonName;
}

interface ExpiringRow {
  secret_id: string;
  kind: SecretKindName;
  reason: ExpiryReasonName;
  version: number;
  due_time: Date;
  due_micros: string;
  overdue: boolean;
}

/**
 * What needs attention before now + `withinSeconds`: CURRENT certificates by X.509 notAfter and
 * secrets whose rotation period ends (counted from when CURRENT last moved, or from creation),
 * past ones included, ordered by due time.
 */
export async function listExpiring(
  tx: TenantTransaction,
  withinSeconds: number,
  after: ExpiryCursor | undefined,
  limit: number,
): Promise<Array<ExpiringRecord & { cursor: ExpiryCursor }>> {
  const rows = await tx.query<ExpiringRow>(
    `WITH horizon AS (SELECT now() + make_interval(secs => $2::double precision) AS until),
     due AS (
       SELECT s.secret_id, s.kind, 'CERTIFICATE_NOT_AFTER' AS reason, v.version, v.cert_not_after AS due_time
         FROM secret s
         JOIN secret_version v ON v.tenant_id = s.tenant_id AND v.secret_id = s.secret_id AND v.version = s.current_version
        WHERE s.tenant_id = $1 AND v.cert_not_after IS NOT NULL AND v.cert_not_after <= (SELECT until FROM horizon)
       UNION ALL
       SELECT s.secret_id, s.kind, 'ROTATION_DUE', s.current_version,
              coalesce(s.current_since_time, s.create_time) + make_interval(secs => s.rotation_period_seconds::double precision)
         FROM secret s
        WHERE s.tenant_id = $1 AND s.rotation_period_seconds IS NOT NULL
          AND coalesce(s.current_since_time, s.create_time) + make_interval(secs => s.rotation_period_seconds::double precision) <= (SELECT until FROM horizon)
     ), keyed AS (
       SELECT due.*, (extract(epoch FROM due_time) * 1000000)::bigint AS due_micros, due_time <= now() AS overdue FROM due
     )
     SELECT * FROM keyed
      WHERE $3::bigint IS NULL OR (due_micros, secret_id, reason) > ($3::bigint, $4::text, $5::text)
      ORDER BY due_micros, secret_id, reason
      LIMIT $6`,
    [tx.tenantId, withinSeconds, after?.dueMicros ?? null, after?.secretId ?? '', after?.reason ?? '', limit],
  );
  return rows.map((row) => ({
    secretId: row.secret_id,
    kind: row.kind,
    reason: row.reason,
    version: row.version,
    dueTime: row.due_time,
    overdue: row.overdue,
    cursor: { dueMicros: String(row.due_micros), secretId: row.secret_id, reason: row.reason },
  }));
}
