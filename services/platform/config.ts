import path from 'node:path';
import { z } from 'zod';
import { masterKeysSchema } from './crypto/master-keys';

/**
 * The kernel's configuration, read from the environment once at start-up. Zod is the single
 * source of truth for it (docs/laws.md#law-7): a bad value stops the process with a message naming it.
 */
const durationMs = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const configSchema = z
  .object({
    KERNEL_GRPC_ADDR: z
      .string()
      .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'must be host:port')
      .default('127.0.0.1:50051'),
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL')
      .optional(),
    /** Where the runtime connects when it must not use the owner's URL (defaults to DATABASE_URL). */
    KERNEL_APP_DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL')
      .optional(),
    KERNEL_DATA_DIR: z.string().min(1).default(path.resolve('.kernel-data')),
    /** `memory` keeps the embedded database in memory (nothing survives a restart). */
    KERNEL_EMBEDDED_STORAGE: z.enum(['disk', 'memory']).default('disk'),
    KERNEL_AUTH_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    KERNEL_JWKS_FILE: z.string().min(1).optional(),
    KERNEL_DB_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
    /** At most this many of the pool's connections serve one tenant at once (default half the pool). */
    KERNEL_DB_CONNECTIONS_PER_TENANT: z.coerce.number().int().min(1).max(200).optional(),
    /** Every database statement of the request path and of background work is cancelled past this. */
    KERNEL_DB_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(5000),
    /** Every lock wait fails past this (answered ABORTED, retryable). */
    KERNEL_DB_LOCK_TIMEOUT_MS: z.coerce.number().int().min(10).max(600_000).default(1000),
    /** Longest wait for a database connection (then UNAVAILABLE DATABASE_BUSY with RetryInfo). */
    KERNEL_DB_ACQUIRE_TIMEOUT_MS: z.coerce.number().int().min(10).max(600_000).default(2000),
    /** Longest a mutating call's handler may run inside its commit group (then DEADLINE_EXCEEDED). */
    KERNEL_CALL_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
    /** Mutating calls of one tenant a node queues behind its running commit group (then RESOURCE_EXHAUSTED). */
    KERNEL_COMMIT_QUEUE_PER_TENANT: z.coerce.number().int().min(1).max(1_000_000).default(2000),
    KERNEL_IDEMPOTENCY_RETENTION_HOURS: z.coerce.number().positive().max(24 * 90).default(24),
    /** Per-RPC latency budgets: JSON object of method path (or "*") to milliseconds. */
    KERNEL_RPC_BUDGETS_MS: z
      .string()
      .default('{"*": 250}')
      .transform((text, ctx) => {
        try {
          return z.record(z.string(), z.number().positive()).parse(JSON.parse(text));
        } catch {
          ctx.addIssue({ code: 'custom', message: 'must be a JSON object of method -> milliseconds' });
          return z.NEVER;
        }
      }),
    KERNEL_RESERVATION_SWEEP_MS: durationMs(1000),
    /** Audit (docs/capabilities/audit.md): how often each node offers to integrate committed audit entries (one node integrates at a time). */
    KERNEL_AUDIT_SEQUENCER_MS: durationMs(200),
    /** Audit (docs/capabilities/audit.md): entries per integration transaction. */
    KERNEL_AUDIT_BATCH_SIZE: z.coerce.number().int().min(1).max(100_000).default(5000),
    /** Audit (docs/capabilities/audit.md): the shortest retention a tenant may set (default 1 day). */
    KERNEL_AUDIT_MIN_RETENTION_SECONDS: z.coerce.number().int().min(1).default(86_400),
    /** Audit (docs/capabilities/audit.md): how often expired entries are purged (every tenant with a retention policy), 1–59 s. */
    KERNEL_AUDIT_PURGE_SWEEP_MS: z.coerce.number().int().min(1000).max(59_000).default(59_000),
    /** Batch (docs/capabilities/batch.md): comma-separated module paths exporting registerBatchItemHandlers(handlers), imported at start-up. */
    KERNEL_BATCH_HANDLER_MODULES: z.string().optional(),
    /** Scheduler (docs/capabilities/scheduler.md): comma-separated module paths exporting registerJobHandlers(registry), imported before the node starts. */
    KERNEL_JOB_HANDLER_MODULES: z.string().optional(),
    KERNEL_SHUTDOWN_GRACE_MS: durationMs(10_000),
    /** Scheduler (docs/capabilities/scheduler.md): jobs run at once per node, in-process lease, claim poll, cron pass, finished-job retention. */
    KERNEL_SCHEDULER_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(32),
    KERNEL_SCHEDULER_LEASE_MS: z.coerce.number().int().min(1000).max(3_600_000).default(30_000),
    /** Jobs a node leases ahead into its local queue (≥ 1); default 8 × concurrency, at most 500. */
    KERNEL_SCHEDULER_PREFETCH: z.coerce.number().int().min(1).max(5000).optional(),
    KERNEL_SCHEDULER_POLL_MS: durationMs(1000),
    KERNEL_SCHEDULER_CRON_MS: durationMs(200),
    KERNEL_SCHEDULER_RETENTION_SECONDS: z.coerce.number().int().min(60).default(7 * 86_400),
    KERNEL_ENV: z.enum(['development', 'production']).default('development'),
    /** Versioned key-encryption keys: JSON object of version -> base64 32-byte key (envelope encryption). */
    KERNEL_MASTER_KEYS: masterKeysSchema.optional(),
    /** The version that wraps new data keys; default the highest configured. */
    KERNEL_MASTER_KEY_ACTIVE: z.coerce.number().int().min(1).optional(),
    /** Decrypted signing keys kept in memory (per node): how many, and for how long. */
    KERNEL_KEY_CACHE_SIZE: z.coerce.number().int().min(0).max(1_000_000).default(10_000),
    KERNEL_KEY_CACHE_TTL_MS: durationMs(300_000),
    /** Shortest restore window a key version's scheduled destruction may have. */
    KERNEL_KEY_DESTRUCTION_MIN_WINDOW_SECONDS: z.coerce.number().int().min(1).default(3600),
    KERNEL_KEY_DESTRUCTION_SWEEP_MS: durationMs(1000),
    /** Traffic defaults (docs/capabilities/traffic.md) for tenants without a stored policy: tenant rate (per second) and burst. */
    KERNEL_TRAFFIC_TENANT_RATE: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
    KERNEL_TRAFFIC_TENANT_BURST: z.coerce.number().int().min(1).max(1_000_000).default(20_000),
    /** Per-principal default rate (per second) and burst; unset: no per-principal limit by default. */
    KERNEL_TRAFFIC_PRINCIPAL_RATE: z.coerce.number().int().min(1).max(1_000_000).optional(),
    KERNEL_TRAFFIC_PRINCIPAL_BURST: z.coerce.number().int().min(1).max(1_000_000).optional(),
    /** Calls of one tenant in flight at once on one node. */
    KERNEL_TRAFFIC_MAX_IN_FLIGHT: z.coerce.number().int().min(1).max(100_000).default(10_000),
    /** Cost units per tenant and UTC day. */
    KERNEL_TRAFFIC_DAILY_QUOTA: z.coerce.number().int().min(1).max(1_000_000_000_000).default(1_000_000_000),
    /** How long a node serves a cached tenant policy before reloading it in the background. */
    KERNEL_TRAFFIC_POLICY_REFRESH_MS: z.coerce.number().int().min(100).max(3_600_000).default(30_000),
    /** Redis limiter: command timeout (then the node decides locally), and the key prefix. */
    KERNEL_TRAFFIC_REDIS_TIMEOUT_MS: z.coerce.number().int().min(1).max(10_000).default(50),
    KERNEL_TRAFFIC_REDIS_PREFIX: z.string().min(1).max(100).default('axis:traffic:'),
    REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL').optional(),
    NATS_URL: z.string().regex(/^(nats|tls):\/\//, 'must be a nats:// URL').optional(),
    OTEL_EXPORTER_OTLP_ENDPOINT: z.url().optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .superRefine((c, ctx) => {
    if (c.KERNEL_ENV === 'production' && !c.KERNEL_MASTER_KEYS) {
      ctx.addIssue({ code: 'custom', path: ['KERNEL_MASTER_KEYS'], message: 'production needs KERNEL_MASTER_KEYS (the master keys that protect signing keys and secrets)' });
    }
    if (c.KERNEL_MASTER_KEYS && c.KERNEL_MASTER_KEY_ACTIVE !== undefined && !c.KERNEL_MASTER_KEYS.has(c.KERNEL_MASTER_KEY_ACTIVE)) {
      ctx.addIssue({ code: 'custom', path: ['KERNEL_MASTER_KEY_ACTIVE'], message: 'names a version that KERNEL_MASTER_KEYS does not hold' });
    }
    if (c.KERNEL_DB_CONNECTIONS_PER_TENANT !== undefined && c.KERNEL_DB_CONNECTIONS_PER_TENANT > c.KERNEL_DB_POOL_SIZE) {
      ctx.addIssue({ code: 'custom', path: ['KERNEL_DB_CONNECTIONS_PER_TENANT'], message: 'cannot exceed KERNEL_DB_POOL_SIZE' });
    }
    if (c.KERNEL_TRAFFIC_PRINCIPAL_BURST !== undefined && c.KERNEL_TRAFFIC_PRINCIPAL_RATE === undefined) {
      ctx.addIssue({ code: 'custom', path: ['KERNEL_TRAFFIC_PRINCIPAL_BURST'], message: 'needs KERNEL_TRAFFIC_PRINCIPAL_RATE (a burst without a rate would be ignored)' });
    }
    if (c.KERNEL_DB_LOCK_TIMEOUT_MS > c.KERNEL_DB_STATEMENT_TIMEOUT_MS) {
      ctx.addIssue({ code: 'custom', path: ['KERNEL_DB_LOCK_TIMEOUT_MS'], message: 'must not exceed KERNEL_DB_STATEMENT_TIMEOUT_MS (a lock wait is part of a statement)' });
    }
    if (c.KERNEL_ENV === 'production' && !c.DATABASE_URL) {
      ctx.addIssue({ code: 'custom', path: ['DATABASE_URL'], message: 'production needs a PostgreSQL server (the embedded database is for development)' });
    }
    if (c.KERNEL_ENV === 'production' && !c.KERNEL_JWKS_FILE && !c.KERNEL_AUTH_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['KERNEL_JWKS_FILE'], message: 'production needs KERNEL_JWKS_FILE or KERNEL_AUTH_SECRET' });
    }
  });

export type KernelConfig = z.infer<typeof configSchema>;

/** Thrown for an invalid environment; the message names every offending variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Parses the environment (or any record shaped like it) into a validated configuration. */
export function loadConfig(env: Record<string, string | undefined> = process.env): KernelConfig {
  const blankAsUnset = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = configSchema.safeParse(blankAsUnset);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(config)'}: ${i.message}`);
    throw new ConfigError(`invalid kernel configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
