/*
 * Job and batch item handlers a spawned kernel loads (KERNEL_JOB_HANDLER_MODULES,
 * KERNEL_BATCH_HANDLER_MODULES) for the telemetry proofs (tests/evi/evi044-telemetry.spec.ts):
 * a job that reads the database and calls out to EVI044_HOOK_URL with the job's traceparent, as
 * a webhook delivery does, and a batch item that runs one statement.
 */
import type { BatchItemHandlers } from '../../services/platform/batch-items';
import type { JobHandlerRegistry } from '../../services/platform/jobs';

export function registerJobHandlers(registry: JobHandlerRegistry): void {
  registry.register('evi044.callout', async (job) => {
    await job.db.inTenantTransaction(job.tenantId, (tx) => tx.query('SELECT count(*) FROM scheduler_job'), { trace: job.otel });
    const url = process.env.EVI044_HOOK_URL;
    if (!url) throw new Error('EVI044_HOOK_URL is not set');
    const response = await fetch(url, {
      method: 'POST',
      headers: { traceparent: job.traceparent, 'content-type': 'application/json' },
      body: JSON.stringify({ job: job.jobId }),
      signal: job.signal,
    });
    if (!response.ok) throw new Error(`the hook answered ${response.status}`);
  });
}

export function registerBatchItemHandlers(handlers: BatchItemHandlers): void {
  handlers.register('evi044.item', async (_item, ctx) => {
    await ctx.tx.query('SELECT 1');
  });
}
