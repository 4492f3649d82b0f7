/**
 * Batch benchmark (docs/capabilities/batch.md): items/s of a batch of no-op items (range source, chunks of 500) run by a
 * kernel process — each chunk a scheduler job whose transaction writes the chunk's item
 * results and advances the checkpoint — next to the bound: a bare multi-row INSERT of the same
 * result rows (500 per statement, one transaction each, one connection) into the same
 * PostgreSQL in the same run, the faster of two statement forms. Target ≥ 0.7 (≥ 0.5 before the cost-of-a-call issue).
 *
 *   npm run bench:batch [-- --items 500000 --chunk 500 --runs 2]
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from 'pg';
import { closeKernelClient, createBatchClient } from '../clients/src';
import { BatchState } from '../gen/proto/axis/kernel/batch/v1/batch';
import { mintDevelopmentToken } from '../services/platform/auth/token-verifier';
import { spawnKernel } from '../tests/support/kernel-process';
import { createTestDatabase } from '../tests/support/test-database';
import { fmt, machineLine } from './load';

const HANDLERS = path.resolve(__dirname, '../tests/batch/support/test-item-handlers.ts');

/**
 * The same rows a chunk writes, inserted bare: N rows in statements of `chunk` rows, autocommit,
 * the row indexes sent as an array (`unnest`) or generated server-side (`generate_series`, what
 * the batch's own fast path does). The faster of the two is the bound.
 */
async function bareInsert(url: string, items: number, chunk: number, run: number, form: 'unnest' | 'generate_series'): Promise<number> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS bench_bare_result (LIKE batch_item_result INCLUDING ALL)`);
    const started = performance.now();
    for (let from = 0; from < items; from += chunk) {
      const n = Math.min(chunk, items - from);
      if (form === 'unnest') {
        await client.query(
          `INSERT INTO bench_bare_result (tenant_id, batch_id, item_index, outcome, attempts)
           SELECT 'bench', $1, i, 1, 1 FROM unnest($2::bigint[]) AS r(i)`,
          [`bare-${run}`, Array.from({ length: n }, (_, i) => from + i)],
        );
      } else {
        await client.query(
          `INSERT INTO bench_bare_result (tenant_id, batch_id, item_index, outcome, attempts)
           SELECT 'bench', $1, i, 1, 1 FROM generate_series($2::bigint, $3::bigint) AS i`,
          [`bare-gs-${run}`, from, from + n - 1],
        );
      }
    }
    return items / ((performance.now() - started) / 1000);
  } finally {
    await client.end();
  }
}

async function main() {
  const { values } = parseArgs({ options: { items: { type: 'string', default: '500000' }, chunk: { type: 'string', default: '500' }, runs: { type: 'string', default: '2' } } });
  const items = Number(values.items);
  const chunk = Number(values.chunk);
  const runs = Number(values.runs);
  const db = await createTestDatabase('axis_bench');
  const secret = 'bench-secret-'.padEnd(40, 'x');
  const kernel = await spawnKernel({ DATABASE_URL: db.url, KERNEL_AUTH_SECRET: secret, LOG_LEVEL: 'warn', KERNEL_BATCH_HANDLER_MODULES: HANDLERS });
  const sql = new Client({ connectionString: db.url });
  await sql.connect();
  try {
    const token = await mintDevelopmentToken({ secret, subject: 'bench', tenants: ['bench'], scope: 'batch:read batch:write' });
    const client = createBatchClient({ address: kernel.address, tenantId: 'bench', token });
    console.log(`batch benchmark — ${machineLine()}`);
    console.log(`  ${fmt(items)} no-op items, chunks of ${chunk}`);
    for (let run = 1; run <= runs; run += 1) {
      const bareUnnest = await bareInsert(db.url, items, chunk, run, 'unnest');
      const bareSeries = await bareInsert(db.url, items, chunk, run, 'generate_series');
      const bare = Math.max(bareUnnest, bareSeries);
      const batchId = `bench-${run}`;
      const started = performance.now();
      await client.startBatch({ batch: { batchId, itemType: 'test.noop', chunkSize: chunk }, items: { $case: 'range', value: { start: 0, count: items } } });
      for (;;) {
        const { batch } = await client.getBatch({ batchId });
        if (batch!.state !== BatchState.BATCH_STATE_RUNNING) {
          if (batch!.state !== BatchState.BATCH_STATE_SUCCEEDED) throw new Error(`batch ended ${BatchState[batch!.state]}: ${batch!.failureReason}`);
          break;
        }
        // Seldom: the rate comes from the batch's own timestamps, and polling would take CPU from the run.
        await new Promise((r) => setTimeout(r, 100));
      }
      const wall = items / ((performance.now() - started) / 1000);
      // The kernel's own span, by the database clock: from the batch row's insert to its completion.
      const { rows } = await sql.query(`SELECT extract(epoch FROM end_time - create_time)::float8 AS s FROM batch_run WHERE batch_id = $1`, [batchId]);
      const kernelRate = items / rows[0].s;
      console.log(
        `  run ${run}: bare multi-row INSERT ${fmt(bareUnnest)} (unnest) / ${fmt(bareSeries)} (generate_series) rows/s | batch ${fmt(kernelRate)} items/s (client-observed ${fmt(wall)}) | ratio ${fmt(kernelRate / bare, 2)} (client-observed ${fmt(wall / bare, 2)}; target ≥ 0.7)`,
      );
    }
    closeKernelClient(client);
  } finally {
    await sql.end();
    await kernel.stop();
    await db.drop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
