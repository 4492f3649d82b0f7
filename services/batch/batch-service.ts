import { createHash } from 'node:crypto';
import { z } from 'zod';
import { BatchState, ItemOutcome, type Batch, type BatchItemError, type BatchProgress } from '../../gen/proto/axis/kernel/batch/v1/batch';
import type { BatchServiceImplementation } from '../../gen/proto/axis/kernel/batch/v1/batch_service';
import type { KernelCallContext } from '../platform/call-context';
import { alreadyExists, failedPrecondition } from '../platform/kernel-error';
import { paginate } from '../platform/page-token';
import { protoEnum } from '../platform/proto-enum';
import { parseRequest } from '../platform/request-validation';
import {
  batchResource,
  cancelBatch,
  getBatch,
  insertBatch,
  listItemErrors,
  resumeBatch,
  type BatchRecord,
  type BatchStateName,
  type ItemErrorRecord,
} from './batch-store';
import type { ChunkQueue } from './chunk-runner';
import type { BatchItemHandlers } from '../platform/batch-items';
import { abortableSleep } from '../platform/abortable-sleep';

/** Size limits of StartBatch (inline items must also fit the 4 MiB gRPC message limit). */
export const BATCH_LIMITS = {
  maxInlineItems: 10_000,
  maxInlinePayloadBytes: 4096,
  maxInlineTotalBytes: 1024 * 1024,
  maxRangeCount: 10_000_000,
  maxChunkSize: 10_000,
  defaultChunkSize: 500,
  maxSkipLimit: 1_000_000_000,
  maxRetryLimit: 20,
} as const;

const batchId = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'must be 1–128 characters of [A-Za-z0-9._:-]');
const itemType = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,99}$/, 'must be 1–100 characters of [a-z0-9._-], starting with a letter or digit');
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** StartBatch: the batch's settable fields (the others are output only and ignored) and the items. */
const startSchema = z
  .object({
    batch: z
      .object({
        batchId,
        itemType,
        chunkSize: z
          .number()
          .int()
          .refine((n) => n >= 0 && n <= BATCH_LIMITS.maxChunkSize, { message: `must be 1–${BATCH_LIMITS.maxChunkSize} (0 means ${BATCH_LIMITS.defaultChunkSize})`, params: { reason: 'CHUNK_SIZE_INVALID' } })
          .transform((n) => n || BATCH_LIMITS.defaultChunkSize),
        skipLimit: z.number().int().min(0, 'must be ≥ 0').max(BATCH_LIMITS.maxSkipLimit, `must be ≤ ${BATCH_LIMITS.maxSkipLimit}`),
        retryLimit: z.number().int().min(0, 'must be ≥ 0').max(BATCH_LIMITS.maxRetryLimit, `must be ≤ ${BATCH_LIMITS.maxRetryLimit}`),
      })
      .optional()
      .refine((b) => b !== undefined, 'required')
      .transform((b) => b!),
    items: z.union([
      z.object({ $case: z.literal('inlineItems'), value: z.object({ payloads: z.array(z.string()) }) }),
      z.object({ $case: z.literal('range'), value: z.object({ start: z.number().int(), count: z.number().int() }) }),
      z.undefined(),
    ]),
  })
  .superRefine((r, ctx) => {
    const items = r.items;
    if (!items || (items.$case === 'inlineItems' && items.value.payloads.length === 0)) {
      ctx.addIssue({ code: 'custom', path: ['items'], message: 'inline_items (at least one) or range is required', params: { reason: 'ITEMS_MISSING' } });
      return;
    }
    if (items.$case === 'range') {
      const { start, count } = items.value;
      if (count < 1 || count > BATCH_LIMITS.maxRangeCount) {
        ctx.addIssue({ code: 'custom', path: ['range', 'count'], message: `must be 1–${BATCH_LIMITS.maxRangeCount}`, params: { reason: 'TOO_MANY_ITEMS' } });
      } else if (Math.abs(start) > MAX_SAFE - count) {
        ctx.addIssue({ code: 'custom', path: ['range', 'start'], message: 'start + count must stay within ±2^53', params: { reason: 'FIELD_INVALID' } });
      }
      return;
    }
    const payloads = items.value.payloads;
    if (payloads.length > BATCH_LIMITS.maxInlineItems) {
      ctx.addIssue({ code: 'custom', path: ['inline_items', 'payloads'], message: `at most ${BATCH_LIMITS.maxInlineItems} inline items (use a range source for more)`, params: { reason: 'TOO_MANY_ITEMS' } });
      return;
    }
    let total = 0;
    for (let i = 0; i < payloads.length; i += 1) {
      const bytes = Buffer.byteLength(payloads[i]);
      total += bytes;
      if (bytes > BATCH_LIMITS.maxInlinePayloadBytes) {
        ctx.addIssue({ code: 'custom', path: ['inline_items', 'payloads', i], message: `at most ${BATCH_LIMITS.maxInlinePayloadBytes} bytes`, params: { reason: 'ITEMS_TOO_LARGE' } });
        return;
      }
    }
    if (total > BATCH_LIMITS.maxInlineTotalBytes) {
      ctx.addIssue({ code: 'custom', path: ['inline_items', 'payloads'], message: `at most ${BATCH_LIMITS.maxInlineTotalBytes} bytes in all`, params: { reason: 'ITEMS_TOO_LARGE' } });
    }
  });

const getSchema = z.object({ batchId });
const watchSchema = z.object({
  batchId,
  pollInterval: z
    .object({ seconds: z.number(), nanos: z.number() })
    .transform((d) => d.seconds * 1000 + d.nanos / 1e6)
    .pipe(z.number().min(50, 'at least 50 ms').max(60_000, 'at most 60 s'))
    .optional(),
});
const listErrorsSchema = z.object({ batchId, pageSize: z.number(), pageToken: z.string().max(1000) });
const resumeSchema = z.object({
  batchId,
  skipLimit: z.number().int().min(0, 'must be ≥ 0').max(BATCH_LIMITS.maxSkipLimit, `must be ≤ ${BATCH_LIMITS.maxSkipLimit}`).optional(),
});

const batchStates = protoEnum<BatchStateName, BatchState>({
  RUNNING: BatchState.BATCH_STATE_RUNNING,
  SUCCEEDED: BatchState.BATCH_STATE_SUCCEEDED,
  FAILED: BatchState.BATCH_STATE_FAILED,
  CANCELLED: BatchState.BATCH_STATE_CANCELLED,
});
const itemOutcomes = protoEnum<ItemErrorRecord['outcome'], ItemOutcome>({
  SKIPPED: ItemOutcome.ITEM_OUTCOME_SKIPPED,
  FAILED: ItemOutcome.ITEM_OUTCOME_FAILED,
  REJECTED: ItemOutcome.ITEM_OUTCOME_REJECTED,
});

export function batchMessage(b: BatchRecord): Batch {
  return {
    batchId: b.batchId,
    itemType: b.itemType,
    state: batchStates.toProto(b.state),
    chunkSize: b.chunkSize,
    skipLimit: b.skipLimit,
    retryLimit: b.retryLimit,
    totalItems: b.totalItems,
    processedItems: b.nextIndex,
    succeededItems: b.succeededItems,
    skippedItems: b.skippedItems,
    failedItems: b.failedItems,
    retriedAttempts: b.retriedAttempts,
    failureReason: b.failureReason,
    failureDetail: b.failureDetail,
    traceId: b.traceId,
    createTime: b.createTime,
    updateTime: b.updateTime,
    endTime: b.endTime,
  };
}

export function progressMessage(b: BatchRecord): BatchProgress {
  const eta = b.etaSeconds === undefined ? undefined : { seconds: Math.floor(b.etaSeconds), nanos: Math.round((b.etaSeconds % 1) * 1e9) % 1e9 };
  return {
    batchId: b.batchId,
    state: batchStates.toProto(b.state),
    totalItems: b.totalItems,
    processedItems: b.nextIndex,
    succeededItems: b.succeededItems,
    skippedItems: b.skippedItems,
    failedItems: b.failedItems,
    eta,
    failureReason: b.failureReason,
    updateTime: b.updateTime,
  };
}

function itemErrorMessage(e: ItemErrorRecord): BatchItemError {
  return { itemIndex: e.itemIndex, outcome: itemOutcomes.toProto(e.outcome), attempts: e.attempts, message: e.message, errorTime: e.errorTime };
}

/** What identifies a StartBatch request: the same identity with another request is refused. */
function requestHash(r: z.output<typeof startSchema>): string {
  const b = r.batch;
  const hash = createHash('sha256').update(JSON.stringify([b.itemType, b.chunkSize, b.skipLimit, b.retryLimit, r.items!.$case]));
  if (r.items!.$case === 'range') hash.update(JSON.stringify([r.items!.value.start, r.items!.value.count]));
  else for (const p of r.items!.value.payloads) hash.update(`\0${Buffer.byteLength(p)}:`).update(p);
  return hash.digest('hex');
}


/**
 * Batch (docs/capabilities/batch.md) over gRPC. StartBatch, CancelBatch and ResumeBatch change the database only (they run
 * in the group committer and may be re-run); chunk jobs they enqueue commit with them.
 */
export function batchService(handlers: BatchItemHandlers, queue: ChunkQueue): BatchServiceImplementation<KernelCallContext> {
  return {
    async startBatch(request, ctx) {
      const parsed = parseRequest(startSchema, request);
      const input = parsed.batch;
      await handlers.ready();
      if (!handlers.get(input.itemType)) {
        throw failedPrecondition('ITEM_HANDLER_UNKNOWN', `no batch item handler of type ${input.itemType} is registered`, { item_type: input.itemType });
      }
      const items = parsed.items!;
      const payloads = items.$case === 'inlineItems' ? items.value.payloads : undefined;
      const hash = requestHash(parsed);
      const { batch, existed } = await ctx.unitOfWork.run(async (tx) => {
        const inserted = await insertBatch(
          tx,
          {
            batchId: input.batchId,
            itemType: input.itemType,
            sourceKind: payloads ? 'INLINE' : 'RANGE',
            rangeStart: items.$case === 'range' ? items.value.start : 0,
            totalItems: payloads ? payloads.length : (items.value as { count: number }).count,
            chunkSize: input.chunkSize,
            skipLimit: input.skipLimit,
            retryLimit: input.retryLimit,
            requestHash: hash,
            principal: ctx.principal.subject,
            traceId: ctx.trace.traceId,
          },
          payloads,
        );
        if (inserted) {
          await queue.enqueue(tx, { batchId: inserted.batchId, chain: inserted.runGeneration }, ctx.trace);
          return { batch: inserted, existed: false };
        }
        const existing = await getBatch(tx, input.batchId);
        if (existing.requestHash !== hash) {
          throw alreadyExists('BATCH_EXISTS', `batch ${input.batchId} exists with a different request`, { resource: batchResource(input.batchId) });
        }
        return { batch: existing, existed: true };
      });
      ctx.unitOfWork.describeChange(batchResource(batch.batchId), { item_type: batch.itemType, total_items: batch.totalItems, already_existed: existed });
      return { batch: batchMessage(batch), alreadyExisted: existed };
    },

    async getBatch(request, ctx) {
      const input = parseRequest(getSchema, request);
      return { batch: batchMessage(await ctx.unitOfWork.run((tx) => getBatch(tx, input.batchId))) };
    },

    async *watchBatch(request, ctx) {
      const input = parseRequest(watchSchema, request);
      const interval = input.pollInterval ?? 500;
      let last = '';
      for (;;) {
        const batch = await ctx.unitOfWork.run((tx) => getBatch(tx, input.batchId));
        const key = `${batch.state}|${batch.nextIndex}|${batch.failureReason}`;
        if (key !== last) {
          last = key;
          yield { progress: progressMessage(batch) };
        }
        if (batch.state !== 'RUNNING' || ctx.signal.aborted) return;
        await abortableSleep(interval, ctx.signal);
        if (ctx.signal.aborted) return;
      }
    },

    async listBatchItemErrors(request, ctx) {
      const input = parseRequest(listErrorsSchema, request);
      const { items, nextPageToken } = await paginate(ctx, request, {
        position: z.number().int().min(0),
        fetch: (after, limit) =>
          ctx.unitOfWork.run(async (tx) => {
            await getBatch(tx, input.batchId);
            return listItemErrors(tx, input.batchId, after ?? -1, limit);
          }),
        positionOf: (error) => error.itemIndex,
      });
      return { errors: items.map(itemErrorMessage), nextPageToken };
    },

    async cancelBatch(request, ctx) {
      const input = parseRequest(getSchema, request);
      const batch = await ctx.unitOfWork.run((tx) => cancelBatch(tx, input.batchId));
      ctx.unitOfWork.describeChange(batchResource(batch.batchId), { state: batch.state, checkpoint: batch.nextIndex });
      return { batch: batchMessage(batch) };
    },

    async resumeBatch(request, ctx) {
      const input = parseRequest(resumeSchema, request);
      const batch = await ctx.unitOfWork.run(async (tx) => {
        const resumed = await resumeBatch(tx, input.batchId, input.skipLimit);
        await queue.enqueue(tx, { batchId: resumed.batchId, chain: resumed.runGeneration }, ctx.trace);
        return resumed;
      });
      ctx.unitOfWork.describeChange(batchResource(batch.batchId), { state: batch.state, checkpoint: batch.nextIndex, generation: batch.runGeneration });
      return { batch: batchMessage(batch) };
    },
  };
}

