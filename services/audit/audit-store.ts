import type { TenantTransaction } from '../platform/database/database';
import { ENTRY_COLUMNS, entryFromRow, type EntryRow, type LogEntry } from './log-entry';

/** The action under which purges are recorded (by the RPC and by the system sweep alike). */
export const PURGE_ACTION = 'axis.kernel.audit.v1.AuditService/PurgeExpired';

/** One position of the log as stored: its hashes, and its entry unless that is gone. */
export interface StoredEntry {
  seq: number;
  eventId: string | null;
  leafHash: Buffer;
  chainHash: Buffer;
  /** Null when the event row is gone (purged, or removed by someone). */
  entry: LogEntry | null;
}

type StoredRow = EntryRow & { seq: string; event_id: string | null; leaf_hash: Buffer; chain_hash: Buffer; present: boolean };

const STORED_SELECT = `
  SELECT s.seq::text, e.event_id::text, s.leaf_hash, s.chain_hash, e.event_id IS NOT NULL AS present, ${ENTRY_COLUMNS}
    FROM kernel_audit_sequence s
    LEFT JOIN kernel_audit_event e ON e.tenant_id = s.tenant_id AND e.event_id = s.event_id`;

const storedEntry = (row: StoredRow): StoredEntry => ({
  seq: Number(row.seq),
  eventId: row.event_id,
  leafHash: row.leaf_hash,
  chainHash: row.chain_hash,
  entry: row.present ? entryFromRow(row) : null,
});

/** Positions (from, …] of the tenant's log in seq order, at most `limit`. */
export async function readLog(tx: TenantTransaction, afterSeq: number, limit: number, throughSeq = Number.MAX_SAFE_INTEGER): Promise<StoredEntry[]> {
  const rows = await tx.query<StoredRow>(`${STORED_SELECT} WHERE s.tenant_id = $1 AND s.seq > $2 AND s.seq <= $3 ORDER BY s.seq LIMIT $4`, [
    tx.tenantId,
    afterSeq,
    throughSeq,
    limit,
  ]);
  return rows.map(storedEntry);
}

export interface EventFilter {
  fromSeq: number;
  action?: { exact: string } | { prefix: string };
  principal?: string;
  resourcePrefix?: string;
  traceId?: string;
  outcome?: string;
}

const likePrefix = (prefix: string) => `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/** Integrated entries matching the filter, in seq order (entries without payload only when unfiltered). */
export async function listLog(tx: TenantTransaction, filter: EventFilter, afterSeq: number, limit: number): Promise<StoredEntry[]> {
  const conditions = ['s.tenant_id = $1', 's.seq >= $2', 's.seq > $3'];
  const params: unknown[] = [tx.tenantId, filter.fromSeq, afterSeq];
  const add = (condition: (p: string) => string, value: unknown) => {
    params.push(value);
    conditions.push(condition(`$${params.length}`));
  };
  if (filter.action && 'exact' in filter.action) add((p) => `e.action = ${p}`, filter.action.exact);
  if (filter.action && 'prefix' in filter.action) add((p) => `e.action LIKE ${p}`, likePrefix(filter.action.prefix));
  if (filter.principal) add((p) => `e.principal = ${p}`, filter.principal);
  if (filter.resourcePrefix) add((p) => `e.resource LIKE ${p}`, likePrefix(filter.resourcePrefix));
  if (filter.traceId) add((p) => `e.trace_id = ${p}`, filter.traceId);
  if (filter.outcome) add((p) => `e.outcome = ${p}`, filter.outcome);
  params.push(limit);
  const rows = await tx.query<StoredRow>(`${STORED_SELECT} WHERE ${conditions.join(' AND ')} ORDER BY s.seq LIMIT $${params.length}`, params);
  return rows.map(storedEntry);
}

/** One entry by event id, integrated or not (seq 0 while waiting for the integrator). */
export async function findEvent(tx: TenantTransaction, eventId: string): Promise<StoredEntry | undefined> {
  const [row] = await tx.query<StoredRow>(
    `SELECT coalesce(s.seq, 0)::text AS seq, e.event_id::text, s.leaf_hash, s.chain_hash, true AS present, ${ENTRY_COLUMNS}
       FROM kernel_audit_event e
       LEFT JOIN kernel_audit_sequence s ON s.tenant_id = e.tenant_id AND s.event_id = e.event_id
      WHERE e.tenant_id = $1 AND e.event_id = $2`,
    [tx.tenantId, eventId],
  );
  return row && storedEntry(row);
}

/** How far payloads are gone: the largest through_seq a purge recorded in the log (0: none). */
export async function purgedThrough(tx: TenantTransaction): Promise<number> {
  const [row] = await tx.query<{ through: string | null }>(
    `SELECT max((e.detail->>'through_seq')::bigint)::text AS through FROM kernel_audit_event e
      WHERE e.tenant_id = $1 AND e.action = '${PURGE_ACTION}'`,
    [tx.tenantId],
  );
  return Number(row.through ?? 0);
}

export interface CheckpointRecord {
  treeSize: number;
  rootHash: Buffer;
  chainHash: Buffer;
  time: Date;
  keyVersion: number;
  note: string;
}

type CheckpointRow = { tree_size: string; root_hash: Buffer; chain_hash: Buffer; create_time: Date; key_version: number; note: string };
const checkpointRecord = (r: CheckpointRow): CheckpointRecord => ({
  treeSize: Number(r.tree_size),
  rootHash: r.root_hash,
  chainHash: r.chain_hash,
  time: r.create_time,
  keyVersion: r.key_version,
  note: r.note,
});
// ORDER BY must name c.tree_size: a bare tree_size is the text output column ("99" > "102").
const CHECKPOINT_SELECT = 'SELECT c.tree_size::text AS tree_size, c.root_hash, c.chain_hash, c.create_time, c.key_version, c.note FROM kernel_audit_checkpoint c';

/** The latest checkpoint, or the one at `treeSize`. */
export async function findCheckpoint(tx: TenantTransaction, treeSize?: number): Promise<CheckpointRecord | undefined> {
  const [row] =
    treeSize === undefined
      ? await tx.query<CheckpointRow>(`${CHECKPOINT_SELECT} WHERE c.tenant_id = $1 ORDER BY c.tree_size DESC LIMIT 1`, [tx.tenantId])
      : await tx.query<CheckpointRow>(`${CHECKPOINT_SELECT} WHERE c.tenant_id = $1 AND c.tree_size = $2`, [tx.tenantId, treeSize]);
  return row && checkpointRecord(row);
}

/** Checkpoints with from < tree_size <= through, by size. */
export async function listCheckpoints(tx: TenantTransaction, fromExclusive: number, through: number): Promise<CheckpointRecord[]> {
  const rows = await tx.query<CheckpointRow>(`${CHECKPOINT_SELECT} WHERE c.tenant_id = $1 AND c.tree_size > $2 AND c.tree_size <= $3 ORDER BY c.tree_size`, [
    tx.tenantId,
    fromExclusive,
    through,
  ]);
  return rows.map(checkpointRecord);
}
