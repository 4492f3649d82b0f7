import type { TenantTransaction } from '../platform/database/database';
import { failedPrecondition, notFound } from '../platform/kernel-error';

export type BatchStateName = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';
export type ItemErrorOutcome = 'SKIPPED' | 'FAILED' | 'REJECTED';

/** A batch row as the capability works with it. */
export interface BatchRecord {
  batchId: string;
  itemType: string;
  state: BatchStateName;
  sourceKind: 'INLINE' | 'RANGE';
  rangeStart: number;
  totalItems: number;
  chunkSize: number;
  skipLimit: number;
  retryLimit: number;
  nextIndex: number;
  succeededItems: number;
  skippedItems: number;
  failedItems: number;
  retriedAttempts: number;
  runGeneration: number;
  failureReason: string;
  failureDetail: string;
  requestHash: string;
  traceId: string;
  createTime: Date;
  updateTime: Date;
  endTime?: Date;
  /** Seconds to completion at the current run's rate (undefined when unknown or not running). */
  etaSeconds?: number;
}

export interface ItemErrorRecord {
  itemIndex: number;
  outcome: ItemErrorOutcome;
  attempts: number;
  message: string;
  errorTime: Date;
}

/** Columns of batch_run, plus the ETA computed with the database's clock. */
export const BATCH_COLUMNS = `batch_id, item_type, state, source_kind, range_start, total_items, chunk_size, skip_limit, retry_limit,
  next_index, succeeded_items, skipped_items, failed_items, retried_attempts, run_generation, failure_reason, failure_detail,
  request_hash, trace_id, create_time, update_time, end_time,
  CASE WHEN state = 'RUNNING' AND next_index > run_start_index
       THEN (total_items - next_index) * extract(epoch FROM now() - run_start_time) / (next_index - run_start_index) END AS eta_seconds`;

type Row = Record<string, unknown>;
const num = (v: unknown) => Number(v);

export function batchFromRow(r: Row): BatchRecord {
  return {
    batchId: r.batch_id as string,
    itemType: r.item_type as string,
    state: r.state as BatchStateName,
    sourceKind: r.source_kind as 'INLINE' | 'RANGE',
    rangeStart: num(r.range_start),
    totalItems: num(r.total_items),
    chunkSize: num(r.chunk_size),
    skipLimit: num(r.skip_limit),
    retryLimit: num(r.retry_limit),
    nextIndex: num(r.next_index),
    succeededItems: num(r.succeeded_items),
    skippedItems: num(r.skipped_items),
    failedItems: num(r.failed_items),
    retriedAttempts: num(r.retried_attempts),
    runGeneration: num(r.run_generation),
    failureReason: r.failure_reason as string,
    failureDetail: r.failure_detail as string,
    requestHash: r.request_hash as string,
    traceId: r.trace_id as string,
    createTime: r.create_time as Date,
    updateTime: r.update_time as Date,
    endTime: (r.end_time as Date | null) ?? undefined,
    etaSeconds: r.eta_seconds === null || r.eta_seconds === undefined ? undefined : Math.max(0, Number(r.eta_seconds)),
  };
}

export const batchResource = (batchId: string) => `batches/${batchId}`;

const batchNotFound = (batchId: string) => notFound('BATCH_NOT_FOUND', `batch ${batchId} does not exist`, { resource: batchResource(batchId) });

export interface NewBatch {
  batchId: string;
  itemType: string;
  sourceKind: 'INLINE' | 'RANGE';
  rangeStart: number;
  totalItems: number;
  chunkSize: number;
  skipLimit: number;
  retryLimit: number;
  requestHash: string;
  principal: string;
  traceId: string;
}

export async function findBatch(tx: TenantTransaction, batchId: string, forUpdate = false): Promise<BatchRecord | undefined> {
  const [row] = await tx.query(`SELECT ${BATCH_COLUMNS} FROM batch_run WHERE batch_id = $1${forUpdate ? ' FOR UPDATE' : ''}`, [batchId]);
  return row ? batchFromRow(row) : undefined;
}

export async function getBatch(tx: TenantTransaction, batchId: string, forUpdate = false): Promise<BatchRecord> {
  const batch = await findBatch(tx, batchId, forUpdate);
  if (!batch) throw batchNotFound(batchId);
  return batch;
}

/**
 * Inserts a batch (and its inline items); returns undefined when the identity exists already
 * (a concurrent starter waits for the other's commit, then sees its row).
 */
export async function insertBatch(tx: TenantTransaction, batch: NewBatch, payloads: readonly string[] | undefined): Promise<BatchRecord | undefined> {
  const [row] = await tx.query(
    `INSERT INTO batch_run (tenant_id, batch_id, item_type, state, source_kind, range_start, total_items, chunk_size, skip_limit,
                            retry_limit, request_hash, principal, trace_id)
     VALUES ($1, $2, $3, 'RUNNING', $4, $5, $6, $7, $8, $9, $10, $11, $12)
     ON CONFLICT (tenant_id, batch_id) DO NOTHING
     RETURNING ${BATCH_COLUMNS}`,
    [tx.tenantId, batch.batchId, batch.itemType, batch.sourceKind, batch.rangeStart, batch.totalItems, batch.chunkSize, batch.skipLimit,
      batch.retryLimit, batch.requestHash, batch.principal, batch.traceId],
  );
  if (!row) return undefined;
  if (payloads && payloads.length > 0) {
    await tx.query(
      `INSERT INTO batch_item (tenant_id, batch_id, item_index, payload)
       SELECT $1, $2, ordinality - 1, payload FROM unnest($3::text[]) WITH ORDINALITY AS u(payload, ordinality)`,
      [tx.tenantId, batch.batchId, payloads],
    );
  }
  return batchFromRow(row);
}

/** Cancels a running batch; a cancelled one is returned as it is. */
export async function cancelBatch(tx: TenantTransaction, batchId: string): Promise<BatchRecord> {
  const [row] = await tx.query(
    `UPDATE batch_run SET state = 'CANCELLED', failure_reason = 'CANCELLED_BY_REQUEST', failure_detail = '',
            end_time = now(), update_time = now()
     WHERE batch_id = $1 AND state = 'RUNNING'
     RETURNING ${BATCH_COLUMNS}`,
    [batchId],
  );
  if (row) return batchFromRow(row);
  const batch = await getBatch(tx, batchId);
  if (batch.state === 'CANCELLED') return batch;
  throw failedPrecondition('BATCH_NOT_RUNNING', `batch ${batchId} is ${batch.state}, not RUNNING`, { resource: batchResource(batchId) });
}

/**
 * Makes a batch run again from its checkpoint as a new link of its chunk-job chain (the caller
 * enqueues that link's job): jobs of the old chain — a lost one, one still running — then change
 * nothing. The item that failed the batch is processed again, so its REJECTED error report goes.
 */
export async function resumeBatch(tx: TenantTransaction, batchId: string, skipLimit: number | undefined): Promise<BatchRecord> {
  const current = await getBatch(tx, batchId, true);
  if (current.state === 'SUCCEEDED') {
    throw failedPrecondition('BATCH_COMPLETED', `batch ${batchId} has completed; there is nothing to resume`, { resource: batchResource(batchId) });
  }
  const [row] = await tx.query(
    `UPDATE batch_run SET state = 'RUNNING', failure_reason = '', failure_detail = '', end_time = NULL, update_time = now(),
            skip_limit = coalesce($2, skip_limit), run_generation = run_generation + 1,
            run_start_time = CASE WHEN state = 'RUNNING' THEN run_start_time ELSE now() END,
            run_start_index = CASE WHEN state = 'RUNNING' THEN run_start_index ELSE next_index END
     WHERE batch_id = $1
     RETURNING ${BATCH_COLUMNS}`,
    [batchId, skipLimit ?? null],
  );
  await tx.query(`DELETE FROM batch_item_error WHERE batch_id = $1 AND outcome = 'REJECTED'`, [batchId]);
  return batchFromRow(row);
}

export async function listItemErrors(tx: TenantTransaction, batchId: string, afterIndex: number, limit: number): Promise<ItemErrorRecord[]> {
  const rows = await tx.query(
    `SELECT item_index, outcome, attempts, message, error_time FROM batch_item_error
     WHERE batch_id = $1 AND item_index > $2 ORDER BY item_index LIMIT $3`,
    [batchId, afterIndex, limit],
  );
  return rows.map((r) => ({
    itemIndex: num(r.item_index),
    outcome: r.outcome as ItemErrorOutcome,
    attempts: num(r.attempts),
    message: r.message as string,
    errorTime: r.error_time as Date,
  }));
}
