import type { Database, TenantTransaction } from '../platform/database/database';
import type { Logger } from '../platform/observability/logger';
import type { Metrics } from '../platform/observability/metrics';
import type { AuditSigner } from './audit-key';
import { ENTRY_COLUMNS, entryFromRow, leafData, type EntryRow } from './log-entry';
import { CompactRange, hashChain, hashLeaf, type NodeId } from './merkle';
import { logHead, storedFrontier } from './tree-store';

/** Tenants looked at per pass of the work list. */
const TENANTS_PER_PASS = 1000;

/**
 * Integrates committed audit entries into the tenants' logs, after commit, tenant by tenant.
 *
 * Every entry already has its gap-free per-tenant seq, given in commit order by the transaction
 * that wrote it (kernel_audit_position; see the migration 20261203100000). The integrator only
 * adds what needs computing: per tenant, in one transaction, the next positions' leaf hashes and
 * chain links, the tree's new complete nodes and a checkpoint signed with the tenant's audit
 * key, and moves the tenant's integrated seq — all or nothing (a crash re-integrates the same
 * entries); nothing already in a log ever moves, so a proof handed out stays valid.
 *
 * Several nodes may run it: each tenant's integration row is locked (SKIP LOCKED), so nodes
 * share the tenants and never integrate one twice. One tenant's failure (a tampered tree) holds
 * up that tenant only, loudly, and is retried on the next pass.
 */
export class AuditIntegrator {
  /** The last integrated right edge per tenant: saves reading it back while this node integrates. */
  private readonly frontiers = new Map<string, { size: number; frontier: Buffer[] }>();

  constructor(
    private readonly db: Database,
    private readonly signer: AuditSigner,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly batchSize = 5000,
  ) {}

  /**
   * Integrates every entry committed before the call (tenants with more than a batch waiting get
   * further passes until drained; failing tenants are left for the next tick); returns how many
   * entries were added. Entries committed while a pass runs wait for the next tick: looping on
   * any progress would keep a node integrating back to back — one transaction and one signed
   * checkpoint per handful of entries — as long as traffic flows.
   */
  async integrate(): Promise<number> {
    let total = 0;
    const failed = new Set<string>();
    for (;;) {
      const pending = await this.db.asSystem((sql) =>
        sql.query<{ tenant_id: string }>('SELECT p.tenant_id FROM kernel_audit_pending($1) p', [TENANTS_PER_PASS]),
      );
      let backlog = false;
      for (const { tenant_id: tenantId } of pending) {
        if (failed.has(tenantId)) continue;
        try {
          const added = await this.db.inTenantTransaction(tenantId, (tx) => this.integrateTenant(tx));
          total += added;
          if (added >= this.batchSize) backlog = true;
        } catch (error) {
          failed.add(tenantId);
          this.metrics.increment('audit_integration_failures_total');
          this.log.error({ err: error, tenant: tenantId }, `audit integration failed for tenant ${tenantId}; its entries wait for the next pass`);
        }
      }
      if (!backlog) return total;
    }
  }

  /** Integrates the tenant's next batch of positions; 0 when another node holds the tenant or nothing is new. */
  private async integrateTenant(tx: TenantTransaction): Promise<number> {
    const tenantId = tx.tenantId;
    const [claim] = await tx.query<{ integrated_seq: string }>(
      `WITH existing AS (
         SELECT i.integrated_seq FROM kernel_audit_integration i WHERE i.tenant_id = $1 FOR UPDATE SKIP LOCKED
       ), created AS (
         INSERT INTO kernel_audit_integration (tenant_id)
         SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM kernel_audit_integration i WHERE i.tenant_id = $1)
         ON CONFLICT (tenant_id) DO NOTHING
         RETURNING integrated_seq
       )
       SELECT integrated_seq::text FROM existing UNION ALL SELECT integrated_seq::text FROM created`,
      [tenantId],
    );
    if (!claim) return 0; // another node integrates this tenant right now
    const integrated = Number(claim.integrated_seq);
    const head = await logHead(tx);
    if (head.size !== integrated) {
      throw new Error(`the stored log ends at seq ${head.size} but the integration row says ${integrated}: the tree was altered (run VerifyLog)`);
    }
    const rows = await tx.query<EntryRow & { seq: string; event_id: string; present: boolean }>(
      `SELECT p.seq::text, p.event_id::text, e.event_id IS NOT NULL AS present, ${ENTRY_COLUMNS}
         FROM kernel_audit_position p
         LEFT JOIN kernel_audit_event e ON e.tenant_id = p.tenant_id AND e.event_id = p.event_id
        WHERE p.tenant_id = $1 AND p.seq > $2
        ORDER BY p.seq
        LIMIT $3`,
      [tenantId, integrated, this.batchSize],
    );
    const tree = await this.rightEdge(tx, tenantId, integrated);
    const seqs: string[] = [];
    const eventIds: string[] = [];
    const leaves: Buffer[] = [];
    const chains: Buffer[] = [];
    const nodes: Array<{ node: NodeId; hash: Buffer }> = [];
    let chain = head.chain;
    for (const row of rows) {
      // Positions are gap-free and become visible in order; a hole means someone removed one.
      if (Number(row.seq) !== tree.size + 1) {
        this.metrics.increment('audit_position_gaps_total');
        this.log.error({ tenant: tenantId, expected_seq: tree.size + 1, found_seq: row.seq }, 'audit position missing: integration stops before it (run VerifyLog)');
        break;
      }
      if (!row.present) throw new Error(`the entry at seq ${row.seq} (event ${row.event_id}) is gone before it was integrated`);
      const leaf = hashLeaf(leafData(entryFromRow(row)));
      chain = hashChain(chain, leaf);
      tree.append(leaf, (node, hash) => nodes.push({ node, hash }));
      seqs.push(row.seq);
      eventIds.push(row.event_id);
      leaves.push(leaf);
      chains.push(chain);
    }
    if (seqs.length === 0) return 0;
    const root = tree.root();
    const signed = await this.signCheckpoint(tx, tree.size, root);
    await tx.query(
      `WITH entries AS (
         INSERT INTO kernel_audit_sequence (tenant_id, seq, event_id, leaf_hash, chain_hash)
         SELECT $1, u.seq, u.event_id, u.leaf_hash, u.chain_hash FROM unnest($2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[]) AS u(seq, event_id, leaf_hash, chain_hash)
       ), nodes AS (
         INSERT INTO kernel_audit_node (tenant_id, level, idx, hash)
         SELECT $1, u.level, u.idx, u.hash FROM unnest($6::smallint[], $7::bigint[], $8::bytea[]) AS u(level, idx, hash)
       ), moved AS (
         UPDATE kernel_audit_integration SET integrated_seq = $9 WHERE tenant_id = $1
       )
       INSERT INTO kernel_audit_checkpoint (tenant_id, tree_size, root_hash, chain_hash, create_time, key_alias, key_version, note)
       SELECT $1, $9, $10, $11, $12, 'kernel.audit', $13, $14 WHERE $14::text IS NOT NULL`,
      [
        tenantId,
        seqs,
        eventIds,
        leaves,
        chains,
        nodes.map((n) => n.node.level),
        nodes.map((n) => String(n.node.index)),
        nodes.map((n) => n.hash),
        tree.size,
        root,
        chain,
        signed?.time ?? new Date(),
        signed?.keyVersion ?? 0,
        signed?.note ?? null,
      ],
    );
    const frontier = { size: tree.size, frontier: tree.frontier() };
    tx.onCommit(() => this.frontiers.set(tenantId, frontier));
    this.metrics.increment('audit_entries_integrated_total', {}, seqs.length);
    // Integration lag: how long the batch's oldest entry waited between its event and the tree.
    const oldest = Date.parse(rows[0].event_time);
    tx.onCommit(() => this.metrics.record('kernel.audit.integration.lag', Math.max(0, Date.now() - oldest), {}, 'ms'));
    return seqs.length;
  }

  /** The tree of `size` leaves, ready to append to: from this node's memory, else read back from the stored nodes. */
  private async rightEdge(tx: TenantTransaction, tenantId: string, size: number): Promise<CompactRange> {
    const known = this.frontiers.get(tenantId);
    if (known && known.size === size) return new CompactRange(size, known.frontier);
    return new CompactRange(size, await storedFrontier(tx, size));
  }

  /**
   * Signs the new checkpoint. A tenant whose key cannot sign (master key unavailable, say) keeps
   * integrating — its entries are still sequenced and provable — and the failure is surfaced;
   * the next batch tries again. The key work runs behind a savepoint so that a failure of it
   * cannot take the integration down with it.
   */
  private async signCheckpoint(tx: TenantTransaction, size: number, root: Buffer) {
    await tx.query('SAVEPOINT audit_checkpoint');
    try {
      const signed = await this.signer.sign(tx, { size, root });
      await tx.query('RELEASE SAVEPOINT audit_checkpoint');
      return signed;
    } catch (error) {
      await tx.query('ROLLBACK TO SAVEPOINT audit_checkpoint');
      this.metrics.increment('audit_checkpoint_failures_total');
      this.log.error({ err: error, tenant: tx.tenantId, tree_size: size }, 'could not sign an audit checkpoint; entries are integrated, the checkpoint waits for the next batch');
      return undefined;
    }
  }
}
