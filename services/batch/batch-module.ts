import { BatchServiceDefinition } from '../../gen/proto/axis/kernel/batch/v1/batch_service';
import type { CapabilityModule, KernelDependencies } from '../platform/capability-module';
import type { JobQueue } from '../platform/jobs';
import { batchService } from './batch-service';
import { CHUNK_JOB_TYPE, executeChunkJob, type ChunkJobPayload, type ChunkQueue } from './chunk-runner';

/** A job takes chunks for a ~2 s slice, but one chunk may take long (10,000 slow items); a lost node's job is rescued after its lease. */
const CHUNK_TIMEOUT_MS = 10 * 60_000;

/** Chunk jobs on the platform's job queue: enqueued in the caller's transaction, one job key per link of the batch's job chain. */
export const chunkQueue = (jobs: JobQueue): ChunkQueue => ({
  async enqueue(tx, payload, trace) {
    await jobs.enqueue(
      tx,
      {
        type: CHUNK_JOB_TYPE,
        payload,
        jobKey: `batch:${payload.batchId}:${payload.chain}`,
        maxAttempts: 25,
        timeoutMs: CHUNK_TIMEOUT_MS,
        backoffBaseMs: 200,
      },
      trace,
    );
  },
});

function chunkPayload(value: unknown): ChunkJobPayload {
  const p = value as Partial<ChunkJobPayload> | null;
  if (!p || typeof p.batchId !== 'string' || !Number.isInteger(p.chain)) {
    throw new Error(`not a batch chunk job payload: ${JSON.stringify(value)}`);
  }
  return p as ChunkJobPayload;
}

/**
 * Batch (docs/capabilities/batch.md): the BatchService and the chunk job handler every node runs. Item handlers come from
 * `deps.batchItems` (registered by code, or by KERNEL_BATCH_HANDLER_MODULES).
 */
export function batchModule(deps: KernelDependencies): CapabilityModule {
  deps.batchItems.loadModules(deps.config.KERNEL_BATCH_HANDLER_MODULES, deps.log);
  const queue = chunkQueue(deps.jobQueue);
  const runner = { db: deps.db, audit: deps.audit, handlers: deps.batchItems, queue, tracer: deps.telemetry.exporting ? deps.telemetry.tracer : undefined };
  deps.jobs.register(CHUNK_JOB_TYPE, async (job) => {
    const outcome = await executeChunkJob(runner, {
      tenantId: job.tenantId,
      payload: chunkPayload(job.payload),
      trace: job.trace,
      otel: job.otel,
      log: job.log,
      signal: job.signal,
      lastAttempt: job.attempt >= job.maxAttempts,
    });
    job.log.debug({ outcome }, 'batch chunk job');
  });
  return { definition: BatchServiceDefinition, implementation: batchService(deps.batchItems, queue) };
}
