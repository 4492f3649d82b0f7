import type { TenantTransaction } from '../platform/database/database';
import { CHAIN_START, frontierNodes, MissingNodeError, nodeKey, type NodeId, type NodeSource } from './merkle';

/**
 * The stored nodes asked for: leaves by seq, inner nodes by primary key one at a time (LATERAL …
 * LIMIT 1, which the planner cannot flatten into a join). A plain join of the asked coordinates
 * with kernel_audit_node let the planner read EVERY node of the tenant into a hash table (5,447
 * rows for 12 lookups in a benchmark) — a cost growing with the log, which is never truncated.
 * tests/platform/lookup-plans.spec.ts holds the bound. $1 tenant, $2 leaf seqs, $3 levels, $4 indexes.
 */
export const STORED_NODES = `SELECT 0 AS level, (s.seq - 1)::text AS idx, s.leaf_hash AS hash
         FROM kernel_audit_sequence s WHERE s.tenant_id = $1 AND s.seq = ANY($2::bigint[])
       UNION ALL
       SELECT k.level, k.idx::text, n.hash
         FROM unnest($3::smallint[], $4::bigint[]) AS k(level, idx)
         CROSS JOIN LATERAL (
           SELECT node.hash FROM kernel_audit_node node
            WHERE node.tenant_id = $1 AND node.level = k.level AND node.idx = k.idx
            LIMIT 1 -- (the primary key; LIMIT also keeps the planner from flattening the lookup)
         ) n`;

/**
 * Reads stored tree nodes of the transaction's tenant: leaves (level 0) from
 * kernel_audit_sequence (leaf i is seq i + 1), higher levels from kernel_audit_node. One statement.
 */
export function storedNodes(tx: TenantTransaction): NodeSource {
  return async (ids: NodeId[]) => {
    const found = new Map<string, Buffer>();
    if (ids.length === 0) return found;
    const leaves = ids.filter((n) => n.level === 0).map((n) => String(n.index + 1));
    const inner = ids.filter((n) => n.level > 0);
    const rows = await tx.query<{ level: number; idx: string; hash: Buffer }>(STORED_NODES, [tx.tenantId, leaves, inner.map((n) => n.level), inner.map((n) => String(n.index))]);
    for (const row of rows) found.set(nodeKey({ level: Number(row.level), index: Number(row.idx) }), row.hash);
    return found;
  };
}

export interface LogHead {
  /** Entries in the log (the largest seq; seqs are gap-free from 1). */
  size: number;
  /** The hash chain after the last entry. */
  chain: Buffer;
}

/**
 * The tenant's log size and chain head, from its last sequenced entry. (Every ORDER BY here names
 * the table column: a bare name would sort by the same-named text output column.)
 */
export async function logHead(tx: TenantTransaction): Promise<LogHead> {
  const [row] = await tx.query<{ seq: string; chain_hash: Buffer }>(
    'SELECT s.seq::text AS seq, s.chain_hash FROM kernel_audit_sequence s WHERE s.tenant_id = $1 ORDER BY s.seq DESC LIMIT 1',
    [tx.tenantId],
  );
  return row ? { size: Number(row.seq), chain: row.chain_hash } : { size: 0, chain: CHAIN_START };
}

/** The stored right edge of the tenant's tree of `size` leaves (frontierNodes order); MissingNodeError if the tree tables lack a node. */
export async function storedFrontier(tx: TenantTransaction, size: number): Promise<Buffer[]> {
  const ids = frontierNodes(size);
  const found = await storedNodes(tx)(ids);
  return ids.map((id) => {
    const hash = found.get(nodeKey(id));
    if (!hash) throw new MissingNodeError(id);
    return hash;
  });
}
