import path from 'node:path';
import { Client } from 'pg';
import { insertBatch } from '../../services/batch/batch-store';
import { executeChunkJob, type ChunkJobPayload, type ChunkRunnerDependencies } from '../../services/batch/chunk-runner';
import { newSpanId, newTraceId } from '../../services/platform/trace-context';
import { startTestKernel, type TestKernel } from '../support/test-kernel';
import { CREATE_EFFECT_TABLE, EFFECT_TABLE } from './support/test-item-handlers';

const HANDLER_MODULE = path.resolve(__dirname, 'support/test-item-handlers.ts');

/**
 * The chunk runner against at-least-once delivery, without the scheduler in between: the same
 * chunk job delivered several times (at once, and again later), and jobs of a replaced chain,
 * commit each chunk exactly once.
 */
describe('batch chunk runner', () => {
  let kernel: TestKernel;
  let sql: Client;
  let deps: ChunkRunnerDependencies;
  const enqueued: ChunkJobPayload[] = [];

  beforeAll(async () => {
    kernel = await startTestKernel({ env: { KERNEL_BATCH_HANDLER_MODULES: HANDLER_MODULE } });
    sql = new Client({ connectionString: kernel.databaseUrl });
    await sql.connect();
    await sql.query(CREATE_EFFECT_TABLE);
    // A queue that only records: these jobs are delivered by the test, as often as it likes.
    deps = {
      db: kernel.kernel.db,
      audit: kernel.kernel.audit,
      handlers: kernel.kernel.batch,
      queue: { enqueue: async (_tx, payload) => void enqueued.push(payload) },
      sliceMs: 0, // hand over after every chunk
    };
  });

  afterAll(async () => {
    await sql?.end();
    await kernel?.stop();
  });

  const trace = { traceId: newTraceId(), spanId: newSpanId(), sampled: true, restarted: false };
  const deliver = (payload: ChunkJobPayload) =>
    executeChunkJob(deps, { tenantId: 'runner', payload, trace, log: kernel.kernel.log, signal: new AbortController().signal });
  const effects = async (batchId: string) =>
    (await sql.query(`SELECT count(*)::int AS n, count(DISTINCT item_index)::int AS d FROM ${EFFECT_TABLE} WHERE batch_id = $1`, [batchId])).rows[0];

  test('duplicate and stale deliveries of chunk jobs commit every chunk exactly once', async () => {
    await kernel.kernel.db.inTenantTransaction('runner', (tx) =>
      insertBatch(
        tx,
        { batchId: 'dup', itemType: 'test.record', sourceKind: 'RANGE', rangeStart: 0, totalItems: 1_000, chunkSize: 250, skipLimit: 0, retryLimit: 0, requestHash: 'h', principal: 'p', traceId: trace.traceId },
        undefined,
      ),
    );
    let payload: ChunkJobPayload = { batchId: 'dup', chain: 0 };
    const outcomes: string[][] = [];
    for (let chunk = 0; chunk < 4; chunk += 1) {
      const before = enqueued.length;
      // Three deliveries of the same job at once, then one more after they finished.
      const round = await Promise.all([deliver(payload), deliver(payload), deliver(payload)]);
      round.push(await deliver(payload));
      outcomes.push(round.sort());
      expect(round.filter((o) => o === 'continued' || o === 'completed')).toHaveLength(1);
      if (chunk < 3) {
        expect(enqueued.length).toBe(before + 1); // exactly one next link
        payload = enqueued[enqueued.length - 1];
      }
      expect(await effects('dup')).toEqual({ n: 250 * (chunk + 1), d: 250 * (chunk + 1) });
    }
    expect(outcomes[3]).toContain('completed');
    // A job of an old chain link, delivered late, changes nothing.
    expect(await deliver({ batchId: 'dup', chain: 0 })).toBe('stale');
    expect(await effects('dup')).toEqual({ n: 1_000, d: 1_000 });
    const { rows } = await sql.query(`SELECT state, next_index::int AS n, run_generation AS g FROM batch_run WHERE batch_id = 'dup'`);
    expect(rows[0]).toEqual({ state: 'SUCCEEDED', n: 1_000, g: 3 });
  });

  test('a batch whose item type has no handler on the node fails loudly with ITEM_HANDLER_UNKNOWN', async () => {
    await kernel.kernel.db.inTenantTransaction('runner', (tx) =>
      insertBatch(
        tx,
        { batchId: 'orphan', itemType: 'not.registered', sourceKind: 'RANGE', rangeStart: 0, totalItems: 10, chunkSize: 5, skipLimit: 0, retryLimit: 0, requestHash: 'h', principal: 'p', traceId: trace.traceId },
        undefined,
      ),
    );
    expect(await deliver({ batchId: 'orphan', chain: 0 })).toBe('failed');
    const { rows } = await sql.query(`SELECT state, failure_reason FROM batch_run WHERE batch_id = 'orphan'`);
    expect(rows[0]).toEqual({ state: 'FAILED', failure_reason: 'ITEM_HANDLER_UNKNOWN' });
    expect(kernel.logs.entries().some((e) => e.msg === 'batch failed' && e.level === 'error' && e.batch_id === 'orphan' && e.trace_id === trace.traceId)).toBe(true);
  });
});
