import { Client } from 'pg';
import { closeKernelClient, createKernelClient } from '../../clients/src';
import { AuditServiceDefinition } from '../../gen/proto/axis/kernel/audit/v1/audit_service';
import { startTestKernel, type TestKernel } from '../support/test-kernel';
import { waitFor } from '../support/wait-for';

const TICK_MS = 1000;
const BATCH = 200;

/**
 * The integrator works on its tick, not back to back: a pass takes what was committed before it
 * (a backlog larger than a batch is drained in further passes of the same tick), and entries
 * committed while it runs wait for the next tick. Looping while any pass made progress kept a
 * node integrating continuously under steady traffic — one transaction and one signed checkpoint
 * per handful of entries, ~40 per second for a sequential caller, most of the per-call cost of
 * a lightly loaded kernel.
 */
describe('audit integrator cadence', () => {
  let kernel: TestKernel;
  let sql: Client;

  beforeAll(async () => {
    kernel = await startTestKernel({ env: { KERNEL_AUDIT_SEQUENCER_MS: String(TICK_MS), KERNEL_AUDIT_BATCH_SIZE: String(BATCH) } });
    sql = new Client({ connectionString: kernel.databaseUrl });
    await sql.connect();
  }, 120_000);
  afterAll(async () => {
    await sql?.end();
    await kernel?.stop();
  });

  const checkpoints = async (tenant: string) =>
    (await sql.query<{ n: number; size: number }>('SELECT count(*)::int AS n, coalesce(max(tree_size), 0)::int AS size FROM kernel_audit_checkpoint WHERE tenant_id = $1', [tenant])).rows[0];
  /** The tenant's entries (its appended events and the audit entries of its calls). */
  const entries = async (tenant: string) => (await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM kernel_audit_position WHERE tenant_id = $1', [tenant])).rows[0].n;

  test('under steady traffic: about one signed checkpoint per tick, and every entry integrated', async () => {
    const tenant = 'cadence-steady';
    const client = createKernelClient(AuditServiceDefinition, { address: kernel.address, tenantId: tenant, token: await kernel.token({ tenants: [tenant] }) });
    try {
      const started = Date.now();
      let appended = 0;
      while (Date.now() - started < 3_000) {
        await client.appendEvents({ events: [{ action: 'cadence.Test', resource: `r/${appended}` }] });
        appended++;
      }
      const elapsed = Date.now() - started;
      // (The tenant's audit key, made at its first checkpoint, adds an entry of its own.)
      await waitFor(async () => (await checkpoints(tenant)).size === (await entries(tenant)), 10_000);
      expect(await entries(tenant)).toBeGreaterThan(appended);
      const { n, size } = await checkpoints(tenant);
      // One pass per tick, a further one per full batch, and the ticks that drained the end of the
      // traffic; passes back to back (10–20 ms each) would have made one per handful of appends.
      const bound = elapsed / TICK_MS + 3 + size / BATCH;
      expect(appended).toBeGreaterThan(5 * bound);
      expect(n).toBeLessThanOrEqual(bound);
    } finally {
      closeKernelClient(client);
    }
  });

  test('a backlog larger than a batch is drained within the tick, a batch per pass', async () => {
    const tenant = 'cadence-backlog';
    const client = createKernelClient(AuditServiceDefinition, { address: kernel.address, tenantId: tenant, token: await kernel.token({ tenants: [tenant] }) });
    try {
      // One call of 500 events (the most a call may carry), committed at once: two and a half batches.
      await client.appendEvents({ events: Array.from({ length: 500 }, (_, i) => ({ action: 'cadence.Backlog', resource: `r/${i}` })) });
      await waitFor(async () => (await checkpoints(tenant)).size === (await entries(tenant)), 10_000);
      const total = await entries(tenant);
      const sizes = (await sql.query<{ tree_size: number }>('SELECT tree_size::int FROM kernel_audit_checkpoint WHERE tenant_id = $1 ORDER BY tree_size', [tenant])).rows;
      const passes = Math.ceil(total / BATCH);
      expect(sizes.map((r) => r.tree_size)).toEqual(Array.from({ length: passes }, (_, i) => Math.min(total, (i + 1) * BATCH)));
      // All the passes ran in one integrate() call: nothing waited a tick between them.
      const times = (await sql.query<{ spread_ms: number }>(
        'SELECT (extract(epoch FROM max(create_time) - min(create_time)) * 1000)::float8 AS spread_ms FROM kernel_audit_checkpoint WHERE tenant_id = $1',
        [tenant],
      )).rows[0];
      expect(times.spread_ms).toBeLessThan(TICK_MS);
    } finally {
      closeKernelClient(client);
    }
  });
});
