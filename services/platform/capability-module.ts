import type { TsProtoServiceDefinition } from 'nice-grpc';
import type { AuditLog } from './audit/audit-log';
import type { BatchItemHandlers } from './batch-items';
import type { KernelConfig } from './config';
import type { Envelope } from './crypto/envelope';
import type { Database } from './database/database';
import type { NotificationHub } from './database/notification-hub';
import type { PrismaTenantReads } from './database/prisma-tenant-client';
import type { JobExecution, JobHandlers, JobQueue } from './jobs';
import type { Logger } from './observability/logger';
import type { Metrics } from './observability/metrics';
import type { Telemetry } from './observability/telemetry';
import type { TrafficGovernor } from './traffic/governor';

/**
 * What one kernel node shares with the capabilities it serves: the platform's runtime pieces,
 * built once by the composition root (services/kernel) and handed to every capability module.
 */
export interface KernelDependencies {
  readonly config: KernelConfig;
  readonly db: Database;
  /** Prisma Client for the cold read paths (registries, listings), tenant-scoped like `db` (docs/prisma.md). */
  readonly prismaReads: PrismaTenantReads;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The node's OpenTelemetry: spans of background work (jobs, batch chunks) continue their traces. */
  readonly telemetry: Telemetry;
  readonly audit: AuditLog;
  /** Batch item handlers by type, registered by code; the chunk jobs of any node run them. */
  readonly batchItems: BatchItemHandlers;
  /** In-process job handlers by type: every node's workers run them. */
  readonly jobs: JobHandlers;
  /** Enqueues jobs in the caller's tenant transaction. */
  readonly jobQueue: JobQueue;
  /** The node's one LISTEN connection: cross-node wake-ups and cache invalidation. */
  readonly notifications: NotificationHub;
  /** Envelope encryption under the configured master keys (signing keys, secrets). */
  readonly envelope: Envelope;
  /** The node's traffic governor (docs/capabilities/traffic.md): its policy cache learns SetPolicy's changes. */
  readonly traffic: TrafficGovernor;
}

/**
 * One capability as the kernel serves it — the one shape every `<capability>-module.ts` returns
 * (docs/adding-a-capability.md): its gRPC service and what the platform needs to know of it.
 */
export interface CapabilityModule {
  /** The ts-proto generated definition (nice-grpc generic definitions). */
  readonly definition: TsProtoServiceDefinition;
  /** Its implementation (a `…ServiceImplementation<KernelCallContext>`). */
  readonly implementation: object;
  /** Method name → required scope, where `<capability>:read|write` is not right. */
  readonly scopes?: Record<string, string>;
  /** NO_SIDE_EFFECTS methods whose every call is still audited (see KernelMethod.auditedRead). */
  readonly auditedReads?: readonly string[];
  /** Method name → latency budget (ms) where the "*" default cannot fit (a long-poll); KERNEL_RPC_BUDGETS_MS overrides. */
  readonly budgetsMs?: Record<string, number>;
  /** Recurring cross-tenant work, run as system schedules of the scheduler (one node per tick). */
  readonly systemJobs?: readonly SystemJob[];
  /**
   * Work every node runs on a short period (below the scheduler's 1 s tick), never overlapping
   * itself; the work coordinates across nodes itself (e.g. a row lock). Stopped at shutdown.
   */
  readonly periodicTasks?: readonly PeriodicWork[];
  /** Runs once the node serves (after every module is built): long-running background work. */
  start?(): Promise<void>;
  /** Stops what `start` started, within the grace period; the pool is closed after it. */
  stop?(graceMs: number): Promise<void>;
}

/** A capability's sub-second background work (e.g. the audit integrator). */
export interface PeriodicWork {
  readonly name: string;
  readonly everyMs: number;
  run(): Promise<unknown>;
}

/** A capability's recurring system work (e.g. reservation expiry), fired every `everySeconds`. */
export interface SystemJob {
  /** Also the job type of its runs, e.g. `kernel.sequences.expire-reservations`. */
  readonly name: string;
  /** 1–59. */
  readonly everySeconds: number;
  run(job: JobExecution): Promise<void>;
}
