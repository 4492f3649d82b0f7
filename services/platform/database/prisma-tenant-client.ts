import { SpanKind, SpanStatusCode, type Context as OtelContext, type Tracer } from '@opentelemetry/api';
import { PrismaPg } from '@prisma/adapter-pg';
import { Status } from 'nice-grpc-common';
import type { CancelSignal } from '../cancel-signal';
import { PrismaClient, type Prisma } from '../../../gen/prisma/client';
import { KernelError } from '../kernel-error';
import type { Logger } from '../observability/logger';
import { ConnectionGate } from './connection-gate';
import { transactionSettings } from './database';
import { translateDatabaseError } from './postgres-errors';

export type { Prisma };

/**
 * Prisma Client (driver adapter @prisma/adapter-pg) on the kernel's database, for typed access
 * off the hot paths: the cold read paths that use {@link PrismaTenantReads}, operator tooling and
 * domain teams' reads of kernel tables. The kernel's request hot paths use the pg-based
 * transaction helper (Database), which measured about three times the throughput of Prisma
 * interactive transactions on this machine (docs/prisma.md has the figures and the list).
 */
export function createPrismaClient(connectionString: string, pool: { max?: number; applicationName?: string; log?: Logger } = {}): PrismaClient {
  // A connection that drops (server restart, pg_terminate_backend) is replaced by the pool; the
  // adapter already keeps it from crashing the process, this keeps it from going unnoticed.
  const onError = (error: Error) => pool.log?.warn({ err: error }, 'Prisma database connection failed; the pool will replace it');
  return new PrismaClient({
    adapter: new PrismaPg({ connectionString, max: pool.max, application_name: pool.applicationName }, { onPoolError: onError, onConnectionError: onError }),
  });
}

/** Timeouts of a Prisma tenant transaction, and whether it is read-only. */
export interface PrismaTransactionSettings {
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  /** Read-only like the pg path's `BEGIN READ ONLY` (set transaction-locally in the opening statement). */
  readOnly?: boolean;
  /** Longest wait for a connection from Prisma's pool (Prisma's `maxWait`). */
  maxWaitMs?: number;
  /** Longest the whole transaction may take (Prisma's interactive-transaction `timeout`). */
  timeoutMs?: number;
}

/**
 * Runs `fn` in a Prisma interactive transaction scoped to one tenant, as the application role,
 * with the same transaction-local settings as every kernel transaction — so RLS applies.
 */
export function inTenantPrismaTransaction<T>(
  prisma: PrismaClient,
  tenantId: string,
  fn: (tx: Prisma.TransactionClient) => Promise<T>,
  settings: PrismaTransactionSettings = { statementTimeoutMs: 5000, lockTimeoutMs: 1000 },
): Promise<T> {
  return prisma.$transaction(
    async (tx) => {
      // The kernel's one opening statement (role, tenant, timeouts); the tenant id is escaped there.
      await tx.$queryRawUnsafe(transactionSettings(tenantId, settings, { readOnly: settings.readOnly }));
      return fn(tx);
    },
    {
      ...(settings.maxWaitMs === undefined ? {} : { maxWait: settings.maxWaitMs }),
      ...(settings.timeoutMs === undefined ? {} : { timeout: settings.timeoutMs }),
    },
  );
}

/**
 * A Prisma transaction bound to one tenant: what a store's Prisma read function receives (the
 * store convention — the transaction first — with Prisma's client in place of SQL).
 */
export interface PrismaTenantTransaction {
  readonly tenantId: string;
  readonly db: Prisma.TransactionClient;
}

export interface PrismaTenantReadsOptions {
  /** Connections of Prisma's own pool (separate from the pg pool of the hot paths). */
  poolSize: number;
  connectionsPerTenant: number;
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  acquireTimeoutMs: number;
  /** Set when spans are exported: each read gets one `db …` span under the call's span. */
  tracer?: Tracer;
  log?: Logger;
}

/**
 * The kernel's cold read paths through Prisma Client (docs/prisma.md): every read is a read-only
 * interactive transaction that opens with the same statement as the pg path (application role,
 * tenant, timeouts — transaction-local), so row-level security scopes it exactly as it scopes a
 * Database transaction. Admission works as on the pg path: a per-tenant share of the pool, a
 * bounded wait (UNAVAILABLE DATABASE_BUSY), and cancellation by the call's signal. Database
 * failures are answered as on the pg path (translateDatabaseError), found in Prisma's error.
 *
 * On the embedded database this works unchanged: Prisma's connections reach PGlite through the
 * same wire-protocol server, which gives a connection the session for a whole transaction.
 */
export class PrismaTenantReads {
  readonly client: PrismaClient;
  private readonly gate: ConnectionGate;

  constructor(
    connectionString: string,
    private readonly options: PrismaTenantReadsOptions,
  ) {
    this.client = createPrismaClient(connectionString, { max: options.poolSize, applicationName: 'axis-kernel-prisma', log: options.log });
    this.gate = new ConnectionGate(options.poolSize, Math.min(options.poolSize, options.connectionsPerTenant), options.acquireTimeoutMs);
  }

  /**
   * Runs `fn` in a read-only transaction of `tenantId`. `operation` names the read in its span
   * (`SELECT sequence_series`), as the pg path names statements.
   */
  async read<T>(
    tenantId: string,
    operation: string,
    fn: (tx: PrismaTenantTransaction) => Promise<T>,
    call: { signal?: CancelSignal; trace?: OtelContext } = {},
  ): Promise<T> {
    const release = await this.gate.acquire(tenantId, call.signal);
    const span =
      this.options.tracer && call.trace
        ? this.options.tracer.startSpan(
            `db ${operation}`,
            { kind: SpanKind.CLIENT, attributes: { 'db.system': 'postgresql', 'db.operation': operation, 'axis.tenant': tenantId } },
            call.trace,
          )
        : undefined;
    try {
      return await inTenantPrismaTransaction(this.client, tenantId, (db) => fn({ tenantId, db }), {
        statementTimeoutMs: this.options.statementTimeoutMs,
        lockTimeoutMs: this.options.lockTimeoutMs,
        readOnly: true,
        maxWaitMs: this.options.acquireTimeoutMs,
        // The statement timeout bounds each statement; this bounds the transaction around them.
        timeoutMs: this.options.statementTimeoutMs + this.options.acquireTimeoutMs,
      });
    } catch (error) {
      span?.setStatus({ code: SpanStatusCode.ERROR, message: 'error' });
      throw translatePrismaError(error);
    } finally {
      span?.end();
      release();
    }
  }

  /**
   * Connects and runs one read (as no tenant: row-level security hides every row). Prisma Client
   * instantiates its query compiler (WebAssembly) on first use, which holds the event loop for
   * about 140 ms on this machine; done at start-up, it never delays a call.
   */
  async warmUp(): Promise<void> {
    await this.client.$connect();
    await this.read('', 'SELECT', (tx) => tx.db.sequenceSeries.findMany({ where: { tenantId: '', seriesId: { gt: '' } }, orderBy: { seriesId: 'asc' }, take: 1 }));
  }

  async close(): Promise<void> {
    await this.client.$disconnect();
  }
}

/**
 * Prisma's error for a database failure, answered as the pg path answers it: the SQLSTATE is
 * looked up where Prisma keeps it (the driver adapter's error, under `cause` or
 * `meta.driverAdapterError`) and handed to translateDatabaseError. Prisma's own "could not start
 * a transaction in time" (P2028) is the pool being busy. Anything else stays as it is (a masked
 * INTERNAL at the error edge).
 */
export function translatePrismaError(error: unknown): unknown {
  if (error instanceof KernelError) return error;
  const state = sqlStateIn(error, 0);
  if (state) return translateDatabaseError(Object.assign(new Error((error as Error).message), { code: state, cause: error }));
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'P2028') {
    return new KernelError(Status.UNAVAILABLE, 'DATABASE_BUSY', 'no database connection became free in time; retry', { retryDelayMs: 200, cause: error });
  }
  // Lost or refused connections carry no SQLSTATE: the adapter names them by kind.
  const kind = adapterKindIn(error, 0);
  if (kind && CONNECTION_KINDS.has(kind)) {
    return new KernelError(Status.UNAVAILABLE, 'DATABASE_UNAVAILABLE', 'the database is unavailable; retry', { retryDelayMs: 500, cause: error });
  }
  return translateDatabaseError(error);
}

/** @prisma/adapter-pg's kinds for sockets that failed (what the pg path reads from the message). */
const CONNECTION_KINDS = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections']);

function adapterKindIn(error: unknown, depth: number): string | undefined {
  if (depth > 5 || error === null || typeof error !== 'object') return undefined;
  const e = error as { kind?: unknown; cause?: unknown; meta?: { driverAdapterError?: unknown } };
  if (typeof e.kind === 'string') return e.kind;
  return adapterKindIn(e.cause, depth + 1) ?? adapterKindIn(e.meta?.driverAdapterError, depth + 1);
}

function sqlStateIn(error: unknown, depth: number): string | undefined {
  if (depth > 5 || error === null || typeof error !== 'object') return undefined;
  const e = error as { originalCode?: unknown; code?: unknown; kind?: unknown; cause?: unknown; meta?: { driverAdapterError?: unknown } };
  for (const candidate of [e.originalCode, e.kind === 'postgres' ? e.code : undefined]) {
    if (typeof candidate === 'string' && /^[0-9A-Z]{5}$/.test(candidate)) return candidate;
  }
  return sqlStateIn(e.cause, depth + 1) ?? sqlStateIn(e.meta?.driverAdapterError, depth + 1);
}
