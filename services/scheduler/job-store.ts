import type { TenantTransaction } from '../platform/database/database';
import { failedPrecondition, notFound } from '../platform/kernel-error';

export type JobStateName = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'DEAD' | 'CANCELLED';

/** A scheduler_job row as read by the RPCs. */
export interface JobRow {
  tenant_id: string;
  job_id: string;
  queue: string;
  type: string;
  payload: unknown;
  priority: number;
  run_at: Date;
  state: JobStateName;
  attempt: number;
  max_attempts: number;
  backoff_base_ms: number;
  timeout_ms: number;
  job_key: string | null;
  schedule_id: string | null;
  trace_id: string;
  lease_token: string | null;
  lease_expire_time: Date | null;
  errors: Array<{ attempt: number; error: string; time: string; retry_at?: string }>;
  last_error: string | null;
  create_time: Date;
  start_time: Date | null;
  finish_time: Date | null;
}

const jobNotFound = (jobId: string) => notFound('JOB_NOT_FOUND', `job ${jobId} does not exist`, { resource: `jobs/${jobId}` });
const leaseLost = (jobId: string) =>
  failedPrecondition('LEASE_LOST', 'the lease token is not the current lease of this running job (it expired, moved on, or the job finished)', {
    resource: `jobs/${jobId}`,
  });

export async function findJob(tx: TenantTransaction, jobId: string): Promise<JobRow> {
  const [row] = await tx.query<JobRow>('SELECT * FROM scheduler_job WHERE tenant_id = $1 AND job_id = $2', [tx.tenantId, jobId]);
  if (!row) throw jobNotFound(jobId);
  return row;
}

/** Newest first (job ids are UUIDv7, time-ordered): the primary key serves the order. */
export async function listJobs(tx: TenantTransaction, state: JobStateName | undefined, afterJobId: string | undefined, limit: number): Promise<JobRow[]> {
  return tx.query<JobRow>(
    `SELECT * FROM scheduler_job WHERE tenant_id = $1 AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR job_id < $3)
     ORDER BY job_id DESC LIMIT $4`,
    [tx.tenantId, state ?? null, afterJobId ?? null, limit],
  );
}

export async function cancelJob(tx: TenantTransaction, jobId: string): Promise<JobRow> {
  const [row] = await tx.query<JobRow>(
    `UPDATE scheduler_job SET state = 'CANCELLED', finish_time = now(), active_job_key = NULL
     WHERE tenant_id = $1 AND job_id = $2 AND state = 'QUEUED' RETURNING *`,
    [tx.tenantId, jobId],
  );
  if (row) return row;
  const existing = await findJob(tx, jobId);
  throw failedPrecondition('JOB_NOT_CANCELLABLE', `job ${jobId} is ${existing.state}; only a queued job can be cancelled`, { resource: `jobs/${jobId}` });
}

/** Leases ready jobs of one queue of the tenant to a remote worker (SKIP LOCKED, fresh fencing tokens). */
export async function leaseJobs(
  tx: TenantTransaction,
  request: { queue: string; types: string[]; maxJobs: number; leaseMs: number; workerId: string },
): Promise<JobRow[]> {
  return tx.query<JobRow>(
    `WITH picked AS (
       SELECT job_id FROM scheduler_job
       WHERE tenant_id = $1 AND state = 'QUEUED' AND queue = $2 AND run_at <= now() AND (cardinality($3::text[]) = 0 OR type = ANY ($3::text[]))
       ORDER BY priority DESC, run_at, job_id LIMIT $4 FOR UPDATE SKIP LOCKED
     )
     UPDATE scheduler_job j
     SET state = 'RUNNING', attempt = j.attempt + 1, lease_token = nextval('scheduler_lease_token_seq'), lease_owner = $5,
         lease_expire_time = now() + make_interval(secs => $6 / 1000.0), start_time = now()
     FROM picked WHERE j.tenant_id = $1 AND j.job_id = picked.job_id
     RETURNING j.*`,
    [tx.tenantId, request.queue, request.types, request.maxJobs, request.workerId, request.leaseMs],
  );
}

/** Gives back leases that never reached their worker: QUEUED again, the attempt not counted. */
export async function releaseLeases(tx: TenantTransaction, jobs: ReadonlyArray<Pick<JobRow, 'job_id' | 'lease_token'>>): Promise<void> {
  await tx.query(
    `UPDATE scheduler_job j SET state = 'QUEUED', attempt = j.attempt - 1, lease_owner = NULL, lease_expire_time = NULL, start_time = NULL
       FROM unnest($2::text[], $3::bigint[]) AS d(job_id, token)
      WHERE j.tenant_id = $1 AND j.job_id = d.job_id AND j.lease_token = d.token AND j.state = 'RUNNING'`,
    [tx.tenantId, jobs.map((j) => j.job_id), jobs.map((j) => j.lease_token)],
  );
}

export async function heartbeat(tx: TenantTransaction, jobId: string, token: number, leaseMs: number): Promise<Date> {
  const [row] = await tx.query<{ lease_expire_time: Date }>(
    `UPDATE scheduler_job SET lease_expire_time = now() + make_interval(secs => $4 / 1000.0)
     WHERE tenant_id = $1 AND job_id = $2 AND lease_token = $3 AND state = 'RUNNING' RETURNING lease_expire_time`,
    [tx.tenantId, jobId, token, leaseMs],
  );
  if (row) return row.lease_expire_time;
  await findJob(tx, jobId);
  throw leaseLost(jobId);
}

export async function completeJob(tx: TenantTransaction, jobId: string, token: number): Promise<JobRow> {
  const [row] = await tx.query<JobRow>(
    `UPDATE scheduler_job SET state = 'SUCCEEDED', finish_time = now(), active_job_key = NULL, lease_expire_time = NULL
     WHERE tenant_id = $1 AND job_id = $2 AND lease_token = $3 AND state = 'RUNNING' RETURNING *`,
    [tx.tenantId, jobId, token],
  );
  if (row) return row;
  await findJob(tx, jobId);
  throw leaseLost(jobId);
}

/** Records a failed attempt (SECURITY DEFINER scheduler_fail_job: retry or dead letter + audit event). */
export async function failJob(tx: TenantTransaction, jobId: string, token: number, error: string, retryDelayMs: number, traceId: string): Promise<JobRow> {
  const [row] = await tx.query<{ state: string | null }>('SELECT scheduler_fail_job($1, $2, $3, $4, $5, $6) AS state', [
    tx.tenantId,
    jobId,
    token,
    error,
    retryDelayMs,
    traceId,
  ]);
  if (row.state === null) {
    await findJob(tx, jobId);
    throw leaseLost(jobId);
  }
  return findJob(tx, jobId);
}
