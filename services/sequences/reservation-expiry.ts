import type { Database } from '../platform/database/database';
import type { Logger } from '../platform/observability/logger';
import { newTraceId } from '../platform/trace-context';

/**
 * Voids lapsed reservations (reason RESERVATION_EXPIRED) across all tenants, with one audit
 * entry each, via the SECURITY DEFINER function sequence_expire_reservations. It runs as the
 * the kernel's system job `kernel.sequences.expire-reservations` (docs/capabilities/scheduler.md#system-jobs: one node per tick;
 * declared in sequences-module.ts); SKIP LOCKED keeps overlapping runs apart.
 */
export async function expireReservations(db: Database, log: Logger, batchSize = 500): Promise<number> {
  let total = 0;
  for (;;) {
    const traceId = newTraceId();
    const [row] = await db.asSystem((sql) =>
      sql.query<{ n: number }>('SELECT sequence_expire_reservations($1, $2) AS n', [batchSize, traceId]),
    );
    total += row.n;
    if (row.n > 0) log.info({ trace_id: traceId, expired: row.n }, 'voided expired reservations');
    if (row.n < batchSize) return total;
  }
}
