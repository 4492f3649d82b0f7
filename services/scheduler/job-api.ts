import { randomUUID } from 'node:crypto';
import type { TenantTransaction } from '../platform/database/database';
import { NAME_PATTERN, type JobQueue, type JobSpec } from '../platform/jobs';
import { invalidArgument } from '../platform/kernel-error';
import { formatTraceparent, newSpanId, newTraceId, type TraceContext } from '../platform/trace-context';

export const JOB_DEFAULTS = { queue: 'default', maxAttempts: 25, timeoutMs: 5 * 60_000, backoffBaseMs: 1000, priority: 0 } as const;
export const MAX_PAYLOAD_BYTES = 64 * 1024;
/** How far ahead a job may be scheduled. */
export const MAX_DELAY_MS = 366 * 24 * 3600_000;
export const MAX_BACKOFF_MS = 3600_000;
const JOB_KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/** Enqueues inside the caller's tenant transaction (commits or vanishes with it). */
export async function enqueueJob(tx: TenantTransaction, spec: JobSpec, trace?: TraceContext): Promise<{ jobId: string; deduplicated: boolean }> {
  return insertJob(tx, spec, trace);
}

/** The platform's job queue (services/platform/jobs.ts), backed by the scheduler's job table. */
export const schedulerJobQueue: JobQueue = { enqueue: enqueueJob };

/** A job fired by a schedule tick (the scheduler's own use). */
export interface ScheduledJobSpec extends JobSpec {
  jobId?: string;
  scheduleId?: string;
  tickTime?: Date;
}

export async function insertJob(tx: TenantTransaction, spec: ScheduledJobSpec, trace?: TraceContext): Promise<{ jobId: string; deduplicated: boolean }> {
  const job = validateJobSpec(spec);
  const context = trace ?? { traceId: newTraceId(), spanId: newSpanId(), sampled: true };
  const jobId = spec.jobId ?? uuidv7();
  const inserted = await tx.query<{ job_id: string }>(
    `INSERT INTO scheduler_job (tenant_id, job_id, queue, type, payload, priority, run_at, max_attempts, backoff_base_ms, timeout_ms,
                                job_key, active_job_key, traceparent, trace_id, schedule_id, tick_time)
     VALUES ($1, $2, $3, $4, $5, $6, coalesce($7::timestamptz, now()), $8, $9, $10, $11, $11, $12, $13, $14, $15)
     ON CONFLICT (tenant_id, active_job_key) WHERE active_job_key IS NOT NULL DO NOTHING
     RETURNING job_id`,
    [
      tx.tenantId,
      jobId,
      job.queue,
      job.type,
      job.payloadJson,
      job.priority,
      job.runAt ?? null,
      job.maxAttempts,
      job.backoffBaseMs,
      job.timeoutMs,
      job.jobKey ?? null,
      formatTraceparent(context),
      context.traceId,
      spec.scheduleId ?? null,
      spec.tickTime ?? null,
    ],
  );
  if (inserted.length > 0) return { jobId, deduplicated: false };
  const [existing] = await tx.query<{ job_id: string }>(
    'SELECT job_id FROM scheduler_job WHERE tenant_id = $1 AND active_job_key = $2',
    [tx.tenantId, job.jobKey],
  );
  // The holder finished between the conflict and this read (rare): try once more.
  if (!existing) return insertJob(tx, spec, trace);
  return { jobId: existing.job_id, deduplicated: true };
}

export interface ValidJob {
  queue: string;
  type: string;
  payloadJson: string;
  runAt?: Date;
  priority: number;
  maxAttempts: number;
  jobKey?: string;
  timeoutMs: number;
  backoffBaseMs: number;
}

const fieldError = (field: string, description: string, reason = 'FIELD_INVALID') =>
  invalidArgument(reason, `invalid job: ${field}: ${description}`, [{ field, description }]);

/**
 * How validateJobSpec names a field it refuses in BadRequest: by default the JobSpec's own
 * names in snake_case (the in-process API); the gRPC adapter passes the request's field paths
 * (`job.job_type`, `job.run_time`, `schedule.timeout`, …).
 */
export interface JobFieldNames {
  queue: string;
  type: string;
  payload: string;
  runAt: string;
  priority: string;
  maxAttempts: string;
  jobKey: string;
  timeoutMs: string;
  backoffBaseMs: string;
}
export const JOB_SPEC_FIELDS: JobFieldNames = {
  queue: 'queue',
  type: 'type',
  payload: 'payload',
  runAt: 'run_at',
  priority: 'priority',
  maxAttempts: 'max_attempts',
  jobKey: 'job_key',
  timeoutMs: 'timeout_ms',
  backoffBaseMs: 'backoff_base_ms',
};

const intIn = (value: number | undefined, fallback: number, field: string, min: number, max: number): number => {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) throw fieldError(field, `must be an integer in ${min}..${max}`);
  return value;
};

/** Checks a job spec; throws INVALID_ARGUMENT (FIELD_INVALID, PAYLOAD_TOO_LARGE, RUN_TIME_OUT_OF_RANGE, PAYLOAD_INVALID). */
export function validateJobSpec(spec: JobSpec, options: { now?: number; fields?: JobFieldNames } = {}): ValidJob {
  const now = options.now ?? Date.now();
  const f = options.fields ?? JOB_SPEC_FIELDS;
  const queue = spec.queue ?? JOB_DEFAULTS.queue;
  if (typeof queue !== 'string' || !NAME_PATTERN.test(queue)) throw fieldError(f.queue, 'must be 1–100 characters of [a-z0-9._:-], starting with a letter or digit');
  if (typeof spec.type !== 'string' || !NAME_PATTERN.test(spec.type)) throw fieldError(f.type, 'must be 1–100 characters of [a-z0-9._:-], starting with a letter or digit');
  let payloadJson: string | undefined;
  try {
    payloadJson = JSON.stringify(spec.payload ?? null);
  } catch {
    payloadJson = undefined;
  }
  if (payloadJson === undefined) throw fieldError(f.payload, 'must be JSON-serialisable', 'PAYLOAD_INVALID');
  // PostgreSQL jsonb refuses NUL characters.
  if (payloadJson.includes('\\u0000')) throw fieldError(f.payload, 'must not contain NUL characters', 'PAYLOAD_INVALID');
  if (Buffer.byteLength(payloadJson) > MAX_PAYLOAD_BYTES) throw fieldError(f.payload, `at most ${MAX_PAYLOAD_BYTES} bytes of JSON`, 'PAYLOAD_TOO_LARGE');
  let runAt: Date | undefined;
  if (spec.runAt !== undefined) {
    const ms = spec.runAt instanceof Date ? spec.runAt.getTime() : Number.NaN;
    if (!Number.isFinite(ms) || ms > now + MAX_DELAY_MS || ms < now - MAX_DELAY_MS) {
      throw fieldError(f.runAt, 'must be a valid time within one year of now', 'RUN_TIME_OUT_OF_RANGE');
    }
    runAt = spec.runAt;
  }
  const jobKey = spec.jobKey;
  if (jobKey !== undefined && (typeof jobKey !== 'string' || !JOB_KEY_PATTERN.test(jobKey))) throw fieldError(f.jobKey, '1–255 visible ASCII characters');
  return {
    queue,
    type: spec.type,
    payloadJson,
    runAt,
    priority: intIn(spec.priority, JOB_DEFAULTS.priority, f.priority, -1000, 1000),
    maxAttempts: intIn(spec.maxAttempts, JOB_DEFAULTS.maxAttempts, f.maxAttempts, 1, 100),
    jobKey,
    timeoutMs: intIn(spec.timeoutMs, JOB_DEFAULTS.timeoutMs, f.timeoutMs, 10, 24 * 3600_000),
    backoffBaseMs: intIn(spec.backoffBaseMs, JOB_DEFAULTS.backoffBaseMs, f.backoffBaseMs, 1, MAX_BACKOFF_MS),
  };
}

/** A time-ordered UUID (version 7): job ids sort by creation, so the primary key serves newest-first listing. */
export function uuidv7(): string {
  // randomUUID draws from Node's cached entropy pool (cheaper than randomBytes per call); its
  // first 48 bits become the millisecond timestamp and the version nibble becomes 7.
  const random = randomUUID();
  const ms = Date.now().toString(16).padStart(12, '0');
  return `${ms.slice(0, 8)}-${ms.slice(8, 12)}-7${random.slice(15, 18)}${random.slice(18)}`;
}

/** Exponential backoff with jitter: base·2^(attempt-1), capped at 1 h, times a factor in [0.5, 1.5). */
export function retryDelayMs(attempt: number, baseMs: number, random = Math.random): number {
  const exponential = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.min(30, Math.max(0, attempt - 1)));
  return Math.round(exponential * (0.5 + random()));
}
