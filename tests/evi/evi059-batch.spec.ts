import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Metadata, Status } from 'nice-grpc-common';
import { Client } from 'pg';
import { closeKernelClient, createBatchClient, type BatchClient } from '../../clients/src';
import { BatchState, ItemOutcome, type BatchProgress } from '../../gen/proto/axis/kernel/batch/v1/batch';
import { CREATE_EFFECT_TABLE, EFFECT_TABLE } from '../batch/support/test-item-handlers';
import { spawnKernel, type KernelProcess } from '../support/kernel-process';
import { refusal } from '../support/refusal';
import { createBackendDatabase, startTestKernel, TEST_BACKEND, type TestBackendDatabase, type TestKernel } from '../support/test-kernel';

const HANDLER_MODULE = path.resolve(__dirname, '../batch/support/test-item-handlers.ts');
/** Proofs that need several kernel processes (and SIGKILL of one) run on real PostgreSQL only: the embedded database is one session inside one process. */
const multiProcess = TEST_BACKEND === 'embedded' ? test.skip : test;

describe('EVI059 Batch framework (K-M13)', () => {
  let db: TestBackendDatabase;
  let kernel: TestKernel;
  let sql: Client;
  const clients: BatchClient[] = [];

  beforeAll(async () => {
    db = await createBackendDatabase();
    kernel = await startTestKernel({ databaseUrl: db.url, env: { KERNEL_BATCH_HANDLER_MODULES: HANDLER_MODULE } });
    sql = new Client({ connectionString: db.url });
    await sql.connect();
    await sql.query(CREATE_EFFECT_TABLE);
  });

  afterAll(async () => {
    clients.forEach(closeKernelClient);
    await sql?.end();
    await kernel?.stop();
    await db?.close();
  });

  const clientFor = async (tenant: string, address = kernel.address) => {
    const client = createBatchClient({ address, tenantId: tenant, token: await kernel.token({ tenants: [tenant] }) });
    clients.push(client);
    return client;
  };

  /** Follows WatchBatch to the end: every progress message, the last one terminal. */
  const watch = async (client: BatchClient, batchId: string): Promise<BatchProgress[]> => {
    const seen: BatchProgress[] = [];
    for await (const { progress } of client.watchBatch({ batchId, pollInterval: { seconds: 0, nanos: 100e6 } }, { deadline: new Date(Date.now() + 600_000) })) {
      seen.push(progress!);
    }
    return seen;
  };

  const effects = async (tenant: string, batchId: string) => {
    const { rows } = await sql.query<{ n: number; distinct: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT item_index)::int AS distinct FROM ${EFFECT_TABLE} WHERE tenant_id = $1 AND batch_id = $2`,
      [tenant, batchId],
    );
    return rows[0];
  };

  const waitFor = async (condition: () => Promise<boolean>, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await condition())) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  test('[A] 100,000 items in chunks of 500 are each processed exactly once; progress is monotonic', async () => {
    const client = await clientFor('tenant-a');
    const { batch } = await client.startBatch({ batch: { batchId: 'big-run', itemType: 'test.record', chunkSize: 500 }, items: { $case: 'range', value: { start: 1, count: 100_000 } } });
    expect(batch).toMatchObject({ state: BatchState.BATCH_STATE_RUNNING, totalItems: 100_000, chunkSize: 500 });

    const progress = await watch(client, 'big-run');
    const last = progress[progress.length - 1];
    expect(last).toMatchObject({ state: BatchState.BATCH_STATE_SUCCEEDED, processedItems: 100_000, succeededItems: 100_000, skippedItems: 0, failedItems: 0 });
    for (let i = 1; i < progress.length; i += 1) {
      expect(progress[i].processedItems).toBeGreaterThanOrEqual(progress[i - 1].processedItems);
      expect(progress[i].processedItems % 500 === 0 || progress[i].processedItems === 100_000).toBe(true);
    }
    expect(progress.length).toBeGreaterThan(2); // it was observed in between, not only at the ends

    expect(await effects('tenant-a', 'big-run')).toEqual({ n: 100_000, distinct: 100_000 });
    const { rows } = await sql.query(
      `SELECT count(*)::int AS n, min(payload::bigint)::int AS lo, max(payload::bigint)::int AS hi, sum(payload::bigint - item_index)::bigint AS shift
         FROM ${EFFECT_TABLE} WHERE tenant_id = 'tenant-a' AND batch_id = 'big-run'`,
    );
    expect(rows[0]).toEqual({ n: 100_000, lo: 1, hi: 100_000, shift: '100000' }); // payload i+1 for item i
    const results = await sql.query(`SELECT count(*)::int AS n FROM batch_item_result WHERE tenant_id = 'tenant-a' AND batch_id = 'big-run' AND outcome = 1`);
    expect(results.rows[0].n).toBe(100_000);
    expect((await client.getBatch({ batchId: 'big-run' })).batch).toMatchObject({ processedItems: 100_000, state: BatchState.BATCH_STATE_SUCCEEDED, endTime: expect.any(Date) });
  }, 600_000);

  multiProcess('[B] SIGKILL of kernel processes mid-batch: another process continues from the checkpoint (by lease rescue, then by ResumeBatch) and every item takes effect exactly once', async () => {
    // A database of its own: only the spawned processes work its chunks.
    const own = await createBackendDatabase();
    const ownSql = new Client({ connectionString: own.url });
    const env = {
      DATABASE_URL: own.url,
      KERNEL_AUTH_SECRET: kernel.secret,
      KERNEL_BATCH_HANDLER_MODULES: HANDLER_MODULE,
      BATCH_TEST_ITEM_DELAY_MS: '2',
      KERNEL_SCHEDULER_LEASE_MS: '2000',
    };
    const nodes: KernelProcess[] = [];
    try {
      nodes.push(await spawnKernel(env));
      await ownSql.connect();
      await ownSql.query(CREATE_EFFECT_TABLE);
      const count = async () =>
        (await ownSql.query<{ n: number; distinct: number }>(`SELECT count(*)::int AS n, count(DISTINCT item_index)::int AS distinct FROM ${EFFECT_TABLE}`)).rows[0];
      const checkpoint = async () => Number((await ownSql.query(`SELECT next_index FROM batch_run WHERE batch_id = 'crash-run'`)).rows[0].next_index);
      const onFirst = await clientFor('tenant-b', nodes[0].address);
      await onFirst.startBatch({ batch: { batchId: 'crash-run', itemType: 'test.slow', chunkSize: 200 }, items: { $case: 'range', value: { start: 0, count: 6_000 } } });
      await waitFor(async () => (await checkpoint()) >= 400);
      await nodes[0].kill(); // SIGKILL: no clean-up; the chunk transaction in flight is cut off
      const atFirstKill = await count();
      expect(atFirstKill.n).toBe(atFirstKill.distinct);
      expect(atFirstKill.n).toBe(await checkpoint()); // effects are exactly the committed checkpoint
      expect(atFirstKill.n).toBeLessThan(6_000);

      // A second process, with no call at all: its scheduler rescues the dead node's chunk job once
      // the lease lapses, and the job continues from the checkpoint.
      nodes.push(await spawnKernel(env));
      await waitFor(async () => (await checkpoint()) >= atFirstKill.n + 600);
      await nodes[1].kill();
      const atSecondKill = await count();
      expect(atSecondKill.n).toBe(atSecondKill.distinct);
      expect(atSecondKill.n).toBe(await checkpoint());
      expect(atSecondKill.n).toBeLessThan(6_000);

      // A third process, told to resume: a new link of the job chain; the old one's job, rescued later, changes nothing.
      nodes.push(await spawnKernel(env));
      const onThird = await clientFor('tenant-b', nodes[2].address);
      const resumed = await onThird.resumeBatch({ batchId: 'crash-run' });
      expect(resumed.batch!.state).toBe(BatchState.BATCH_STATE_RUNNING);
      expect(resumed.batch!.processedItems).toBeGreaterThanOrEqual(atSecondKill.n);
      const last = (await watch(onThird, 'crash-run')).pop()!;
      expect(last).toMatchObject({ state: BatchState.BATCH_STATE_SUCCEEDED, processedItems: 6_000, succeededItems: 6_000 });
      expect(await count()).toEqual({ n: 6_000, distinct: 6_000 });
      await new Promise((r) => setTimeout(r, 3_000)); // past the lease of the second node's job: its rescue changes nothing
      expect(await count()).toEqual({ n: 6_000, distinct: 6_000 });
      const results = await ownSql.query(`SELECT count(*)::int AS n FROM batch_item_result WHERE batch_id = 'crash-run'`);
      expect(results.rows[0].n).toBe(6_000);
    } finally {
      for (const node of nodes) await node.kill().catch(() => undefined);
      await ownSql.end().catch(() => undefined);
      await own.close();
    }
  }, 600_000);

  test('[C] 37 poison items are skipped with per-item errors, transient errors are retried; exceeding the skip limit fails the batch loudly', async () => {
    const client = await clientFor('tenant-c');
    const payloads = Array.from({ length: 1_000 }, (_, i) => `item-${i}`);
    const poison = Array.from({ length: 37 }, (_, k) => 13 + k * 26);
    for (const i of poison) payloads[i] = `poison-${i}`;
    const flaky = [5, 500, 999];
    for (const i of flaky) payloads[i] = 'flaky:2';
    payloads[700] = 'flaky:50'; // never recovers within the retry limit
    const start = (batchId: string, skipLimit: number) =>
      client.startBatch({ batch: { batchId, itemType: 'test.poison', chunkSize: 100, skipLimit, retryLimit: 3 }, items: { $case: 'inlineItems', value: { payloads } } });

    await start('poisoned', 38);
    const done = (await watch(client, 'poisoned')).pop()!;
    expect(done).toMatchObject({ state: BatchState.BATCH_STATE_SUCCEEDED, processedItems: 1_000, succeededItems: 962, skippedItems: 37, failedItems: 1 });
    const batch = (await client.getBatch({ batchId: 'poisoned' })).batch!;
    expect(batch.retriedAttempts).toBe(3 * 2 + 3); // each flaky:2 item twice, the hopeless one three times
    expect(await effects('tenant-c', 'poisoned')).toEqual({ n: 962, distinct: 962 });

    const errors = [];
    let pageToken = '';
    do {
      const page = await client.listBatchItemErrors({ batchId: 'poisoned', pageSize: 10, pageToken });
      errors.push(...page.errors);
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(errors.map((e) => e.itemIndex)).toEqual([...poison, 700].sort((a, b) => a - b));
    for (const e of errors) {
      if (e.itemIndex === 700) expect(e).toMatchObject({ outcome: ItemOutcome.ITEM_OUTCOME_FAILED, attempts: 4, message: expect.stringContaining('transient failure') });
      else expect(e).toMatchObject({ outcome: ItemOutcome.ITEM_OUTCOME_SKIPPED, attempts: 1, message: expect.stringContaining(`item ${e.itemIndex} is poison`) });
    }

    // The same items with a skip limit of 30: the 31st skip is refused and the batch fails.
    const traceId = randomUUID().replace(/-/g, '');
    await client.startBatch(
      { batch: { batchId: 'over-limit', itemType: 'test.poison', chunkSize: 100, skipLimit: 30, retryLimit: 3 }, items: { $case: 'inlineItems', value: { payloads } } },
      { metadata: Metadata({ traceparent: `00-${traceId}-${'2'.repeat(16)}-01` }) },
    );
    const failed = (await watch(client, 'over-limit')).pop()!;
    const failures = [...poison, 700].sort((a, b) => a - b);
    const rejectedIndex = failures[30]; // the 31st item that did not succeed
    const chunkStart = Math.floor(rejectedIndex / 100) * 100;
    expect(failed).toMatchObject({ state: BatchState.BATCH_STATE_FAILED, failureReason: 'SKIP_LIMIT_EXCEEDED', processedItems: chunkStart });
    const failedBatch = (await client.getBatch({ batchId: 'over-limit' })).batch!;
    expect(failedBatch.failureDetail).toContain(`item ${rejectedIndex}`);
    expect(failedBatch.skippedItems).toBe(poison.filter((i) => i < chunkStart).length);
    expect(failedBatch.failedItems).toBe(chunkStart > 700 ? 1 : 0);
    const rejected = (await client.listBatchItemErrors({ batchId: 'over-limit', pageSize: 1000 })).errors.filter((e) => e.outcome === ItemOutcome.ITEM_OUTCOME_REJECTED);
    expect(rejected.map((e) => e.itemIndex)).toEqual([rejectedIndex]);
    // Nothing of the rejected chunk committed; nothing after it ran.
    const partial = await effects('tenant-c', 'over-limit');
    expect(partial.n).toBe(partial.distinct);
    expect(partial.n).toBe(chunkStart - failedBatch.skippedItems - failedBatch.failedItems);
    // Loud: an error log line with the trace id, and an audit entry.
    expect(kernel.logs.entries().some((e) => e.msg === 'batch failed' && e.level === 'error' && e.trace_id === traceId && e.failure_reason === 'SKIP_LIMIT_EXCEEDED')).toBe(true);
    const audit = await sql.query(`SELECT detail FROM kernel_audit_event WHERE tenant_id = 'tenant-c' AND action = 'axis.kernel.batch.v1.BatchService/FailBatch' AND trace_id = $1 AND resource = 'batches/over-limit'`, [traceId]);
    expect(audit.rows).toEqual([{ detail: expect.objectContaining({ failure_reason: 'SKIP_LIMIT_EXCEEDED', item_index: rejectedIndex }) }]);

    // No item lost: resumed with a larger skip limit, it completes from the checkpoint, each effect once.
    await client.resumeBatch({ batchId: 'over-limit', skipLimit: 100 });
    expect((await watch(client, 'over-limit')).pop()).toMatchObject({ state: BatchState.BATCH_STATE_SUCCEEDED, processedItems: 1_000, succeededItems: 962, skippedItems: 37, failedItems: 1 });
    expect(await effects('tenant-c', 'over-limit')).toEqual({ n: 962, distinct: 962 });
    expect((await client.listBatchItemErrors({ batchId: 'over-limit', pageSize: 1000 })).errors.map((e) => e.itemIndex)).toEqual([...poison, 700].sort((a, b) => a - b));
  }, 600_000);

  test("[D] cancel stops the batch within one chunk; another tenant cannot see or touch the batch (NOT_FOUND), and RLS hides it from raw SQL", async () => {
    const client = await clientFor('tenant-d');
    await client.startBatch({ batch: { batchId: 'to-cancel', itemType: 'test.slow', chunkSize: 100 }, items: { $case: 'range', value: { start: 0, count: 20_000 } } });
    await waitFor(async () => (await client.getBatch({ batchId: 'to-cancel' })).batch!.processedItems >= 200);
    const { batch: cancelled } = await client.cancelBatch({ batchId: 'to-cancel' });
    expect(cancelled).toMatchObject({ state: BatchState.BATCH_STATE_CANCELLED, failureReason: 'CANCELLED_BY_REQUEST' });
    const atCancel = cancelled!.processedItems;
    expect(atCancel).toBeLessThan(20_000);
    // Whatever chunk was in flight committed nothing: the effects are exactly the checkpoint's
    // items, now and after the time several more chunks would have taken.
    expect(await effects('tenant-d', 'to-cancel')).toEqual({ n: atCancel, distinct: atCancel });
    await new Promise((r) => setTimeout(r, 2_000));
    expect(await effects('tenant-d', 'to-cancel')).toEqual({ n: atCancel, distinct: atCancel });
    expect((await client.getBatch({ batchId: 'to-cancel' })).batch).toMatchObject({ state: BatchState.BATCH_STATE_CANCELLED, processedItems: atCancel });
    expect((await client.cancelBatch({ batchId: 'to-cancel' })).batch!.processedItems).toBe(atCancel); // cancelling again changes nothing

    const other = await clientFor('tenant-d-other');
    for (const call of [
      () => other.getBatch({ batchId: 'to-cancel' }),
      () => other.cancelBatch({ batchId: 'to-cancel' }),
      () => other.resumeBatch({ batchId: 'to-cancel' }),
      () => other.listBatchItemErrors({ batchId: 'to-cancel' }),
      () => watch(other, 'to-cancel'),
    ]) {
      const refused = await refusal(call());
      expect([refused.code, refused.reason]).toEqual([Status.NOT_FOUND, 'BATCH_NOT_FOUND']);
    }
    const forged = await refusal(other.getBatch({ batchId: 'to-cancel' }, { tenantId: 'tenant-d' }));
    expect([forged.code, forged.reason]).toEqual([Status.PERMISSION_DENIED, 'TENANT_NOT_ALLOWED']);
    // The same identity in another tenant is another batch.
    const { batch: own, alreadyExisted } = await other.startBatch({ batch: { batchId: 'to-cancel', itemType: 'test.record' }, items: { $case: 'range', value: { start: 0, count: 3 } } });
    expect(alreadyExisted).toBe(false);
    expect((await watch(other, 'to-cancel')).pop()).toMatchObject({ state: BatchState.BATCH_STATE_SUCCEEDED, processedItems: 3 });
    expect(own!.totalItems).toBe(3);
    expect((await client.getBatch({ batchId: 'to-cancel' })).batch).toMatchObject({ state: BatchState.BATCH_STATE_CANCELLED, totalItems: 20_000 });

    await sql.query('BEGIN');
    try {
      await sql.query(`SELECT set_config('role', 'axis_kernel_app', true), set_config('axis.tenant_id', 'tenant-d-other', true)`);
      for (const table of ['batch_run', 'batch_item_result', 'batch_item_error', 'batch_item']) {
        expect((await sql.query(`SELECT * FROM ${table} WHERE tenant_id = 'tenant-d'`)).rows).toEqual([]);
      }
      expect((await sql.query(`UPDATE batch_run SET state = 'RUNNING' WHERE tenant_id = 'tenant-d' RETURNING 1`)).rows).toEqual([]);
    } finally {
      await sql.query('ROLLBACK');
    }
  }, 600_000);

  test('[E] restarting a completed batch identity creates no duplicate effects; StartBatch and completion are audited with the batch trace', async () => {
    const client = await clientFor('tenant-e');
    const traceId = randomUUID().replace(/-/g, '');
    const metadata = () => Metadata({ traceparent: `00-${traceId}-${'3'.repeat(16)}-01` });
    const request = { batch: { batchId: 'once', itemType: 'test.record', chunkSize: 500 }, items: { $case: 'range' as const, value: { start: 0, count: 2_500 } } };
    const key = randomUUID();
    const started = await client.startBatch(request, { metadata: metadata(), idempotencyKey: key });
    expect(started.alreadyExisted).toBe(false);
    expect(started.batch!.traceId).toBe(traceId);
    expect((await watch(client, 'once')).pop()).toMatchObject({ state: BatchState.BATCH_STATE_SUCCEEDED, processedItems: 2_500 });
    expect(await effects('tenant-e', 'once')).toEqual({ n: 2_500, distinct: 2_500 });

    // The same call retried (same key): replayed. A new call with the same identity: the existing batch, no new work.
    const trailers: Array<string | undefined> = [];
    const replay = await client.startBatch(request, { idempotencyKey: key, onTrailer: (t) => trailers.push(t.get('idempotent-replayed')) });
    expect(trailers).toEqual(['true']);
    expect(replay.batch!.batchId).toBe('once');
    const again = await client.startBatch(request);
    expect(again.alreadyExisted).toBe(true);
    expect(again.batch).toMatchObject({ state: BatchState.BATCH_STATE_SUCCEEDED, processedItems: 2_500, traceId });
    const refused = await refusal(client.startBatch({ ...request, batch: { ...request.batch, chunkSize: 100 } }));
    expect([refused.code, refused.reason]).toEqual([Status.ALREADY_EXISTS, 'BATCH_EXISTS']);
    const resume = await refusal(client.resumeBatch({ batchId: 'once' }));
    expect([resume.code, resume.reason]).toEqual([Status.FAILED_PRECONDITION, 'BATCH_COMPLETED']);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await effects('tenant-e', 'once')).toEqual({ n: 2_500, distinct: 2_500 });

    const { rows } = await sql.query(
      `SELECT action, resource, principal, detail FROM kernel_audit_event WHERE tenant_id = 'tenant-e' AND trace_id = $1 ORDER BY event_id`,
      [traceId],
    );
    expect(rows).toEqual([
      { action: 'axis.kernel.batch.v1.BatchService/StartBatch', resource: 'batches/once', principal: 'tester', detail: expect.objectContaining({ already_existed: false, total_items: 2_500 }) },
      { action: 'axis.kernel.batch.v1.BatchService/CompleteBatch', resource: 'batches/once', principal: 'system:kernel', detail: expect.objectContaining({ state: 'SUCCEEDED', succeeded_items: 2_500 }) },
    ]);
    const allStarts = await sql.query(`SELECT count(*)::int AS n FROM kernel_audit_event WHERE tenant_id = 'tenant-e' AND resource = 'batches/once' AND action LIKE '%/StartBatch'`);
    expect(allStarts.rows[0].n).toBe(2); // the first start and the identity restart (already_existed); the replay writes none
    // The chunk executions log with the batch's trace id.
    expect(kernel.logs.entries().some((e) => e.trace_id === traceId && e.msg === 'batch completed')).toBe(true);
  }, 600_000);
});
