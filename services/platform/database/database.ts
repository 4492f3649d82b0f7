import { SpanKind, SpanStatusCode, type Context as OtelContext, type Tracer } from '@opentelemetry/api';
import { Status } from 'nice-grpc-common';
import { Pool, type PoolClient, type PoolConfig, type QueryResult } from 'pg';
import type { CancelSignal } from '../cancel-signal';
import { KernelError } from '../kernel-error';
import type { Logger } from '../observability/logger';
import { ConnectionGate } from './connection-gate';
import { inlineParameters } from './inline-parameters';
import { translateDatabaseError } from './postgres-errors';
import type { DeferredWrite, Sql, StatementBatcher, TenantTransaction, TransactionControl, TransactionOptions } from './transaction';

export type { DeferredWrite, Sql, StatementBatcher, TenantTransaction, TransactionControl, TransactionOptions } from './transaction';

/** The non-owner role every kernel transaction runs as; RLS applies to it (see docs/laws.md#law-2, tenant isolation). */
export const APP_ROLE = 'axis_kernel_app';
/** The transaction-local setting the RLS policies compare tenant_id with. */
export const TENANT_SETTING = 'axis.tenant_id';
/** The gate's key for system work (no tenant). */
const SYSTEM_GATE_KEY = '\u0000system';
/**
 * A transaction left idle this long (a node whose event loop hangs while holding row locks) is
 * ended by PostgreSQL: its session is closed and its locks are released for everyone else.
 */
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;

/** The role a pool logs in as, and what it could do without the kernel's per-transaction switch. */
export interface LoginRole {
  name: string;
  superuser: boolean;
  bypassRls: boolean;
  /** Member of the application role (it must be: every transaction switches to it). */
  mayActAsApp: boolean;
  /** Owns kernel tables (an owner can turn row-level security off). */
  ownsTables: boolean;
}

export interface DatabaseOptions {
  /** Connections of this node (the pool's size; the gate's capacity). */
  poolSize: number;
  /** At most this many transactions of one tenant at once (a stuck tenant never takes the pool). */
  connectionsPerTenant: number;
  /** Every statement of every transaction: longer is cancelled (57014). */
  statementTimeoutMs: number;
  /** Every lock wait: longer fails (55P03, answered ABORTED and retryable). */
  lockTimeoutMs: number;
  /** Longest wait for a connection (then UNAVAILABLE DATABASE_BUSY with RetryInfo). */
  acquireTimeoutMs: number;
  log?: Logger;
  /** Set when spans are exported: every statement of a transaction with a trace gets a span. */
  tracer?: Tracer;
}

/**
 * The kernel's only way to the database. Every transaction switches to the application role and
 * sets the tenant, the statement timeout and the lock timeout with transaction-local settings in
 * the same round trip as BEGIN, so that nothing can leak between calls sharing a pooled
 * connection — nor between connections of the embedded database, which are one backend session.
 *
 * Every checked-out connection has an error listener: a connection PostgreSQL terminates while a
 * transaction holds it (a restart, pg_terminate_backend) fails that transaction with a retryable
 * UNAVAILABLE and is discarded; the pool opens fresh connections when the database is back.
 */
export class Database {
  private readonly pool: Pool;
  private readonly gate: ConnectionGate;

  constructor(
    config: PoolConfig,
    readonly options: DatabaseOptions,
  ) {
    this.pool = new Pool({ ...config, max: options.poolSize, connectionTimeoutMillis: options.acquireTimeoutMs });
    this.gate = new ConnectionGate(options.poolSize, options.connectionsPerTenant, options.acquireTimeoutMs);
    // An idle client's connection can drop (server restart): the pool replaces it; that must
    // not crash the process, and it must not go unnoticed either (nothing fails silently).
    // pg-pool hangs the failed client on the error (`error.client`): logged as is, every such line
    // carried the whole connection object. The message and SQLSTATE are what tell what happened.
    this.pool.on('error', (error) =>
      options.log?.warn({ err: { type: error.name, message: error.message, code: (error as { code?: string }).code } }, 'idle database connection failed; the pool will replace it'),
    );
  }

  /** Runs `fn` in a transaction scoped to `tenantId`; commits when it resolves, rolls back when it throws. */
  inTenantTransaction<T>(tenantId: string, fn: (tx: TransactionControl) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    return this.transaction(tenantId, tenantId, fn, options);
  }

  /**
   * SYSTEM WORK, BYPASSING NOTHING: runs `fn` as the application role with no tenant, so row-level
   * security hides every tenant row. Only good for calling the SECURITY DEFINER system functions
   * (claims, sweeps, discovery of pending work) that decide for themselves what they may touch.
   */
  asSystem<T>(fn: (sql: Sql) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    return this.transaction(SYSTEM_GATE_KEY, '', fn, options);
  }

  /**
   * One system statement in ONE round trip (BEGIN, role, statement and COMMIT in one message): the
   * scheduler's hot path. `asyncCommit` commits without waiting for the WAL flush (bookkeeping a
   * crash may lose without harm; the caller says why it may).
   */
  async systemCall<Row>(text: string, params: readonly unknown[], options: { asyncCommit?: boolean; signal?: CancelSignal } = {}): Promise<Row[]> {
    const release = await this.gate.acquire(SYSTEM_GATE_KEY, options.signal);
    let lease: Lease | undefined;
    try {
      lease = await this.checkout();
      const commitMode = options.asyncCommit ? '; SET LOCAL synchronous_commit = off' : '';
      const results = (await lease.client.query(
        `${beginStatement('', false, this.options)}${commitMode}; ${inlineParameters(text, params)}; COMMIT`,
      )) as unknown as Array<{ rows: Row[] }>;
      return results[results.length - 2].rows;
    } catch (error) {
      if (lease && !lease.broken) await lease.client.query('ROLLBACK').catch(() => lease!.markBroken());
      throw translateDatabaseError(error);
    } finally {
      lease?.release();
      release();
    }
  }

  /** Who the pool logs in as, before any transaction switches role: what least privilege is checked against. */
  async loginRole(): Promise<LoginRole> {
    const lease = await this.checkout();
    try {
      const { rows } = await lease.client.query<LoginRole>(
        `SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolbypassrls AS "bypassRls",
                pg_has_role(r.oid, '${APP_ROLE}', 'MEMBER') AS "mayActAsApp",
                EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = r.oid AND c.relnamespace = 'public'::regnamespace) AS "ownsTables"
           FROM pg_roles r WHERE r.rolname = current_user`,
      );
      return rows[0];
    } finally {
      lease.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async transaction<T>(gateKey: string, tenantId: string, fn: (tx: TransactionControl) => Promise<T>, options: TransactionOptions): Promise<T> {
    const release = await this.gate.acquire(gateKey, options.signal);
    const tx = new PooledTransaction(
      () => this.checkout(),
      tenantId,
      options.readOnly === true,
      { ...this.options, statementTimeoutMs: options.statementTimeoutMs ?? this.options.statementTimeoutMs },
      this.options.tracer && options.trace ? { tracer: this.options.tracer, parent: options.trace } : undefined,
    );
    try {
      const result = await fn(tx);
      await tx.commit();
      return result;
    } catch (error) {
      await tx.rollback();
      throw translateDatabaseError(error);
    } finally {
      tx.release();
      release();
    }
  }

  /** A pooled connection with an error listener for as long as it is checked out. */
  private async checkout(): Promise<Lease> {
    const client = await this.pool.connect().catch((error: unknown) => {
      // Whatever kept us from a connection (refused, timed out, authentication), the database is
      // not available to this call: retryable, and surfaced in the error log by the error edge.
      throw new KernelError(Status.UNAVAILABLE, 'DATABASE_UNAVAILABLE', 'the database is unavailable; retry', { retryDelayMs: 500, cause: error });
    });
    return new Lease(client, this.options.log);
  }
}

/** A statement waiting to travel with the next message; `statements` is how many results it yields. */
interface Queued {
  text: string;
  statements: number;
  deliver?: { resolve(rows: unknown[]): void; reject(error: unknown): void };
}

/** One checked-out connection. pg-pool removes its own error listener while a client is out. */
class Lease {
  broken = false;
  private readonly onError = (error: Error) => {
    // The query in flight (if any) rejects on its own; this only keeps the process alive and
    // makes sure the connection is discarded rather than returned to the pool.
    this.broken = true;
    this.log?.warn({ err: error }, 'database connection failed while in use; it will be discarded');
  };

  constructor(
    readonly client: PoolClient,
    private readonly log?: Logger,
  ) {
    client.on('error', this.onError);
  }

  markBroken(): void {
    this.broken = true;
  }

  release(): void {
    this.client.off('error', this.onError);
    this.client.release(this.broken ? new Error('connection discarded') : undefined);
  }
}

/**
 * THE opening statement of every kernel transaction: the application role, the tenant and the
 * timeouts, transaction-local (`set_config(…, true)`), so nothing outlives the transaction — on a
 * pooled connection, or on the embedded database whose connections share one session. Every path
 * to tenant data (this class, the scheduler's system calls, the Prisma client) opens with it.
 */
export function transactionSettings(
  tenantId: string,
  timeouts: { statementTimeoutMs: number; lockTimeoutMs: number },
  options: { readOnly?: boolean } = {},
): string {
  return (
    `SELECT set_config('role', '${APP_ROLE}', true), ` +
    // For a client that cannot say BEGIN READ ONLY (Prisma): read-only from here on, this transaction only.
    (options.readOnly ? `set_config('transaction_read_only', 'on', true), ` : '') +
    `set_config('${TENANT_SETTING}', '${tenantId.replace(/'/g, "''")}', true), ` +
    `set_config('statement_timeout', '${Math.round(timeouts.statementTimeoutMs)}', true), ` +
    `set_config('lock_timeout', '${Math.round(timeouts.lockTimeoutMs)}', true), ` +
    `set_config('idle_in_transaction_session_timeout', '${IDLE_IN_TRANSACTION_TIMEOUT_MS}', true)`
  );
}

function beginStatement(tenantId: string, readOnly: boolean, timeouts: { statementTimeoutMs: number; lockTimeoutMs: number }): string {
  return `BEGIN${readOnly ? ' READ ONLY' : ''}; ${transactionSettings(tenantId, timeouts)}`;
}

/**
 * What a statement's span is named after: its command and first table, never its text (a
 * statement may carry inlined values) — e.g. `INSERT kernel_audit_event`, `SELECT sequence_series`.
 */
function statementSummary(text: string): string {
  const command = /^\s*([A-Za-z]+)/.exec(text)?.[1]?.toUpperCase() ?? 'STATEMENT';
  const table = /\b(?:FROM|INTO|UPDATE)\s+([a-z_][a-z0-9_]*)/i.exec(text)?.[1];
  return table ? `${command} ${table}` : command;
}

/**
 * A transaction that takes its connection and sends BEGIN (with the role, tenant and timeouts)
 * only when its first query runs — a call served entirely from memory costs no database round
 * trip — and that sends queued statements (BEGIN, SAVEPOINT, a commit group's key claim) in the
 * same simple-protocol message as the query that follows them, with parameters inlined as
 * literals (inline-parameters.ts). Deferred writes travel with COMMIT. Round trips are what a
 * call waits for here, so each one saved counts.
 */
class PooledTransaction implements TransactionControl {
  private lease?: Lease;
  private connecting?: Promise<Lease>;
  /** Statements waiting for the next message; those with `deliver` were queued for their rows. */
  private prefix: Queued[] = [];
  private committed: Array<() => void> = [];
  private readonly deferred = new Map<DeferredWrite<unknown>, unknown[]>();
  private tail: Promise<unknown> = Promise.resolve();
  private started = false;

  constructor(
    private readonly checkout: () => Promise<Lease>,
    readonly tenantId: string,
    private readonly readOnly: boolean,
    private readonly timeouts: { statementTimeoutMs: number; lockTimeoutMs: number },
    private readonly spans?: { tracer: Tracer; parent: OtelContext },
  ) {}

  prefixNextQuery(statements: string): void {
    // Parameterless statements (no literals), so each `;` separates two of them.
    this.prefix.push({ text: statements, statements: statements.split(';').length });
  }

  dropPendingPrefix(): boolean {
    const before = this.prefix.length;
    this.prefix = this.prefix.filter((entry) => entry.deliver);
    return this.prefix.length < before;
  }

  queue<Row>(text: string, params: readonly unknown[] = []): Promise<Row[]> {
    return new Promise<Row[]>((resolve, reject) => {
      this.prefix.push({ text: inlineParameters(text, params), statements: 1, deliver: { resolve: resolve as (rows: unknown[]) => void, reject } });
    });
  }

  flush(): Promise<void> {
    const run = this.tail.then(() => (this.prefix.some((entry) => entry.deliver) ? this.sendMessage([]) : undefined));
    this.tail = run.catch(() => undefined);
    return run.then(() => undefined);
  }

  onCommit(fn: () => void): void {
    this.committed.push(fn);
  }

  async batch<Ask, Result>(batcher: StatementBatcher<Ask, Result>, ask: Ask): Promise<Result> {
    const [result] = await batcher.run(this, [ask]);
    if (result instanceof Error) throw result;
    return result;
  }

  defer<Item>(write: DeferredWrite<Item>, item: Item): void {
    if (this.readOnly) throw new Error(`${write.name}: a read-only transaction writes nothing`);
    const items = this.deferred.get(write as DeferredWrite<unknown>);
    if (items) items.push(item);
    else this.deferred.set(write as DeferredWrite<unknown>, [item]);
  }

  /**
   * Statements of one transaction run one after another on its connection, in call order, even
   * when several callers issue them at once. The next one is sent from the previous one's
   * completion (a microtask), before any other I/O is handled.
   */
  query<Row>(text: string, params: readonly unknown[] = []): Promise<Row[]> {
    const run = this.tail.then(() => this.send<Row>(text, params));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async send<Row>(text: string, params: readonly unknown[]): Promise<Row[]> {
    if (!this.spans) return this.sendUntraced<Row>(text, params);
    const span = this.spans.tracer.startSpan(
      `db ${statementSummary(text)}`,
      { kind: SpanKind.CLIENT, attributes: { 'db.system': 'postgresql', 'db.operation': statementSummary(text), 'axis.tenant': this.tenantId } },
      this.spans.parent,
    );
    try {
      return await this.sendUntraced<Row>(text, params);
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as { code?: string }).code ?? 'error' });
      throw error;
    } finally {
      span.end();
    }
  }

  private async sendUntraced<Row>(text: string, params: readonly unknown[]): Promise<Row[]> {
    const { client } = await this.connection();
    if (this.prefix.length === 0) {
      const result = await client.query(text, params as unknown[]);
      return result.rows as Row[];
    }
    const results = await this.sendMessage([inlineParameters(text, params)]);
    return results[results.length - 1].rows as Row[];
  }

  /**
   * Sends the waiting statements and then `statements` as ONE simple-protocol message; hands each
   * queued statement its rows (or the message's error). Returns every statement's result.
   */
  private async sendMessage(statements: string[]): Promise<QueryResult[]> {
    const { client } = await this.connection();
    const entries = this.prefix;
    this.prefix = [];
    let results: QueryResult[];
    try {
      const answer = (await client.query([...entries.map((entry) => entry.text), ...statements].join(';\n'))) as unknown as QueryResult | QueryResult[];
      results = Array.isArray(answer) ? answer : [answer];
    } catch (error) {
      for (const entry of entries) entry.deliver?.reject(error);
      throw error;
    }
    let index = 0;
    for (const entry of entries) {
      index += entry.statements;
      entry.deliver?.resolve(results[index - 1].rows);
    }
    return results;
  }

  private async connection(): Promise<Lease> {
    const lease = await (this.connecting ??= this.checkout().then((l) => (this.lease = l)));
    if (!this.started) {
      this.started = true;
      this.prefix.unshift({ text: beginStatement(this.tenantId, this.readOnly, this.timeouts), statements: 2 });
    }
    return lease;
  }

  /** Sends the deferred writes and COMMIT in one message (BEGIN too, if nothing was sent yet). */
  async commit(): Promise<void> {
    await this.tail;
    const writes = [...this.deferred.entries()].sort(([a], [b]) => a.order - b.order);
    if (writes.length === 0 && !this.started && !this.prefix.some((entry) => entry.deliver)) {
      this.prefix = [];
    } else {
      const statements = writes.map(([write, items]) => {
        const { text, params } = write.statement(this.tenantId, items);
        return inlineParameters(text, params);
      });
      this.deferred.clear();
      await this.sendMessage([...statements, 'COMMIT']);
    }
    for (const fn of this.committed) fn();
  }

  async rollback(): Promise<void> {
    await this.tail;
    for (const entry of this.prefix) entry.deliver?.reject(new Error('the transaction rolled back before this statement was sent'));
    this.prefix = [];
    this.committed = [];
    this.deferred.clear();
    if (!this.started || !this.lease || this.lease.broken) return;
    try {
      await this.lease.client.query('ROLLBACK');
    } catch {
      this.lease.markBroken();
    }
  }

  release(): void {
    this.lease?.release();
    this.lease = undefined;
  }
}
