import type { KernelDependencies, SystemJob } from '../platform/capability-module';

/** Records per statement, and statements per run: a run never holds locks long nor runs unbounded. */
const BATCH = 5000;
const MAX_BATCHES_PER_RUN = 20;

/**
 * The idempotency store's retention (docs/laws.md#law-5): records past their expire_time (the configured
 * KERNEL_IDEMPOTENCY_RETENTION_HOURS after the call) are deleted by the SECURITY DEFINER function
 * kernel_idempotency_sweep, which walks the index on expire_time in bounded batches (ORDER BY
 * expire_time LIMIT n; prisma/migrations/20261207120000_traffic) — never a full scan. A system job of the scheduler
 * (`kernel.platform.idempotency-sweep`, one node per tick), counted in
 * idempotency_records_swept_total.
 */
export function idempotencySweep(deps: Pick<KernelDependencies, 'metrics'>): SystemJob {
  return {
    name: 'kernel.platform.idempotency-sweep',
    everySeconds: 30,
    run: async (job) => {
      for (let i = 0; i < MAX_BATCHES_PER_RUN; i++) {
        const [row] = await job.db.asSystem((sql) => sql.query<{ n: number }>('SELECT kernel_idempotency_sweep($1) AS n', [BATCH]));
        if (row.n > 0) deps.metrics.increment('idempotency_records_swept_total', {}, row.n);
        if (row.n < BATCH) return;
      }
    },
  };
}
