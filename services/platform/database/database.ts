import { Pool, type PoolClient, type PoolConfig, type QueryResult } from 'pg';
import type { Logger } from '../observability/logger';
import { inlineParameters } from './inline-parameters';
import { translateDatabaseError } from './postgres-errors';

/** The non-owner role every kernel transaction runs as; RLS applies to it (law 2). */
export const APP_ROLE = 'axis_kernel_app';
/** The transaction-local setting the RLS policies compare tenant_id with. */
export const TENANT_SETTING = 'axis.tenant_id';

/** Parameterised SQL on one connection. */
export interface Sql {
  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<Row[]>;
}

/** A transaction bound to one tenant, running as the application role. */
export interface TenantTransaction extends Sql {
  readonly tenantId: string;
  /**
   * Queues parameterless statements (SAVEPOINT …) to travel in the same round trip as the next
   * query. They are never sent if no query follows.
   */
  prefixNextQuery(statements: string): void;
  /** Drops queued statements no query has carried yet; returns whether there were any. */
  dropPendingPrefix(): boolean;
  /**
   * Runs `fn` once the transaction has committed (never if it rolls back): in-memory caches
   * must only learn facts that are durable.
   */
  onCommit(fn: () => void): void;
  /** State that lives as long as this transaction (e.g. a batcher of its statements), made on first use. */
  scoped<T>(key: object, create: () => T): T;
}

export interface TransactionOptions {
  readOnly?: boolean;
}

/**
 * The kernel's only way to the database for request work. Every transaction switches to the
 * application role and sets the tenant with transaction-local settings, in the same round trip
 * as BEGIN, so that nothing can leak between calls sharing a pooled connection — nor between
 * connections of the embedded database, which are one backend session.
 */
export class Database {
  readonly pool: Pool;

  constructor(config: PoolConfig, log?: Logger) {
    this.pool = new Pool(config);
    // An idle client's connection can drop (server restart): the pool replaces it; that must
    // not crash the process, and it must not go unnoticed either (law 10).
    this.pool.on('error', (error) => log?.error({ err: error }, 'idle database connection failed; the pool will replace it'));
  }

  /** Runs `fn` in a transaction scoped to `tenantId`; commits when it resolves, rolls back when it throws. */
  async inTenantTransaction<T>(tenantId: string, fn: (tx: TenantTransaction) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    return this.transaction(tenantId, fn, options);
  }

  /**
   * Runs `fn` as the application role with no tenant: RLS hides every tenant row, so this is only
   * good for calling the SECURITY DEFINER system functions (audit sequencing, reservation expiry).
   */
  async asSystem<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    return this.transaction('', fn, {});
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async transaction<T>(tenantId: string, fn: (tx: TenantTransaction) => Promise<T>, options: TransactionOptions): Promise<T> {
    const tx = new PooledTransaction(this.pool, tenantId, options.readOnly === true);
    try {
      const result = await fn(tx);
      await tx.commit();
      return result;
    } catch (error) {
      await tx.rollback();
      throw translateDatabaseError(error);
    } finally {
      tx.release();
    }
  }
}

/**
 * A transaction that takes its connection and sends BEGIN (with the role and tenant settings)
 * only when its first query runs — a call served entirely from memory costs no database round
 * trip — and that sends queued statements (BEGIN, SAVEPOINT) in the same simple-protocol message
 * as the query that follows them, with that query's parameters inlined as literals
 * (inline-parameters.ts). Round trips are what a call waits for here, so each one saved counts.
 */
class PooledTransaction implements TenantTransaction {
  private client?: PoolClient;
  private connecting?: Promise<PoolClient>;
  private prefix: string[] = [];
  private committed: Array<() => void> = [];
  private readonly state = new Map<object, unknown>();
  private tail: Promise<unknown> = Promise.resolve();
  private started = false;
  private broken = false;

  constructor(
    private readonly pool: Pool,
    readonly tenantId: string,
    private readonly readOnly: boolean,
  ) {}

  prefixNextQuery(statements: string): void {
    this.prefix.push(statements);
  }

  onCommit(fn: () => void): void {
    this.committed.push(fn);
  }

  scoped<T>(key: object, create: () => T): T {
    if (!this.state.has(key)) this.state.set(key, create());
    return this.state.get(key) as T;
  }

  dropPendingPrefix(): boolean {
    const had = this.prefix.length > 0;
    this.prefix = [];
    return had;
  }

  /**
   * Statements of one transaction run one after another on its connection, in call order, even
   * when concurrent calls of a commit group issue them at once. The next one is sent from the
   * previous one's completion (a microtask), before any other I/O is handled.
   */
  query<Row>(text: string, params: readonly unknown[] = []): Promise<Row[]> {
    const run = this.tail.then(() => this.send<Row>(text, params));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async send<Row>(text: string, params: readonly unknown[]): Promise<Row[]> {
    const client = await (this.connecting ??= this.connect());
    if (!this.started) {
      this.started = true;
      this.prefix.unshift(
        `BEGIN${this.readOnly ? ' READ ONLY' : ''}; SELECT set_config('role', '${APP_ROLE}', true), set_config('${TENANT_SETTING}', ${client.escapeLiteral(this.tenantId)}, true)`,
      );
    }
    if (this.prefix.length === 0) {
      const result = await client.query(text, params as unknown[]);
      return result.rows as Row[];
    }
    const statements = [...this.prefix, inlineParameters(text, params)].join(';\n');
    this.prefix = [];
    const results = (await client.query(statements)) as unknown as QueryResult | QueryResult[];
    return (Array.isArray(results) ? results[results.length - 1] : results).rows as Row[];
  }

  async commit(): Promise<void> {
    await this.tail;
    this.prefix = [];
    if (this.started) await this.client!.query('COMMIT');
    for (const fn of this.committed) fn();
  }

  async rollback(): Promise<void> {
    await this.tail;
    this.prefix = [];
    this.committed = [];
    if (!this.started) return;
    try {
      await this.client!.query('ROLLBACK');
    } catch {
      this.broken = true;
    }
  }

  release(): void {
    this.client?.release(this.broken);
    this.client = undefined;
  }

  private async connect(): Promise<PoolClient> {
    this.client = await this.pool.connect();
    return this.client;
  }
}
