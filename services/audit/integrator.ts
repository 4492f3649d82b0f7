import type { Database, Sql } from '../platform/database/database';
import type { Logger } from '../platform/observability/logger';
import type { Metrics } from '../platform/observability/metrics';
import type { AuditSigner } from './audit-key';
import { ENTRY_COLUMNS, entryFromRow, leafData, type EntryRow } from './log-entry';
import { CompactRange, hashChain, hashLeaf, type NodeId } from './merkle';
import { logHead, storedFrontier } from './tree-store';

/**
 * Integrates committed audit events into the tenants' logs, in batches, after commit.
 *
 * One transaction per batch: kernel_audit_claim hands over the next committed events of every
 * tenant in a commit-safe order and moves the cursor (see the migration for why no committed
 * event can be skipped although transactions commit out of id order); then per tenant, the
 * entries get the next seqs, leaf hashes and chain links, the tree's new complete nodes are
 * stored, and a checkpoint over the new size is signed with the tenant's audit key. Everything
 * commits together or not at all (a crash re-integrates the same batch); nothing already in a
 * log ever moves, so a proof handed out stays valid.
 *
 * Several nodes may run it: the cursor row lock makes one integrate while the others skip.
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

  /** Integrates until nothing committed is left; returns how many entries were added. */
  async integrate(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.db.asSystem((sql) => this.integrateBatch(sql));
      total += n;
      if (n < this.batchSize) return total;
    }
  }

  private async integrateBatch(sql: Sql): Promise<number> {
    const claimed = await sql.query<{ tenant_id: string; event_id: string }>('SELECT tenant_id, event_id::text FROM kernel_audit_claim($1)', [this.batchSize]);
    if (claimed.length === 0) return 0;
    const byTenant = new Map<string, string[]>();
    for (const row of claimed) {
      const ids = byTenant.get(row.tenant_id);
      if (ids) ids.push(row.event_id);
      else byTenant.set(row.tenant_id, [row.event_id]);
    }
    for (const [tenantId, eventIds] of byTenant) {
      try {
        await this.appendToLog(sql, tenantId, eventIds);
      } catch (error) {
        // The batch rolls back and is retried whole: entries are never skipped, so one tenant's
        // broken tree (e.g. tampered with) holds the batch up — loudly, naming the tenant.
        this.metrics.increment('audit_integration_failures_total');
        throw new Error(`audit integration failed for tenant ${tenantId}: ${(error as Error).message}`, { cause: error });
      }
    }
    this.metrics.increment('audit_entries_integrated_total', {}, claimed.length);
    return claimed.length;
  }

  private async appendToLog(sql: Sql, tenantId: string, eventIds: string[]): Promise<void> {
    await sql.query(`SELECT set_config('axis.tenant_id', $1, true)`, [tenantId]);
    const head = await logHead(sql, tenantId);
    const tree = await this.rightEdge(sql, tenantId, head.size);
    const rows = await sql.query<EntryRow & { event_id: string }>(
      `SELECT e.event_id::text, ${ENTRY_COLUMNS} FROM kernel_audit_event e WHERE e.tenant_id = $1 AND e.event_id = ANY($2::bigint[])`,
      [tenantId, eventIds],
    );
    const byId = new Map(rows.map((r) => [r.event_id, r]));

    const seqs: string[] = [];
    const leaves: Buffer[] = [];
    const chains: Buffer[] = [];
    const nodes: Array<{ node: NodeId; hash: Buffer }> = [];
    let chain = head.chain;
    for (const id of eventIds) {
      const row = byId.get(id);
      if (!row) throw new Error(`audit event ${id} of tenant ${tenantId} was claimed but cannot be read`);
      const leaf = hashLeaf(leafData(entryFromRow(row)));
      chain = hashChain(chain, leaf);
      tree.append(leaf, (node, hash) => nodes.push({ node, hash }));
      seqs.push(String(tree.size));
      leaves.push(leaf);
      chains.push(chain);
    }
    const root = tree.root();
    const signed = await this.signCheckpoint(sql, tenantId, tree.size, root);
    await sql.query(
      `WITH entries AS (
         INSERT INTO kernel_audit_sequence (tenant_id, seq, event_id, leaf_hash, chain_hash)
         SELECT $1, u.seq, u.event_id, u.leaf_hash, u.chain_hash FROM unnest($2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[]) AS u(seq, event_id, leaf_hash, chain_hash)
       ), nodes AS (
         INSERT INTO kernel_audit_node (tenant_id, level, idx, hash)
         SELECT $1, u.level, u.idx, u.hash FROM unnest($6::smallint[], $7::bigint[], $8::bytea[]) AS u(level, idx, hash)
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
    this.frontiers.set(tenantId, { size: tree.size, frontier: tree.frontier() });
  }

  /** The tree of `size` leaves, ready to append to: from this node's memory, else read back from the stored nodes. */
  private async rightEdge(sql: Sql, tenantId: string, size: number): Promise<CompactRange> {
    const known = this.frontiers.get(tenantId);
    if (known && known.size === size) return new CompactRange(size, known.frontier);
    return new CompactRange(size, await storedFrontier(sql, tenantId, size));
  }

  /**
   * Signs the new checkpoint. A tenant whose key cannot sign (master key unavailable, say) keeps
   * integrating — its entries are still sequenced and provable — and the failure is surfaced;
   * the next batch tries again. The key work runs behind a savepoint so that a failure of it
   * cannot take the batch (every tenant's entries) down with it.
   */
  private async signCheckpoint(sql: Sql, tenantId: string, size: number, root: Buffer) {
    await sql.query('SAVEPOINT audit_checkpoint');
    try {
      const signed = await this.signer.sign(sql, tenantId, { size, root });
      await sql.query('RELEASE SAVEPOINT audit_checkpoint');
      return signed;
    } catch (error) {
      await sql.query('ROLLBACK TO SAVEPOINT audit_checkpoint');
      this.metrics.increment('audit_checkpoint_failures_total');
      this.log.error({ err: error, tenant: tenantId, tree_size: size }, 'could not sign an audit checkpoint; entries are integrated, the checkpoint waits for the next batch');
      return undefined;
    }
  }
}
