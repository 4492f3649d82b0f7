/**
 * Tenant isolation governance (docs/platform-contract.md#tenancy): every table that holds tenant rows must be protected by row
 * level security that also binds the table owner, and must be keyed tenant-first.
 *
 * A table is a tenant table when it has a `tenant_id` column. ENABLE alone is not enough: without
 * FORCE the owner — which is who runs migrations and the SECURITY DEFINER maintenance functions —
 * bypasses the policies, and an owner-side bug could then read or write across tenants. RLS with
 * no policy denies everything, which is safe but always a mistake, so it is reported too. A
 * leading `tenant_id` in the primary key keeps each tenant's rows together in the key index and
 * makes every key lookup tenant-scoped.
 */
import type { ClientBase } from 'pg';

/** What can be wrong with a tenant table. */
export type TenantRlsProblem = 'RLS_DISABLED' | 'RLS_NOT_FORCED' | 'NO_POLICY' | 'TENANT_ID_NOT_LEADING_KEY';

/** One problem of one table; a table can have several. */
export interface TenantRlsFinding {
  table: string;
  problem: TenantRlsProblem;
}

/** Options of {@link checkTenantRowLevelSecurity}. */
export interface TenantRlsOptions {
  /** The PostgreSQL schema to check. Default `public`. */
  schema?: string;
}

/**
 * Checks every table (partitioned tables and partitions included, since a partition can be
 * queried directly) in the schema that has a `tenant_id` column: RLS enabled (RLS_DISABLED),
 * forced (RLS_NOT_FORCED), at least one policy (NO_POLICY), and `tenant_id` as the first
 * primary-key column (TENANT_ID_NOT_LEADING_KEY, also when there is no primary key). Returns the
 * findings ordered by table, empty when all is well. Read-only.
 */
export async function checkTenantRowLevelSecurity(client: ClientBase, options: TenantRlsOptions = {}): Promise<TenantRlsFinding[]> {
  const { rows } = await client.query<{ table_name: string; rls_enabled: boolean; rls_forced: boolean; has_policy: boolean; leading_key: string | null }>(
    `SELECT c.relname::text AS table_name,
            c.relrowsecurity AS rls_enabled,
            c.relforcerowsecurity AS rls_forced,
            EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid) AS has_policy,
            (SELECT a.attname::text
               FROM pg_catalog.pg_constraint k
               JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.conkey[1]
              WHERE k.conrelid = c.oid AND k.contype = 'p') AS leading_key
       FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1
        AND c.relkind IN ('r', 'p')
        AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped)
      ORDER BY c.relname`,
    [options.schema ?? 'public'],
  );
  const findings: TenantRlsFinding[] = [];
  for (const row of rows) {
    const table = row.table_name;
    if (!row.rls_enabled) findings.push({ table, problem: 'RLS_DISABLED' });
    if (!row.rls_forced) findings.push({ table, problem: 'RLS_NOT_FORCED' });
    if (!row.has_policy) findings.push({ table, problem: 'NO_POLICY' });
    if (row.leading_key !== 'tenant_id') findings.push({ table, problem: 'TENANT_ID_NOT_LEADING_KEY' });
  }
  return findings;
}
