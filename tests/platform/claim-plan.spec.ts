import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { CLAIM_KEYS } from '../../services/platform/unit-of-work/mutation-committer';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

/**
 * The claim of a commit group's idempotency keys reads only the records of ITS keys, however many
 * live records the tenant has: with a plain join, the planner (on statistics that lag a busy
 * table) read every live record of the tenant into a hash table on every group — 7,270 rows for
 * 22 keys in a benchmark, growing with 24 h of retained traffic. Measured on the real statement
 * (EXPLAIN ANALYZE): rows read from kernel_idempotency_record ≤ the number of keys.
 */
describe('the idempotency claim reads only its keys', () => {
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
    await sql.query(
      `INSERT INTO kernel_idempotency_record (tenant_id, method, idempotency_key, request_hash, response, expire_time)
       SELECT 't-claim', '/axis.kernel.keymaster.v1.KeymasterService/Sign', 'k-' || i, '\\x00', '\\x00', now() + interval '1 day'
         FROM generate_series(1, 20000) AS i`,
    );
    const keys = [...Array.from({ length: 20 }, () => randomUUID()), 'k-17', 'k-19999'];
    await sql.query(`BEGIN; SELECT set_config('role', 'axis_kernel_app', true), set_config('axis.tenant_id', 't-claim', true)`);
    try {
      const method = '/axis.kernel.keymaster.v1.KeymasterService/Sign';
      const params = ['t-claim', keys.map((k) => `t-claim|${method}|${k}`), keys.map(() => method), keys];
      const [{ 'QUERY PLAN': plan }] = (await sql.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${CLAIM_KEYS}`, params)).rows;
      const rowsRead = recordScans(plan[0].Plan).reduce((sum, node) => sum + node['Actual Rows'] * node['Actual Loops'], 0);
      expect(rowsRead).toBeLessThanOrEqual(keys.length);
      // And it still finds the stored ones, in key order.
      const rows = (await sql.query(CLAIM_KEYS, params)).rows as Array<{ locked: boolean; response: Buffer | null }>;
      expect(rows.map((r) => r.response !== null)).toEqual([...Array(20).fill(false), true, true]);
      expect(rows.every((r) => r.locked)).toBe(true);
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

/** Every plan node that reads kernel_idempotency_record. */
function recordScans(node: PlanNode): PlanNode[] {
  const own = node['Relation Name'] === 'kernel_idempotency_record' ? [node] : [];
  return [...own, ...(node.Plans ?? []).flatMap(recordScans)];
}
