import { SpanStatusCode, trace as otelTrace, type Context as OtelContext, type Tracer } from '@opentelemetry/api';
import type { AuditLog } from '../platform/audit/audit-log';
import type { Database, TenantTransaction, TransactionControl } from '../platform/database/database';
import type { Logger } from '../platform/observability/logger';
import type { TraceContext } from '../platform/trace-context';
import { BATCH_COLUMNS, batchFromRow, batchResource, type BatchRecord } from './batch-store';
import { isPermanentItemError, type BatchItem, type BatchItemHandler, type BatchItemHandlers } from '../platform/batch-items';
import { SYSTEM_PRINCIPAL } from '../platform/audit/audit-log';
import { abortableSleep } from '../platform/abortable-sleep';

/** The scheduler job type that runs one chunk. */
export const CHUNK_JOB_TYPE = 'kernel.batch.chunk';
/** The audit action names of what the batch machinery (not a caller) does. */
export const BATCH_SERVICE = 'axis.kernel.batch.v1.BatchService';

/**
 * The payload of a chunk job: which batch, and which link of its job chain. Every enqueue of a
 * chunk job (start, resume, continuation) bumps the batch's run_generation in the same
 * transaction, so exactly one chain is live: a job whose chain is not the batch's current
 * run_generation (a duplicate delivery, the job of a chain a resume replaced) changes nothing.
 */
export interface ChunkJobPayload {
  batchId: string;
  chain: number;
}

/** How chunk jobs are enqueued: inside the caller's transaction (they commit or vanish with it). */
export interface ChunkQueue {
  enqueue(tx: TenantTransaction, payload: ChunkJobPayload, trace?: TraceContext): Promise<void>;
}

export interface ChunkRunnerDependencies {
  db: Database;
  audit: AuditLog;
  handlers: BatchItemHandlers;
  queue: ChunkQueue;
  /** How long one chunk job keeps taking chunks before it hands over to a new job. Default 2,000 ms. */
  sliceMs?: number;
  /** Set when spans are exported: each chunk attempt is a span under the job's, its statements under it. */
  tracer?: Tracer;
}

export interface ChunkExecution {
  tenantId: string;
  payload: ChunkJobPayload;
  trace: TraceContext;
  /** The chunk job span's context (the parent of the chunk spans). */
  otel?: OtelContext;
  log: Logger;
  signal: AbortSignal;
}

/** What a chunk job came to. `stale`: not the live chain, or a cancelled or finished batch — nothing changed. */
export type ChunkOutcome = 'continued' | 'completed' | 'stale' | 'busy' | 'failed';

interface ItemResult {
  index: number;
  outcome: 1 | 2 | 3; // ItemOutcome SUCCEEDED, SKIPPED, FAILED
  attempts: number;
  message?: string;
}

const MAX_MESSAGE = 1000;
const OUTCOME_NAMES = { 2: 'SKIPPED', 3: 'FAILED' } as const;
const DEFAULT_SLICE_MS = 2000;

/** Thrown inside the chunk transaction to roll it back; carries why. */
class Rollback extends Error {
  constructor(
    readonly kind: 'stale' | 'busy' | 'isolate' | 'reject',
    readonly rejected?: { item: ItemResult; limit: number; skippedSoFar: number; from: number },
  ) {
    super(kind);
  }
}

const messageOf = (error: unknown) => (error instanceof Error ? `${error.name}: ${error.message}` : String(error)).slice(0, MAX_MESSAGE);

/** The batch as the previous chunk of this job committed it (its checkpoint is where the next chunk starts). */
type Known = BatchRecord;

/**
 * Runs a batch's chunks for one job: chunk after chunk, each in its own tenant transaction, for
 * up to a time slice; the slice's last chunk enqueues the next chunk job (a new chain link) in
 * its own transaction. So a batch moves through scheduler jobs that any node may take, while a
 * chunk costs no scheduler round trip of its own.
 *
 * A chunk's item effects, item results, error reports and the advanced checkpoint commit in ONE
 * transaction whose final update only applies if the checkpoint is still where the chunk
 * started, the chain is still live and the batch still runs. So a duplicate delivery, a chunk
 * racing a cancel, or a node killed mid-chunk never commits an item twice, and nothing half-done
 * survives. A job killed mid-slice is delivered again (same chain) and continues from the
 * checkpoint.
 *
 * Items first run straight through (no savepoints: a subtransaction per item would overflow
 * PostgreSQL's subxid cache for large chunks). If one fails, that attempt rolls back and the
 * chunk runs again "isolated": each item behind its own savepoint, retried after transient
 * failures, skipped after permanent ones. If the skips exceed the skip limit, nothing of the
 * chunk commits: the batch fails loudly (error log with trace id, failure reason on the batch,
 * the rejected item's error report, an audit entry), its checkpoint where the chunk started.
 */
export async function runChunks(deps: ChunkRunnerDependencies, job: ChunkExecution): Promise<ChunkOutcome> {
  await deps.handlers.ready();
  const sliceEnd = Date.now() + (deps.sliceMs ?? DEFAULT_SLICE_MS);
  let known: Known | undefined;
  for (;;) {
    if (job.signal.aborted) throw job.signal.reason ?? new Error('chunk job aborted');
    const handOver = Date.now() >= sliceEnd;
    const outcome = await runChunk(deps, job, known, handOver);
    if (typeof outcome === 'string') return outcome;
    if (handOver) return 'continued';
    known = outcome;
  }
}

/** One chunk (retried isolated after an item failure); returns the batch as committed, or how the job ends. */
async function runChunk(deps: ChunkRunnerDependencies, job: ChunkExecution, known: Known | undefined, handOver: boolean): Promise<Known | ChunkOutcome> {
  let isolated = false;
  for (;;) {
    try {
      return await tracedChunk(deps, job, isolated, (trace) =>
        deps.db.inTenantTransaction(job.tenantId, (tx) => processChunk(deps, job, tx, known, isolated, handOver), { trace }),
      );
    } catch (error) {
      if (!(error instanceof Rollback)) throw error;
      if (error.kind === 'stale' || error.kind === 'busy') return error.kind;
      if (error.kind === 'isolate' && !isolated) {
        isolated = true;
        continue;
      }
      if (error.kind === 'reject') {
        const r = error.rejected!;
        return failBatch(deps, job, r.from, 'SKIP_LIMIT_EXCEEDED', rejectionDetail(r), r.item);
      }
      throw error;
    }
  }
}

/** One chunk attempt as a span (batch id, tenant, isolated or not), when spans are exported. */
async function tracedChunk<T>(deps: ChunkRunnerDependencies, job: ChunkExecution, isolated: boolean, run: (trace: OtelContext | undefined) => Promise<T>): Promise<T> {
  if (!deps.tracer || !job.otel) return run(undefined);
  const span = deps.tracer.startSpan(
    'batch chunk',
    { attributes: { 'axis.tenant': job.tenantId, 'axis.batch.id': job.payload.batchId, 'axis.batch.chain': job.payload.chain, 'axis.batch.isolated': isolated } },
    job.otel,
  );
  try {
    return await run(otelTrace.setSpan(job.otel, span));
  } catch (error) {
    // A Rollback is how a chunk ends without committing (stale, busy, isolate, reject): named, not an error.
    if (error instanceof Rollback) span.setAttribute('axis.batch.rollback', error.kind);
    else span.setStatus({ code: SpanStatusCode.ERROR, message: messageOf(error) });
    throw error;
  } finally {
    span.end();
  }
}

function rejectionDetail(r: { item: ItemResult; limit: number; skippedSoFar: number }): string {
  return `item ${r.item.index} failed after ${r.item.attempts} attempt(s) and the skip limit ${r.limit} was reached (${r.skippedSoFar} item(s) skipped or failed before): ${r.item.message ?? ''}`.slice(0, 2000);
}

const LOCK = `pg_try_advisory_xact_lock(hashtextextended('kernel.batch|' || current_setting('axis.tenant_id') || '|' || batch_id, 0))`;

async function processChunk(
  deps: ChunkRunnerDependencies,
  job: ChunkExecution,
  tx: TransactionControl,
  known: Known | undefined,
  isolated: boolean,
  handOver: boolean,
): Promise<Known | ChunkOutcome> {
  const { payload, tenantId, trace, log, signal } = job;
  let batch = known;
  if (!batch) {
    // One chunk of a batch at a time across all nodes: a concurrent duplicate leaves at once
    // (the holder's job, if it dies, is delivered again by the scheduler).
    const [row] = await tx.query(`SELECT ${LOCK} AS locked, ${BATCH_COLUMNS} FROM batch_run WHERE batch_id = $1`, [payload.batchId]);
    if (!row) {
      log.warn({ batch_id: payload.batchId }, 'chunk job for a batch that does not exist; dropped');
      return 'stale';
    }
    if (!row.locked) return 'busy';
    batch = batchFromRow(row);
    if (batch.state !== 'RUNNING' || batch.runGeneration !== payload.chain) return 'stale';
  }
  const from = batch.nextIndex;

  const handler = deps.handlers.get(batch.itemType);
  if (!handler) throw new UnknownHandler(batch.itemType, from);

  const to = Math.min(batch.totalItems, from + batch.chunkSize);
  const items = await loadItems(tx, batch, from, to);
  const results: ItemResult[] = [];
  let retried = 0;
  let skippedSoFar = batch.skippedItems + batch.failedItems;
  const itemLog = log.child({ batch_id: batch.batchId });

  // No function is created per item: under the tsx loader every named closure costs a name
  // assignment, which was a fifth of the kernel's CPU per chunk of no-op items.
  const batchId = batch.batchId;
  const context = (itemIndex: number, attempt: number) => ({ tx, tenantId, batchId, itemIndex, attempt, trace, log: itemLog });
  for (const item of items) {
    if (signal.aborted) throw signal.reason ?? new Error('chunk aborted');
    if (!isolated) {
      try {
        await handler(item, context(item.index, 1));
        results.push({ index: item.index, outcome: 1, attempts: 1 });
        continue;
      } catch {
        throw new Rollback('isolate');
      }
    }
    const result = await runIsolated(tx, handler, item, context, batch.retryLimit, signal);
    retried += result.attempts - 1;
    if (result.outcome !== 1) {
      if (skippedSoFar >= batch.skipLimit) throw new Rollback('reject', { item: result, limit: batch.skipLimit, skippedSoFar, from });
      skippedSoFar += 1;
      itemLog.warn({ item_index: item.index, outcome: OUTCOME_NAMES[result.outcome], attempts: result.attempts }, 'batch item did not succeed; passed over');
    }
    results.push(result);
  }

  const errors = results.filter((r) => r.outcome !== 1);
  const completes = to >= batch.totalItems;
  const continues = !completes && handOver;
  const [row] = await tx.query(chunkCommitStatement(results, errors), [
    tenantId,
    batch.batchId,
    from,
    to,
    results.filter((r) => r.outcome === 1).length,
    results.filter((r) => r.outcome === 2).length,
    results.filter((r) => r.outcome === 3).length,
    retried,
    completes,
    continues ? 1 : 0,
    payload.chain,
    ...(results.every((r) => r.outcome === 1 && r.attempts === 1) ? [] : [results.map((r) => r.outcome), results.map((r) => r.attempts)]),
    ...(errors.length === 0
      ? []
      : [errors.map((r) => r.index), errors.map((r) => OUTCOME_NAMES[r.outcome as 2 | 3]), errors.map((r) => r.attempts), errors.map((r) => r.message ?? '')]),
  ]);
  // Cancelled, resumed (another chain) or taken by a duplicate meanwhile: commit nothing.
  if (!row) throw new Rollback('stale');
  const committed = batchFromRow(row);
  if (completes) {
    deps.audit.append(tx, {
      tenantId,
      principal: SYSTEM_PRINCIPAL,
      action: `${BATCH_SERVICE}/CompleteBatch`,
      resource: batchResource(batch.batchId),
      outcome: 'OK',
      traceId: trace.traceId,
      detail: {
        state: 'SUCCEEDED',
        total_items: committed.totalItems,
        succeeded_items: committed.succeededItems,
        skipped_items: committed.skippedItems,
        failed_items: committed.failedItems,
      },
    });
    log.info({ batch_id: batch.batchId, total_items: batch.totalItems }, 'batch completed');
    return 'completed';
  }
  if (continues) await deps.queue.enqueue(tx, { batchId: batch.batchId, chain: committed.runGeneration }, trace);
  return committed;
}

/**
 * The one statement that commits a chunk: its item results (items from..to-1 are contiguous, so
 * their indexes come from generate_series; outcomes and attempts travel only when not all items
 * succeeded at the first attempt), its error reports (only when there are some), and the
 * checkpoint update guarded by checkpoint, chain, state and the batch's advisory lock. (Data-
 * modifying CTEs always run to completion; if the guard fails, the caller rolls them back.)
 */
function chunkCommitStatement(results: ItemResult[], errors: ItemResult[]): string {
  const uniform = results.every((r) => r.outcome === 1 && r.attempts === 1);
  const resultRows = uniform
    ? `SELECT $1, $2, i, 1, 1 FROM generate_series($3::bigint, $4::bigint - 1) AS i`
    : `SELECT $1, $2, $3::bigint + n - 1, o, a FROM unnest($12::smallint[], $13::smallint[]) WITH ORDINALITY AS r(o, a, n)`;
  const e = uniform ? 12 : 14;
  const errorRows =
    errors.length === 0
      ? ''
      : `, errors AS (
       INSERT INTO batch_item_error (tenant_id, batch_id, item_index, outcome, attempts, message)
       SELECT $1, $2, i, o, a, m FROM unnest($${e}::bigint[], $${e + 1}::text[], $${e + 2}::int[], $${e + 3}::text[]) AS e(i, o, a, m)
       ON CONFLICT (tenant_id, batch_id, item_index) DO UPDATE SET outcome = excluded.outcome, attempts = excluded.attempts,
         message = excluded.message, error_time = excluded.error_time
     )`;
  return `WITH results AS (
       INSERT INTO batch_item_result (tenant_id, batch_id, item_index, outcome, attempts)
       ${resultRows}
     )${errorRows}
     UPDATE batch_run SET next_index = $4, succeeded_items = succeeded_items + $5, skipped_items = skipped_items + $6,
            failed_items = failed_items + $7, retried_attempts = retried_attempts + $8, update_time = now(),
            state = CASE WHEN $9 THEN 'SUCCEEDED' ELSE state END, end_time = CASE WHEN $9 THEN now() END,
            run_generation = run_generation + $10
     WHERE batch_id = $2 AND state = 'RUNNING' AND next_index = $3 AND run_generation = $11 AND ${LOCK}
     RETURNING ${BATCH_COLUMNS}`;
}

/** One item behind its own savepoint: retried after transient failures, skipped after permanent ones. */
async function runIsolated(
  tx: TransactionControl,
  handler: BatchItemHandler,
  item: BatchItem,
  context: (itemIndex: number, attempt: number) => Parameters<BatchItemHandler>[1],
  retryLimit: number,
  signal: AbortSignal,
): Promise<ItemResult> {
  for (let attempt = 1; ; attempt += 1) {
    // The savepoint travels with the handler's first statement; a handler that sends none needs none.
    tx.prefixNextQuery('SAVEPOINT batch_item');
    try {
      await handler(item, context(item.index, attempt));
      if (!tx.dropPendingPrefix()) tx.prefixNextQuery('RELEASE SAVEPOINT batch_item');
      return { index: item.index, outcome: 1, attempts: attempt };
    } catch (error) {
      if (!tx.dropPendingPrefix()) await tx.query('ROLLBACK TO SAVEPOINT batch_item; RELEASE SAVEPOINT batch_item');
      if (signal.aborted) throw signal.reason ?? error;
      if (isPermanentItemError(error)) return { index: item.index, outcome: 2, attempts: attempt, message: messageOf(error) };
      if (attempt > retryLimit) return { index: item.index, outcome: 3, attempts: attempt, message: messageOf(error) };
      await abortableSleep(Math.min(1000, 10 * 2 ** (attempt - 1)), signal);
    }
  }
}

async function loadItems(tx: TenantTransaction, batch: BatchRecord, from: number, to: number): Promise<BatchItem[]> {
  if (batch.sourceKind === 'RANGE') {
    return Array.from({ length: to - from }, (_, i) => ({ index: from + i, payload: String(batch.rangeStart + from + i) }));
  }
  const rows = await tx.query<{ item_index: string; payload: string }>(
    'SELECT item_index, payload FROM batch_item WHERE batch_id = $1 AND item_index >= $2 AND item_index < $3 ORDER BY item_index',
    [batch.batchId, from, to],
  );
  return rows.map((r) => ({ index: Number(r.item_index), payload: r.payload }));
}

/** No handler for the batch's item type on this node. */
class UnknownHandler extends Error {
  constructor(
    readonly itemType: string,
    readonly from: number,
  ) {
    super(`no batch item handler of type ${itemType} is registered on this node`);
  }
}

/**
 * Fails the batch loudly in its own transaction (the chunk's work was rolled back): the failure
 * reason on the batch, the rejected item's error report, an audit entry and an error log line
 * with the trace id. Guarded like a chunk: only if the batch still runs, on this chain, at the
 * same checkpoint.
 */
async function failBatch(deps: ChunkRunnerDependencies, job: ChunkExecution, from: number | undefined, reason: string, detail: string, item?: ItemResult): Promise<ChunkOutcome> {
  const { tenantId, payload, trace, log } = job;
  const failed = await deps.db.inTenantTransaction(tenantId, async (tx) => {
    const [row] = await tx.query<{ next_index: string }>(
      `UPDATE batch_run SET state = 'FAILED', failure_reason = $2, failure_detail = $3, end_time = now(), update_time = now()
       WHERE batch_id = $1 AND state = 'RUNNING' AND next_index = coalesce($4, next_index) AND run_generation = $5 RETURNING next_index`,
      [payload.batchId, reason, detail, from ?? null, payload.chain],
    );
    if (!row) return false;
    if (item) {
      await tx.query(
        `INSERT INTO batch_item_error (tenant_id, batch_id, item_index, outcome, attempts, message) VALUES ($1, $2, $3, 'REJECTED', $4, $5)
         ON CONFLICT (tenant_id, batch_id, item_index) DO UPDATE SET outcome = 'REJECTED', attempts = excluded.attempts,
           message = excluded.message, error_time = excluded.error_time`,
        [tenantId, payload.batchId, item.index, item.attempts, item.message ?? ''],
      );
    }
    deps.audit.append(tx, {
      tenantId,
      principal: SYSTEM_PRINCIPAL,
      action: `${BATCH_SERVICE}/FailBatch`,
      resource: batchResource(payload.batchId),
      outcome: 'OK',
      traceId: trace.traceId,
      detail: { state: 'FAILED', failure_reason: reason, checkpoint: Number(row.next_index), ...(item ? { item_index: item.index } : {}) },
    });
    return true;
  });
  if (!failed) return 'stale';
  log.error({ trace_id: trace.traceId, tenant: tenantId, batch_id: payload.batchId, failure_reason: reason, detail }, 'batch failed');
  return 'failed';
}

/**
 * The chunk job's entry: runs chunks, turning a missing item handler into a loud batch failure.
 * Any other error fails the job attempt (the scheduler retries it with backoff); when the job has
 * no attempt left, the batch fails loudly with CHUNK_ABANDONED instead of staying RUNNING with
 * no job to move it (ResumeBatch continues it from the checkpoint).
 */
export async function executeChunkJob(deps: ChunkRunnerDependencies, job: ChunkExecution & { lastAttempt?: boolean }): Promise<ChunkOutcome> {
  try {
    return await runChunks(deps, job);
  } catch (error) {
    if (error instanceof UnknownHandler) {
      return failBatch(deps, job, error.from, 'ITEM_HANDLER_UNKNOWN', error.message);
    }
    if (job.lastAttempt && !job.signal.aborted) {
      await failBatch(deps, job, undefined, 'CHUNK_ABANDONED', `the chunk job failed on its last attempt: ${messageOf(error)}`).catch((failure) =>
        job.log.error({ err: failure, batch_id: job.payload.batchId }, 'could not mark the abandoned batch FAILED'),
      );
    }
    throw error;
  }
}
