import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { context as otelContext, SpanKind, SpanStatusCode, trace as otelTrace, TraceFlags, type Context as OtelContext, type Span, type Tracer } from '@opentelemetry/api';
import type { Database } from '../platform/database/database';
import type { NotificationHub } from '../platform/database/notification-hub';
import type { Logger } from '../platform/observability/logger';
import type { Metrics } from '../platform/observability/metrics';
import { withSpanIds, type Telemetry } from '../platform/observability/telemetry';
import { PeriodicTask } from '../platform/periodic-task';
import { continueTrace, formatTraceparent, type TraceContext } from '../platform/trace-context';
import type { JobExecution, JobHandlers } from '../platform/jobs';
import { retryDelayMs } from './job-api';
import { fireDueSchedule } from './schedules';

export const JOBS_CHANNEL = 'axis_scheduler_jobs';

export interface SchedulerOptions {
  db: Database;
  log: Logger;
  metrics: Metrics;
  /** Job execution spans continue the enqueuer's trace (exported when the node exports). */
  telemetry: Telemetry;
  notifications: NotificationHub;
  handlers: JobHandlers;
  /** Jobs run at once by this node's in-process workers. */
  concurrency: number;
  /** Jobs leased ahead into the node's local queue (≥ concurrency): fewer, larger claims. */
  prefetch: number;
  /** Lease of an in-process job; one batched heartbeat renews every held lease each third of it. */
  leaseMs: number;
  /** Claim poll interval when no notification arrives (delayed jobs, missed notifications). */
  pollMs: number;
  /** How often due cron schedules are looked for. */
  cronMs: number;
  /** Finished jobs older than this are deleted. */
  retentionSeconds: number;
}

/** A claimed job as scheduler_claim_jobs returns it. */
export interface ClaimedJob {
  tenant_id: string;
  job_id: string;
  queue: string;
  type: string;
  payload: unknown;
  attempt: number;
  max_attempts: number;
  backoff_base_ms: number;
  timeout_ms: number;
  traceparent: string;
  lease_token: string;
}

const CLAIMED_COLUMNS = 'tenant_id, job_id, queue, type, payload, attempt, max_attempts, backoff_base_ms, timeout_ms, traceparent, lease_token';

/**
 * Scheduler bookkeeping runs as one system statement per round trip (Database.systemCall).
 *
 * `asyncCommit` (completions, lease renewals and releases only) commits without waiting for the
 * WAL flush: a crash of PostgreSQL itself can lose the last few hundred milliseconds of that
 * bookkeeping, which only means a job runs again — the at-least-once contract every handler
 * already has (a lost completion leaves the job RUNNING until its lease is rescued; the fencing
 * token refuses the stale holder). Claims commit durably: a fencing token handed to a worker must
 * never be handed out again, and a lost claim would let the token sequence rewind after a crash.
 * Enqueues, failures, dead letters and cron ticks always commit synchronously.
 */
function systemCall<Row>(db: Database, text: string, params: readonly unknown[], options: { asyncCommit?: boolean } = {}): Promise<Row[]> {
  return db.systemCall<Row>(text, params, options);
}

interface Held {
  job: ClaimedJob;
  /** Set once the job runs: `run.stop` (timeout, shutdown, lost lease) aborts its signal and abandons it. */
  run?: JobRun;
}

/**
 * One job's run on this node, as its handler sees it (JobExecution). Stopping it (timeout, lease
 * loss, shutdown) rejects `stopped`, which the run is raced against, and aborts the handler's
 * signal — made only if the handler asks for it (most never do: a no-op job paid an
 * AbortController and a listener for nothing); the job's child logger likewise. A class rather
 * than closures per job: each named closure costs an allocation, and a name definition under the
 * tsx loader, at tens of thousands of jobs per second.
 */
class JobRun implements JobExecution {
  readonly tenantId: string;
  readonly jobId: string;
  readonly type: string;
  readonly payload: unknown;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly traceparent: string;
  readonly timeoutMs: number;
  /** Rejected with the reason once the run is stopped. */
  readonly stopped: Promise<never>;
  private rejectStopped!: (reason: Error) => void;
  private stoppedBy?: Error;
  private controller?: AbortController;
  private logger?: Logger;

  constructor(
    private readonly job: ClaimedJob,
    readonly trace: TraceContext,
    readonly otel: OtelContext,
    private readonly parentLog: Logger,
    readonly db: Database,
  ) {
    this.tenantId = job.tenant_id;
    this.jobId = job.job_id;
    this.type = job.type;
    this.payload = job.payload;
    this.attempt = job.attempt;
    this.maxAttempts = job.max_attempts;
    this.traceparent = formatTraceparent(trace);
    this.timeoutMs = job.timeout_ms;
    this.stopped = new Promise<never>((_, reject) => (this.rejectStopped = reject));
    // Handled here too: a job that fails before its run is raced (no handler for its type) may
    // still be stopped (shutdown) while its failure is recorded.
    this.stopped.catch(ignore);
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.stoppedBy) this.controller.abort(this.stoppedBy);
    }
    return this.controller.signal;
  }

  get log(): Logger {
    const job = this.job;
    return (this.logger ??= this.parentLog.child({ trace_id: this.trace.traceId, span_id: this.trace.spanId, tenant: job.tenant_id, job_id: job.job_id, job_type: job.type, attempt: job.attempt }));
  }

  stop(reason: Error): void {
    if (this.stoppedBy) return;
    this.stoppedBy = reason;
    this.controller?.abort(reason);
    this.rejectStopped(reason);
  }
}

function stopOnTimeout(run: JobRun): void {
  run.stop(new Error(`TIMEOUT: the job ran longer than ${run.timeoutMs} ms`));
}

function ignore(): void {}

/**
 * The node's scheduler (docs/capabilities/scheduler.md): in-process workers for the registered handler types, the cron
 * loop, lease rescue and retention. Every node runs one; they coordinate only through PostgreSQL
 * (SKIP LOCKED claims, fencing tokens, unique tick keys), woken by LISTEN/NOTIFY.
 *
 * In-process workers lease jobs in batches into a local queue (at most `prefetch`, refilled
 * when it is half empty or a notification arrives) and start them round-robin across tenants,
 * so a tenant's backlog delays another tenant's job by at most about one local queue.
 * Completions are batched (one statement per event-loop turn); one statement renews every held
 * lease; a job whose lease is lost is aborted.
 */
export class SchedulerRuntime {
  readonly workerId = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  private running = false;
  private inFlight = 0;
  /** Leased jobs: buffered (no controller yet) or running. */
  private readonly held = new Map<string, Held>();
  /** Local queue: per tenant, dispatched round-robin. */
  private readonly queues = new Map<string, ClaimedJob[]>();
  private buffered = 0;
  private wake?: () => void;
  private claimLoop?: Promise<void>;
  private lastTenant = '';
  private completions: Array<{ job: ClaimedJob; resolve: () => void }> = [];
  private flushing?: Promise<void>;
  private tasks: PeriodicTask[] = [];
  private unsubscribe?: () => void;
  private idle = new Set<() => void>();

  constructor(private readonly o: SchedulerOptions) {}

  start(): void {
    this.running = true;
    // The payload lists the inserted job types (empty: unknown, wake anyway).
    this.unsubscribe = this.o.notifications.subscribe(JOBS_CHANNEL, (types) => {
      if (types === '' || types.split(',').some((t) => this.o.handlers.get(t))) this.poke();
    });
    this.o.notifications.onReconnect(() => this.poke());
    this.claimLoop = this.loop();
    this.tasks = [
      new PeriodicTask('scheduler lease renewal', Math.max(100, Math.floor(this.o.leaseMs / 3)), () => this.renewLeases(), this.o.log),
      new PeriodicTask('scheduler lease rescue', Math.max(100, Math.min(1000, Math.floor(this.o.leaseMs / 4))), () => this.rescue(), this.o.log),
      new PeriodicTask('scheduler cron', this.o.cronMs, () => this.fireDue(), this.o.log),
      new PeriodicTask('scheduler retention', 60_000, () => this.o.db.asSystem((sql) => sql.query('SELECT scheduler_sweep_finished($1, 10000)', [this.o.retentionSeconds])), this.o.log),
    ].map((t) => t.start());
  }

  /**
   * Stops claiming, gives back jobs that have not started, lets running ones finish (up to
   * graceMs), then aborts them (their leases lapse and they are rescued: at-least-once).
   */
  async stop(graceMs = 5000): Promise<void> {
    this.running = false;
    this.unsubscribe?.();
    this.poke();
    await this.claimLoop;
    await this.releaseBuffered();
    if (this.inFlight > 0) {
      await Promise.race([new Promise<void>((resolve) => this.idle.add(resolve)), new Promise((r) => setTimeout(r, graceMs).unref())]);
      for (const h of this.held.values()) h.run?.stop(new Error('SHUTDOWN: the node is stopping'));
    }
    await this.flushCompletions();
    await Promise.all(this.tasks.map((t) => t.stop()));
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const types = this.o.handlers.types();
      const room = this.o.prefetch - this.buffered;
      let claimed = 0;
      let asked = 0;
      // Refill once a quarter of the local queue has drained (or on a notification, see sleep()),
      // so the next batch arrives before the workers run dry.
      if (types.length > 0 && room > 0 && this.buffered <= (this.o.prefetch * 3) / 4) {
        asked = Math.min(room, 500);
        try {
          const jobs = await this.claim(types, asked);
          claimed = jobs.length;
          for (const job of jobs) this.enqueueLocal(job);
          this.dispatch();
        } catch (error) {
          this.o.log.error({ err: error }, 'scheduler: claiming jobs failed; retrying');
          await this.sleep(this.o.pollMs);
          continue;
        }
      }
      if (claimed > 0 && claimed >= asked) continue;
      await this.sleep(this.o.pollMs);
    }
  }

  /** Waits for a notification, the local queue running half empty, or the poll interval. */
  private sleep(ms: number): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      timer.unref();
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private async claim(types: string[], max: number): Promise<ClaimedJob[]> {
    // The columns the runtime reads, by name: not lease_expire_time (a timestamp parsed into a
    // Date per job for nothing — a few per cent of a no-op job's CPU).
    const rows = await systemCall<ClaimedJob>(this.o.db, `SELECT ${CLAIMED_COLUMNS} FROM scheduler_claim_jobs($1, NULL, $2, $3, $4, $5)`, [
      this.workerId,
      types,
      max,
      this.o.leaseMs,
      this.lastTenant,
    ]);
    if (rows.length > 0) this.lastTenant = rows[rows.length - 1].tenant_id;
    return rows;
  }

  private enqueueLocal(job: ClaimedJob): void {
    let queue = this.queues.get(job.tenant_id);
    if (!queue) {
      queue = [];
      this.queues.set(job.tenant_id, queue);
    }
    queue.push(job);
    this.held.set(key(job), { job });
    this.buffered += 1;
  }

  /** Starts buffered jobs while slots are free, one tenant after another. */
  private dispatch(): void {
    while (this.inFlight < this.o.concurrency && this.buffered > 0) {
      for (const [tenant, queue] of this.queues) {
        if (this.inFlight >= this.o.concurrency) break;
        const job = queue.shift();
        if (!job) {
          this.queues.delete(tenant);
          continue;
        }
        this.buffered -= 1;
        // Rotate: this tenant goes to the back of the round.
        this.queues.delete(tenant);
        if (queue.length > 0) this.queues.set(tenant, queue);
        void this.execute(job);
      }
    }
    if (this.buffered <= (this.o.prefetch * 3) / 4) this.poke();
  }

  private async execute(job: ClaimedJob): Promise<void> {
    const held = this.held.get(key(job));
    if (!held) return; // lease lost while buffered
    this.inFlight += 1;
    const { span, trace, otel } = startJobSpan(this.o.telemetry.tracer, job);
    const execution = new JobRun(job, trace, otel, this.o.log, this.o.db);
    held.run = execution;
    let timeout: NodeJS.Timeout | undefined;
    let completing: Promise<void> | undefined;
    try {
      const handler = this.o.handlers.get(job.type);
      if (!handler) throw new Error(`no handler for job type ${job.type} on this node`);
      timeout = setTimeout(stopOnTimeout, job.timeout_ms, execution);
      await Promise.race([handler(execution), execution.stopped]);
      clearTimeout(timeout);
      // The slot is free at once; the completion travels with the next batch. Until it has
      // committed the lease stays in the renewal set (a slow flush must not let it lapse and the
      // job run again); a failed flush means the job runs again: at-least-once.
      completing = this.complete(job);
      span.setStatus({ code: SpanStatusCode.OK });
    } catch (error) {
      clearTimeout(timeout);
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: String((error as Error)?.message ?? error) });
      await this.fail(job, error, execution.log, trace);
    } finally {
      span.end();
      if (completing) void completing.then(() => this.held.delete(key(job)));
      else this.held.delete(key(job));
      this.inFlight -= 1;
      if (this.inFlight === 0) for (const fn of this.idle) fn();
      this.dispatch();
    }
  }

  /** Completions are batched: one statement completes every job finished since the last flush. */
  private complete(job: ClaimedJob): Promise<void> {
    return new Promise<void>((resolve) => {
      this.completions.push({ job, resolve });
      if (!this.flushing) this.flushing = new Promise<void>((r) => setImmediate(r)).then(() => this.flushCompletions());
    });
  }

  private async flushCompletions(): Promise<void> {
    while (this.completions.length > 0) {
      const batch = this.completions.splice(0, 1000);
      try {
        const done = await systemCall<{ tenant_id: string; job_id: string }>(this.o.db, 'SELECT * FROM scheduler_complete_jobs($1, $2, $3)', [
          batch.map((b) => b.job.tenant_id),
          batch.map((b) => b.job.job_id),
          batch.map((b) => b.job.lease_token),
        ], { asyncCommit: true });
        this.o.metrics.increment('scheduler_jobs_succeeded_total', {}, done.length);
        if (done.length < batch.length) {
          const ok = new Set(done.map((d) => `${d.tenant_id}/${d.job_id}`));
          for (const b of batch) {
            if (!ok.has(key(b.job))) {
              this.o.log.warn({ tenant: b.job.tenant_id, job_id: b.job.job_id }, 'job finished but its lease was lost (LEASE_LOST): the completion was refused; it runs again elsewhere');
            }
          }
        }
      } catch (error) {
        // The leases lapse and the jobs run again (at-least-once): surfaced, not swallowed.
        this.o.log.error({ err: error, jobs: batch.length }, 'scheduler: completing jobs failed; their leases will lapse and they will run again');
      }
      for (const b of batch) b.resolve();
    }
    this.flushing = undefined;
  }

  private async fail(job: ClaimedJob, error: unknown, log: Logger, trace: TraceContext): Promise<void> {
    const message = (error instanceof Error ? `${error.name === 'Error' ? '' : `${error.name}: `}${error.message}` : String(error)).slice(0, 2000);
    const delay = retryDelayMs(job.attempt, job.backoff_base_ms);
    try {
      const [row] = await systemCall<{ state: string | null }>(this.o.db, 'SELECT scheduler_fail_job($1, $2, $3, $4, $5, $6) AS state', [
        job.tenant_id,
        job.job_id,
        job.lease_token,
        message,
        delay,
        trace.traceId,
      ]);
      if (row.state === 'DEAD') {
        this.o.metrics.increment('scheduler_jobs_dead_lettered_total');
        log.error({ err: error, attempts: job.attempt }, 'job dead-lettered after its last attempt');
      } else if (row.state === 'QUEUED') {
        this.o.metrics.increment('scheduler_job_attempts_failed_total');
        log.warn({ err: error, retry_in_ms: delay }, 'job attempt failed; retrying with backoff');
      } else {
        log.warn({ err: error }, 'job attempt failed but its lease was already lost (LEASE_LOST)');
      }
    } catch (failure) {
      log.error({ err: failure, job_error: message }, 'scheduler: recording a failed attempt failed; the lease will lapse and the job run again');
    }
  }

  /** One statement renews every lease this node holds; a lost one is dropped (buffered) or aborted (running). */
  private async renewLeases(): Promise<void> {
    if (this.held.size === 0) return;
    const jobs = [...this.held.values()].map((h) => h.job);
    const kept = await systemCall<{ tenant_id: string; job_id: string }>(this.o.db, 'SELECT * FROM scheduler_extend_leases($1, $2, $3, $4)', [
      jobs.map((j) => j.tenant_id),
      jobs.map((j) => j.job_id),
      jobs.map((j) => j.lease_token),
      this.o.leaseMs,
    ], { asyncCommit: true });
    if (kept.length === jobs.length) return;
    const ok = new Set(kept.map((k) => `${k.tenant_id}/${k.job_id}`));
    for (const job of jobs) {
      const held = this.held.get(key(job));
      if (!held || ok.has(key(job))) continue;
      if (held.run) {
        this.o.log.warn({ tenant: job.tenant_id, job_id: job.job_id }, 'lease lost while running (LEASE_LOST): aborting the job');
        held.run.stop(new Error('LEASE_LOST: the lease expired and was taken over'));
      } else {
        this.held.delete(key(job));
        const queue = this.queues.get(job.tenant_id);
        const at = queue?.indexOf(job) ?? -1;
        if (queue && at >= 0) {
          queue.splice(at, 1);
          this.buffered -= 1;
        }
      }
    }
  }

  private async releaseBuffered(): Promise<void> {
    const jobs = [...this.queues.values()].flat();
    this.queues.clear();
    this.buffered = 0;
    for (const job of jobs) this.held.delete(key(job));
    if (jobs.length === 0) return;
    try {
      await systemCall(this.o.db, 'SELECT scheduler_release_jobs($1, $2, $3)', [jobs.map((j) => j.tenant_id), jobs.map((j) => j.job_id), jobs.map((j) => j.lease_token)], { asyncCommit: true });
    } catch (error) {
      this.o.log.error({ err: error, jobs: jobs.length }, 'scheduler: giving back unstarted jobs failed; their leases will lapse and they will be rescued');
    }
  }

  private async rescue(): Promise<void> {
    const rows = await systemCall<{ tenant_id: string; job_id: string; state: string | null }>(this.o.db, 'SELECT * FROM scheduler_rescue_expired(500)', []);
    for (const r of rows) {
      const level = r.state === 'DEAD' ? 'error' : 'warn';
      this.o.log[level]({ tenant: r.tenant_id, job_id: r.job_id, state: r.state }, 'rescued a job whose lease expired');
    }
  }

  private async fireDue(): Promise<void> {
    const due = await systemCall<{ tenant_id: string; schedule_id: string }>(this.o.db, 'SELECT * FROM scheduler_due_schedules(100)', []);
    for (const d of due) {
      try {
        const ticks = await this.o.db.inTenantTransaction(d.tenant_id, (tx) => fireDueSchedule(tx, d.schedule_id));
        const missed = ticks.filter((t) => t.outcome === 'MISSED').length;
        if (missed > 0) this.o.log.warn({ tenant: d.tenant_id, schedule_id: d.schedule_id, missed }, 'schedule ticks missed (older than the catch-up window)');
      } catch (error) {
        this.o.log.error({ err: error, tenant: d.tenant_id, schedule_id: d.schedule_id }, 'firing a schedule failed; retrying next pass');
      }
    }
  }
}

const key = (job: { tenant_id: string; job_id: string }) => `${job.tenant_id}/${job.job_id}`;

/** Span ids from a pooled random buffer (one randomBytes call per 512 ids). */
let entropy = Buffer.alloc(0);
let entropyAt = 0;
function fastSpanId(): string {
  if (entropyAt + 8 > entropy.length) {
    entropy = randomBytes(4096);
    entropyAt = 0;
  }
  entropyAt += 8;
  return entropy.toString('hex', entropyAt - 8, entropyAt);
}

const STORED_TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The job's stored traceparent (written by enqueueJob) as the parent of a new span; anything else restarts the trace. */
function parseStoredTraceparent(traceparent: string): TraceContext {
  const m = STORED_TRACEPARENT.exec(traceparent);
  if (!m || /^0+$/.test(m[1]) || /^0+$/.test(m[2])) return continueTrace(undefined, undefined);
  return { traceId: m[1], spanId: fastSpanId(), parentSpanId: m[2], sampled: (parseInt(m[3], 16) & 1) === 1, restarted: false };
}

/** The job's execution span: a child of the enqueuer's span, also linking it. */
function startJobSpan(tracer: Tracer, job: ClaimedJob): { span: Span; trace: TraceContext; otel: OtelContext } {
  const parent = parseStoredTraceparent(job.traceparent);
  const parentContext = parent.restarted
    ? undefined
    : { traceId: parent.traceId, spanId: parent.parentSpanId!, traceFlags: parent.sampled ? TraceFlags.SAMPLED : TraceFlags.NONE, isRemote: true };
  const ctx = parentContext ? otelTrace.setSpanContext(otelContext.active(), parentContext) : otelContext.active();
  const span = tracer.startSpan(
    `job ${job.type}`,
    {
      kind: SpanKind.CONSUMER,
      links: parentContext ? [{ context: parentContext }] : [],
      attributes: { 'axis.tenant': job.tenant_id, 'axis.job.id': job.job_id, 'axis.job.type': job.type, 'axis.job.attempt': job.attempt, 'messaging.destination.name': job.queue },
    },
    ctx,
  );
  const trace = withSpanIds(span, parent);
  return { span, trace, otel: otelTrace.setSpan(ctx, span) };
}
