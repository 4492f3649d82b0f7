import type { Sql } from '../database/database';
import type { CallLog } from '../observability/logger';
import type { Envelope } from './envelope';
import { ENVELOPE_TABLES, type EnvelopeTable } from './envelope-tables';

export interface RewrapBatch {
  /** Data keys re-wrapped in this batch, per tenant. */
  readonly byTenant: Map<string, number>;
  readonly rewrapped: number;
}

const quote = (identifier: string) => `"${identifier.replace(/"/g, '""')}"`;

/**
 * Re-wraps up to `limit` data keys of one table that are wrapped by an older master key, in the
 * caller's transaction. Values are never decrypted: each data key is unwrapped with its own
 * KEK version and wrapped again with the active one. Rows are locked (SKIP LOCKED, so nodes and
 * a concurrent destruction do not wait on each other) and each batch commits on its own, so an
 * interrupted rotation resumes where it stopped: the rows done already name the new version.
 * Under a tenant transaction, RLS limits it to that tenant's rows.
 */
export async function rewrapTableBatch(sql: Sql, table: EnvelopeTable, envelope: Envelope, log: CallLog, limit: number): Promise<RewrapBatch> {
  const columns = Object.keys(table.keyColumns);
  const keys = columns.map(quote).join(', ');
  const rows = await sql.query<Record<string, unknown> & { wrapped_key: Buffer; kek_version: number }>(
    `SELECT ${keys}, wrapped_key, kek_version FROM ${quote(table.table)}
      WHERE kek_version IS NOT NULL AND kek_version <> $1
      ORDER BY ${keys} LIMIT $2 FOR UPDATE SKIP LOCKED`,
    [envelope.activeKekVersion, limit],
  );
  if (rows.length === 0) return { byTenant: new Map(), rewrapped: 0 };

  const byTenant = new Map<string, number>();
  const rewrapped = rows.map((row) => {
    const binding = table.binding(row);
    const next = envelope.rewrap({ wrappedKey: row.wrapped_key, kekVersion: row.kek_version }, binding, { traceId: 'master-key-rotation', log });
    byTenant.set(binding.tenantId, (byTenant.get(binding.tenantId) ?? 0) + 1);
    return { row, next: next! };
  });
  const unnestColumns = columns.map((column, i) => `$${i + 3}::${table.keyColumns[column]}[]`).join(', ');
  const aliases = columns.map((_, i) => `k${i}`).join(', ');
  const matches = columns.map((column, i) => `t.${quote(column)} = u.k${i}`).join(' AND ');
  await sql.query(
    `UPDATE ${quote(table.table)} t SET wrapped_key = u.wrapped_key, kek_version = $1
       FROM unnest($2::bytea[], ${unnestColumns}) AS u(wrapped_key, ${aliases})
      WHERE ${matches}`,
    [envelope.activeKekVersion, rewrapped.map((r) => r.next.wrappedKey), ...columns.map((column) => rewrapped.map((r) => r.row[column]))],
  );
  return { byTenant, rewrapped: rewrapped.length };
}

/**
 * How many data keys `table` holds per master-key version, over every tenant. A kernel-wide table
 * is read directly (its owner reads it); a tenant table through the system function
 * kernel_data_key_inventory (row-level security hides other tenants' rows from everyone else; the
 * function reveals counts only).
 */
export async function dataKeyInventory(sql: Sql, table: EnvelopeTable): Promise<Array<{ kekVersion: number; count: number }>> {
  const rows = table.system
    ? await sql.query<{ kek_version: number; n: string }>(
        `SELECT kek_version, count(*) AS n FROM ${quote(table.table)} WHERE kek_version IS NOT NULL GROUP BY kek_version ORDER BY kek_version`,
      )
    : await sql.query<{ kek_version: number; n: string }>('SELECT kek_version, data_keys AS n FROM kernel_data_key_inventory($1)', [table.table]);
  return rows.map((row) => ({ kekVersion: row.kek_version, count: Number(row.n) }));
}

/** The tenants whose data keys in `table` are not all wrapped by master key version `active` (a system function). */
export async function tenantsWithStaleDataKeys(sql: Sql, table: EnvelopeTable, active: number): Promise<string[]> {
  const rows = await sql.query<{ tenant_id: string }>('SELECT t AS tenant_id FROM kernel_data_key_tenants($1, $2) AS t', [table.table, active]);
  return rows.map((r) => r.tenant_id);
}

/**
 * Data keys not yet wrapped by the active master key, over every envelope table (`tenantTables`:
 * only the tenant tables, as a tenant transaction sees them).
 */
export async function countStaleDataKeys(sql: Sql, envelope: Envelope, options: { tenantTables?: boolean } = {}): Promise<number> {
  let stale = 0;
  for (const table of ENVELOPE_TABLES) {
    if (options.tenantTables && table.system) continue;
    const [row] = await sql.query<{ n: string }>(`SELECT count(*) AS n FROM ${quote(table.table)} WHERE kek_version IS NOT NULL AND kek_version <> $1`, [
      envelope.activeKekVersion,
    ]);
    stale += Number(row.n);
  }
  return stale;
}
