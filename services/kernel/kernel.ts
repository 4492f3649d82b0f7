import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TsProtoServiceDefinition } from 'nice-grpc';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { ServerReflection, ServerReflectionService } from 'nice-grpc-server-reflection';
import { AuditLog } from '../platform/audit/audit-log';
import { loadOrCreateDevelopmentSecret } from '../platform/auth/development-secret';
import { hs256Verifier, jwksFileVerifier, type TokenVerifier } from '../platform/auth/token-verifier';
import { BatchItemHandlers } from '../platform/batch-items';
import type { KernelDependencies } from '../platform/capability-module';
import { ConfigError, type KernelConfig } from '../platform/config';
import { APP_ROLE, Database } from '../platform/database/database';
import { NotificationHub } from '../platform/database/notification-hub';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../platform/database/embedded-postgres';
import { PrismaTenantReads } from '../platform/database/prisma-tenant-client';
import { JobHandlers } from '../platform/jobs';
import { MethodRegistry } from '../platform/method-registry';
import { kernelMiddlewareChain } from '../platform/middleware-chain';
import { migrate } from '../platform/migrations/migrate';
import { createLogger, type Logger } from '../platform/observability/logger';
import { Metrics } from '../platform/observability/metrics';
import { startTelemetry, type Telemetry } from '../platform/observability/telemetry';
import { openEnvelope } from '../platform/crypto/master-key-registry';
import { PeriodicTask } from '../platform/periodic-task';
import { KernelServer } from '../platform/grpc-server';
import { guardRequestDecoding, TRANSPORT_MAX_RECEIVE_BYTES } from '../platform/request-guard';
import { MutationCommitter } from '../platform/unit-of-work/mutation-committer';
import { TrafficGovernor } from '../platform/traffic/governor';
import { defaultPolicy } from '../platform/traffic/policy';
import { schedulerJobQueue } from '../scheduler';
import { capabilityModules } from './capabilities';

const DESCRIPTOR_SET = path.resolve(__dirname, '../../gen/descriptor.binpb');

export interface RunningKernel {
  /** host:port actually bound (port 0 resolved). */
  readonly address: string;
  readonly port: number;
  readonly databaseUrl: string;
  /** The secret the kernel generated for itself (development, no KERNEL_AUTH_SECRET or JWKS): tokens can be minted with it. */
  readonly developmentSecret?: string;
  readonly metrics: Metrics;
  /** The node's OpenTelemetry (tracer, meter). */
  readonly telemetry: Telemetry;
  readonly log: Logger;
  readonly db: Database;
  readonly audit: AuditLog;
  /** In-process job handlers of this node (docs/capabilities/scheduler.md): `kernel.jobs.register(type, handler)`. */
  readonly jobs: JobHandlers;
  /** Batch item handlers of this node (docs/capabilities/batch.md): `kernel.batch.register(type, handler)`. */
  readonly batch: BatchItemHandlers;
  /** Every scope some served method requires (what a development token needs to call everything). */
  readonly scopes: string[];
  /** The generated definitions of every capability service this node serves. */
  readonly services: readonly TsProtoServiceDefinition[];
  /** Stops taking calls, drains in-flight ones (up to the grace period), stops background work, closes the pool. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Overrides the logger (tests capture logs). */
  log?: Logger;
  /** Whether background tasks (audit sequencer, reservation expiry, retention) run. Default true. */
  backgroundTasks?: boolean;
}

/**
 * Starts one kernel node: database (embedded when DATABASE_URL is unset), migrations, the gRPC
 * server with every service behind the middleware chain, health, reflection and the background
 * tasks. Any number of nodes may run against one database.
 */
export async function startKernel(config: KernelConfig, options: StartOptions = {}): Promise<RunningKernel> {
  const log = options.log ?? createLogger(config.LOG_LEVEL);
  // OpenTelemetry first: everything after it may record spans and metrics.
  const telemetry = startTelemetry({ endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT });
  const metrics = new Metrics(telemetry.meter);
  const cleanups: Array<() => Promise<void>> = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn().catch((error) => log.error({ err: error }, 'shutdown step failed'));
  };

  // Flushed last: the spans of the shutdown itself are exported too.
  cleanups.push(() => telemetry.shutdown());
  try {
    let ownerUrl = config.DATABASE_URL;
    let embedded: EmbeddedPostgres | undefined;
    if (!ownerUrl) {
      embedded = await startEmbeddedPostgres({
        dataDir: config.KERNEL_EMBEDDED_STORAGE === 'disk' ? path.join(config.KERNEL_DATA_DIR, 'pgdata') : undefined,
        log: (msg) => log.info(msg),
      });
      cleanups.push(() => embedded!.stop());
      ownerUrl = embedded.url;
      log.warn({ storage: config.KERNEL_EMBEDDED_STORAGE }, 'DATABASE_URL is unset: running on the embedded PostgreSQL (development only)');
    }

    await migrate(ownerUrl, log);
    const { envelope, requestDigestKey } = await openEnvelope(config, ownerUrl, log);

    // The embedded database is one session: more connections only queue, so keep the pool small.
    const poolSize = embedded ? Math.min(4, config.KERNEL_DB_POOL_SIZE) : config.KERNEL_DB_POOL_SIZE;
    const db = new Database(
      { connectionString: config.KERNEL_APP_DATABASE_URL ?? ownerUrl, application_name: 'axis-kernel' },
      {
        poolSize,
        connectionsPerTenant: Math.min(poolSize, config.KERNEL_DB_CONNECTIONS_PER_TENANT ?? Math.max(1, Math.ceil(poolSize / 2))),
        statementTimeoutMs: config.KERNEL_DB_STATEMENT_TIMEOUT_MS,
        lockTimeoutMs: config.KERNEL_DB_LOCK_TIMEOUT_MS,
        acquireTimeoutMs: config.KERNEL_DB_ACQUIRE_TIMEOUT_MS,
        log,
        tracer: telemetry.exporting ? telemetry.tracer : undefined,
      },
    );
    cleanups.push(() => db.close());
    await checkRuntimeLogin(db, config, log);
    // The cold read paths' Prisma Client (docs/prisma.md): its own small pool, the same login, the
    // same opening statement per transaction. Closed with the pg pool.
    const prismaPoolSize = Math.max(1, Math.min(2, Math.floor(poolSize / 4)));
    const prismaReads = new PrismaTenantReads(config.KERNEL_APP_DATABASE_URL ?? ownerUrl, {
      poolSize: prismaPoolSize,
      connectionsPerTenant: prismaPoolSize,
      statementTimeoutMs: config.KERNEL_DB_STATEMENT_TIMEOUT_MS,
      lockTimeoutMs: config.KERNEL_DB_LOCK_TIMEOUT_MS,
      acquireTimeoutMs: config.KERNEL_DB_ACQUIRE_TIMEOUT_MS,
      tracer: telemetry.exporting ? telemetry.tracer : undefined,
      log,
    });
    cleanups.push(() => prismaReads.close());
    await prismaReads.warmUp();

    const { verifier, developmentSecret } = tokenVerifier(config, log);
    const audit = new AuditLog(db, log, metrics);
    const registry = new MethodRegistry();
    // Latency budgets: the configured ones, then each capability's own defaults (below).
    const budgetsMs: Record<string, number> = { ...config.KERNEL_RPC_BUDGETS_MS };
    // Traffic governance (docs/capabilities/traffic.md): cached tenant policies and one limiter (Redis when configured, else this node).
    const governor = new TrafficGovernor(
      {
        defaults: defaultPolicy(config),
        policyRefreshMs: config.KERNEL_TRAFFIC_POLICY_REFRESH_MS,
        redisUrl: config.REDIS_URL,
        redisTimeoutMs: config.KERNEL_TRAFFIC_REDIS_TIMEOUT_MS,
        redisKeyPrefix: config.KERNEL_TRAFFIC_REDIS_PREFIX,
      },
      db,
      metrics,
      log,
    );
    governor.setKnownMethods(() => new Set(registry.all().map((m) => m.action)));
    await governor.start();
    cleanups.push(() => governor.stop());
    const chain = kernelMiddlewareChain({
      telemetry,
      registry,
      db,
      verifier,
      audit,
      log,
      metrics,
      budgetsMs,
      idempotencyRetentionHours: config.KERNEL_IDEMPOTENCY_RETENTION_HOURS,
      requestDigestKey,
      governor,
      committer: new MutationCommitter(db, { callTimeoutMs: config.KERNEL_CALL_TIMEOUT_MS, maxQueuedPerTenant: config.KERNEL_COMMIT_QUEUE_PER_TENANT, telemetry, metrics }),
    });

    // One LISTEN connection per node (scheduler wake-ups, cross-node cache invalidation).
    const notifications = new NotificationHub(config.KERNEL_APP_DATABASE_URL ?? ownerUrl, log);
    await notifications.start();
    cleanups.push(() => notifications.stop());
    const jobs = new JobHandlers();
    await jobs.loadModules(config.KERNEL_JOB_HANDLER_MODULES, log);
    const deps: KernelDependencies = { config, db, prismaReads, log, metrics, telemetry, audit, envelope, batchItems: new BatchItemHandlers(), jobs, jobQueue: schedulerJobQueue, notifications, traffic: governor };
    const services = capabilityModules(deps, { runWorkers: options.backgroundTasks !== false });
    for (const service of services) {
      for (const [name, ms] of Object.entries(service.budgetsMs ?? {})) budgetsMs[`${service.definition.fullName}/${name}`] ??= ms;
    }
    const server = new KernelServer({ 'grpc.max_receive_message_length': TRANSPORT_MAX_RECEIVE_BYTES });
    for (const service of services) {
      registry.register(service.definition, service.scopes, service.auditedReads);
      server.add(guardRequestDecoding(service.definition), service.implementation, chain);
    }
    const health = HealthState();
    server.add(HealthDefinition, HealthServiceImpl(health));
    server.add(
      ServerReflectionService,
      ServerReflection(readFileSync(DESCRIPTOR_SET), [...services.map((s) => s.definition.fullName), HealthDefinition.fullName]),
    );

    // Shutdown runs in reverse: drain the server, then stop background work, then the pool.
    const tasks =
      options.backgroundTasks === false
        ? []
        : [
            // (The idempotency store's retention is the system job kernel.platform.idempotency-sweep.)
            ...services.flatMap((s) => s.periodicTasks ?? []).map((work) => new PeriodicTask(work.name, work.everyMs, () => work.run(), log)),
          ];
    cleanups.push(async () => {
      await Promise.all(tasks.map((task) => task.stop()));
    });
    // Capabilities' own background work (the scheduler's runtime and the system schedules of
    // every capability, …), stopped before the pool closes.
    for (const service of services) {
      if (!service.start) continue;
      await service.start();
      cleanups.push(async () => {
        await service.stop?.(config.KERNEL_SHUTDOWN_GRACE_MS);
      });
    }

    const [host] = splitAddress(config.KERNEL_GRPC_ADDR);
    const port = await server.listen(config.KERNEL_GRPC_ADDR);
    const address = `${host}:${port}`;
    cleanups.push(async () => {
      health.setStatus('unhealthy');
      await shutdownWithGrace(server, config.KERNEL_SHUTDOWN_GRACE_MS, log);
    });
    for (const task of tasks) task.start();

    log.info({ address, database: embedded ? 'embedded' : 'postgresql' }, 'kernel listening');
    let stopping: Promise<void> | undefined;
    return {
      address,
      port,
      databaseUrl: ownerUrl,
      developmentSecret,
      metrics,
      telemetry,
      log,
      db,
      audit,
      jobs,
      batch: deps.batchItems,
      scopes: [...new Set(registry.all().map((m) => m.requiredScope))].sort(),
      services: services.map((s) => s.definition),
      stop: () => (stopping ??= cleanup()),
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/**
 * Least privilege at the database. Every transaction switches to the application role, but a
 * RESET ROLE inside one returns to the login role: in production that role must therefore be
 * neither superuser nor BYPASSRLS, nor own the kernel's tables (an owner can turn RLS off), and
 * it must be allowed to act as the application role. Development may log in as anything — loudly.
 */
async function checkRuntimeLogin(db: Database, config: KernelConfig, log: Logger): Promise<void> {
  const role = await db.loginRole();
  const setting = config.KERNEL_APP_DATABASE_URL ? 'KERNEL_APP_DATABASE_URL' : 'DATABASE_URL';
  const powers = [role.superuser && 'SUPERUSER', role.bypassRls && 'BYPASSRLS', role.ownsTables && 'owner of the kernel tables'].filter(Boolean);
  if (!role.mayActAsApp) {
    throw new ConfigError(`${setting}: the runtime logs in as ${role.name}, which may not act as ${APP_ROLE}; see scripts/database-roles.sql`);
  }
  if (powers.length === 0) return;
  if (config.KERNEL_ENV === 'production') {
    throw new ConfigError(
      `${setting}: the runtime logs in as ${role.name} (${powers.join(', ')}); production needs a login role without these powers — see scripts/database-roles.sql`,
    );
  }
  log.warn({ login_role: role.name, powers }, `the runtime logs in as a role with ${powers.join(', ')}: tolerated in development only (production refuses to start); see scripts/database-roles.sql`);
}

function tokenVerifier(config: KernelConfig, log: Logger): { verifier: TokenVerifier; developmentSecret?: string } {
  if (config.KERNEL_JWKS_FILE) return { verifier: jwksFileVerifier(config.KERNEL_JWKS_FILE) };
  // A secret the operator configured is theirs: the kernel never mints tokens with it by itself.
  if (config.KERNEL_AUTH_SECRET) return { verifier: hs256Verifier(config.KERNEL_AUTH_SECRET) };
  const { secret, created } = loadOrCreateDevelopmentSecret(config.KERNEL_DATA_DIR);
  if (created) log.warn({ dir: config.KERNEL_DATA_DIR }, 'generated a development token secret (set KERNEL_AUTH_SECRET or KERNEL_JWKS_FILE outside development)');
  return { verifier: hs256Verifier(secret), developmentSecret: secret };
}

function splitAddress(address: string): [string, string] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), address.slice(i + 1)];
}

/** Drains in-flight calls; past the grace period, remaining calls are cancelled. */
async function shutdownWithGrace(server: KernelServer, graceMs: number, log: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const graceful = server.shutdown().then(() => true);
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)));
  const drained = await Promise.race([graceful, timeout]);
  clearTimeout(timer);
  if (!drained) {
    log.warn({ grace_ms: graceMs }, 'in-flight calls did not finish within the grace period; cancelling them');
    server.forceShutdown();
  }
}
