import path from 'node:path';
import type { Context as OtelContext } from '@opentelemetry/api';
import type { Database, TenantTransaction } from './database/database';
import type { Logger } from './observability/logger';
import type { TraceContext } from './trace-context';

/**
 * The job API capabilities share: they enqueue jobs inside their own tenant transaction and
 * register handlers by code; the scheduler capability runs them (it implements JobQueue over its
 * job table, the composition root wires it in). Delivery is AT LEAST ONCE: a handler may run again
 * after a crash, a lease loss or a timeout, so it must be idempotent per job (use the job id or a
 * checkpoint in the same transaction as its effects).
 */
export interface JobSpec {
  queue?: string; // default 'default'
  type: string; // handler type, e.g. 'kernel.batch.chunk'
  payload: unknown; // JSON-serialisable, at most MAX_PAYLOAD_BYTES
  runAt?: Date;
  priority?: number; // higher runs first (within a tenant); -1000..1000
  maxAttempts?: number; // default 25, 1..100
  jobKey?: string; // de-duplication key (per tenant): while a job with this key is queued or running, enqueue returns it
  timeoutMs?: number; // default 5 minutes, at most 24 h
  /** First retry delay; attempt n waits backoffBaseMs·2^(n-1) (capped at 1 h) with ±50 % jitter. Default 1000. */
  backoffBaseMs?: number;
}


/** Job types and queue names: 1–100 characters of [a-z0-9._:-], starting with a letter or digit. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9._:-]{0,99}$/;

/** Enqueues jobs in the caller's tenant transaction (they commit or vanish with it). */
export interface JobQueue {
  enqueue(tx: TenantTransaction, spec: JobSpec, trace?: TraceContext): Promise<{ jobId: string; deduplicated: boolean }>;
}

export interface JobExecution {
  readonly tenantId: string;
  readonly jobId: string;
  readonly type: string;
  readonly payload: unknown;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly trace: TraceContext; // the enqueuer's trace (a child span of it)
  /** The job span's OpenTelemetry context: pass it as `{ trace: job.otel }` to db.inTenantTransaction so statements are its children. */
  readonly otel: OtelContext;
  /** The W3C traceparent for requests the job sends out (webhooks, providers): the receiver continues the trace. */
  readonly traceparent: string;
  readonly log: Logger; // carries trace_id, tenant, job id
  readonly signal: AbortSignal; // aborted on timeout, lease loss or shutdown
  readonly db: Database; // run tenant work with db.inTenantTransaction(tenantId, …)
}

export type JobHandler = (job: JobExecution) => Promise<void>; // throw ⇒ attempt failed

export interface JobHandlerRegistry {
  register(type: string, handler: JobHandler): void;
}

/**
 * The node's handlers by job type, registered by code: in-process (`kernel.jobs.register(...)` on
 * a RunningKernel) or by modules named in KERNEL_JOB_HANDLER_MODULES, each exporting
 * `registerJobHandlers(registry)`. Registering a type twice is a programming error.
 */
export class JobHandlers implements JobHandlerRegistry {
  private readonly handlers = new Map<string, JobHandler>();

  register(type: string, handler: JobHandler): void {
    if (!NAME_PATTERN.test(type)) throw new Error(`job type ${JSON.stringify(type)} must match ${NAME_PATTERN}`);
    if (this.handlers.has(type)) throw new Error(`a handler for job type ${type} is already registered`);
    this.handlers.set(type, handler);
  }

  get(type: string): JobHandler | undefined {
    return this.handlers.get(type);
  }

  types(): string[] {
    return [...this.handlers.keys()];
  }

  /**
   * Imports modules (comma-separated paths) and lets each register its handlers. The node starts
   * only once they are loaded — a job must never be claimed by a node still missing its handler —
   * and does not start at all when one fails (a loud start-up error, not jobs failing later).
   */
  async loadModules(paths: string | undefined, log: Logger): Promise<void> {
    for (const file of (paths ?? '').split(',').map((p) => p.trim()).filter(Boolean)) {
      const module = (await import(path.resolve(file))) as Record<string, unknown>;
      const register = (module.registerJobHandlers ?? (module.default as Record<string, unknown> | undefined)?.registerJobHandlers) as
        | ((registry: JobHandlerRegistry) => void | Promise<void>)
        | undefined;
      if (typeof register !== 'function') throw new Error(`${file} (KERNEL_JOB_HANDLER_MODULES) exports no registerJobHandlers(registry)`);
      await register(this);
      log.info({ module: file }, 'job handler module loaded');
    }
  }
}
