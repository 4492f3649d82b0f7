import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { STORED_NODES } from '../../services/audit/tree-store';
import { SIGNING_MATERIAL_LOOKUP } from '../../services/keymaster/key-store';
import { CLAIM_KEYS } from '../../services/platform/unit-of-work/mutation-committer';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

/**
 * Batched lookups by key read only the rows of their keys, however large the table: with a plain
 * join of the asked keys (an unnest) with the table, the planner — on statistics that lag a busy
 * table — read EVERY row of the tenant into a hash table: the idempotency claim of each commit
 * group (7,270 records for 22 keys in a benchmark, growing with 24 h of retained traffic) and the
 * Merkle tree's node reads (5,447 nodes for 12 lookups, growing with a log that is never
 * truncated). Measured on the real statements (EXPLAIN ANALYZE): rows read ≤ keys asked — with
 * the planner told to avoid nested loops, as misleading statistics would: a statement whose only
 * plan is one primary-key probe per key (LATERAL … LIMIT 1) passes; a join gets hashed and fails.
 */
describe('batched lookups read only their keys', () => {
  let kernel: TestKernel;
  let sql: Client;

  beforeAll(async () => {
    kernel = await startTestKernel();
    sql = new Client({ connectionString: kernel.databaseUrl });
    await sql.connect();
  }, 120_000);
  afterAll(async () => {
    await sql?.end();
    await kernel?.stop();
  });

  test('20,000 live records of the tenant; a claim of 22 keys reads at most 22 of them', async () => {
    // The records as the committer stores them, written directly (20,000 calls would take minutes).
    // Statistics taken while the table was small, then it grew (as in a busy kernel).
    const insert = (from: number, to: number) =>
      sql.query(
        `INSERT INTO kernel_idempotency_record (tenant_id, method, idempotency_key, request_hash, response, expire_time)
         SELECT 't-claim', '/axis.kernel.keymaster.v1.KeymasterService/Sign', 'k-' || i, '\\x00', '\\x00', now() + interval '1 day'
           FROM generate_series($1::int, $2::int) AS i`,
        [from, to],
      );
    await insert(1, 10);
    await sql.query('ANALYZE kernel_idempotency_record');
    await insert(11, 20000);
    const keys = [...Array.from({ length: 20 }, () => randomUUID()), 'k-17', 'k-19999'];
    await sql.query(`BEGIN; SELECT set_config('role', 'axis_kernel_app', true), set_config('axis.tenant_id', 't-claim', true); SET LOCAL enable_nestloop = off`);
    try {
      const method = '/axis.kernel.keymaster.v1.KeymasterService/Sign';
      const params = ['t-claim', keys.map((k) => `t-claim|${method}|${k}`), keys.map(() => method), keys];
      const [{ 'QUERY PLAN': plan }] = (await sql.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${CLAIM_KEYS}`, params)).rows;
      const rowsRead = scansOf(plan[0].Plan, 'kernel_idempotency_record').reduce((sum, node) => sum + node['Actual Rows'] * node['Actual Loops'], 0);
      expect(rowsRead).toBeLessThanOrEqual(keys.length);
      // And it still finds the stored ones, in key order.
      const rows = (await sql.query(CLAIM_KEYS, params)).rows as Array<{ locked: boolean; response: Buffer | null }>;
      expect(rows.map((r) => r.response !== null)).toEqual([...Array(20).fill(false), true, true]);
      expect(rows.every((r) => r.locked)).toBe(true);
    } finally {
      await sql.query('ROLLBACK');
    }
  });

  test('20,000 stored tree nodes of the tenant; reading 12 of them reads at most 12', async () => {
    // Statistics taken while the log was small, then the log grew (autovacuum's ANALYZE lags a
    // busy table): the situation in which the planner chose to read every node.
    await sql.query(`INSERT INTO kernel_audit_node (tenant_id, level, idx, hash) SELECT 't-nodes', 1, i, '\\x00' FROM generate_series(0, 9) AS i`);
    await sql.query('ANALYZE kernel_audit_node');
    await sql.query(
      `INSERT INTO kernel_audit_node (tenant_id, level, idx, hash)
       SELECT 't-nodes', l, i, '\\x00' FROM generate_series(1, 4) AS l, generate_series(0, 4999) AS i
       ON CONFLICT DO NOTHING`,
    );
    await sql.query(`BEGIN; SELECT set_config('role', 'axis_kernel_app', true), set_config('axis.tenant_id', 't-nodes', true); SET LOCAL enable_nestloop = off`);
    try {
      const levels = [1, 1, 2, 2, 3, 3, 4, 4, 1, 2, 3, 4];
      const indexes = ['0', '4999', '17', '2500', '1', '3', '4998', '12', '7000', '9999', '5000', '100'];
      const params = ['t-nodes', [], levels, indexes];
      const [{ 'QUERY PLAN': plan }] = (await sql.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${STORED_NODES}`, params)).rows;
      const rowsRead = scansOf(plan[0].Plan, 'kernel_audit_node').reduce((sum, node) => sum + node['Actual Rows'] * node['Actual Loops'], 0);
      expect(rowsRead).toBeLessThanOrEqual(levels.length);
      // The ones that exist are found (7000, 9999 and 5000 are past the stored 0..4999).
      const rows = (await sql.query(STORED_NODES, params)).rows as Array<{ level: number; idx: string }>;
      expect(rows.map((r) => `${r.level}/${r.idx}`).sort()).toEqual(['1/0', '1/4999', '2/17', '2/2500', '3/1', '3/3', '4/100', '4/12', '4/4998'].sort());
    } finally {
      await sql.query('ROLLBACK');
    }
  });

  test('5,000 keys of 4 versions each; the signing material of 6 asks reads at most 6 keys and 6 versions', async () => {
    await sql.query(
      `INSERT INTO keymaster_key (tenant_id, alias, algorithm, primary_version) SELECT 't-keys', 'key-' || i, 'ED25519', 4 FROM generate_series(1, 5000) AS i`,
    );
    await sql.query(
      `INSERT INTO keymaster_key_version (tenant_id, alias, version, state, public_key, destroy_time)
       SELECT 't-keys', 'key-' || i, v, 'DESTROYED', '\\x00', now() FROM generate_series(1, 5000) AS i, generate_series(1, 4) AS v`,
    );
    await sql.query(`BEGIN; SELECT set_config('role', 'axis_kernel_app', true), set_config('axis.tenant_id', 't-keys', true); SET LOCAL enable_nestloop = off`);
    try {
      const aliases = ['key-1', 'key-4999', 'key-17', 'key-17', 'missing', 'key-300'];
      const versions = [0, 2, 1, 9, 0, 0];
      const params = ['t-keys', aliases, versions];
      const [{ 'QUERY PLAN': plan }] = (await sql.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${SIGNING_MATERIAL_LOOKUP}`, params)).rows;
      for (const table of ['keymaster_key', 'keymaster_key_version']) {
        const rowsRead = scansOf(plan[0].Plan, table).reduce((sum, node) => sum + node['Actual Rows'] * node['Actual Loops'], 0);
        expect([table, rowsRead <= aliases.length]).toEqual([table, true]);
      }
      const rows = (await sql.query(SIGNING_MATERIAL_LOOKUP, params)).rows as Array<{ key_found: boolean; version: number | null }>;
      expect(rows.map((r) => [r.key_found, r.version])).toEqual([[true, 4], [true, 2], [true, 1], [true, null], [false, null], [true, 4]]);
    } finally {
      await sql.query('ROLLBACK');
    }
  });
});

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  Plans?: PlanNode[];
}

/** Every plan node that reads `table`. */
function scansOf(node: PlanNode, table: string): PlanNode[] {
  const own = node['Relation Name'] === table ? [node] : [];
  return [...own, ...(node.Plans ?? []).flatMap((child) => scansOf(child, table))];
}
