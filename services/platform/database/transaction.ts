import type { Context as OtelContext } from '@opentelemetry/api';
import type { CancelSignal } from '../cancel-signal';

/** Parameterised SQL on one connection. */
export interface Sql {
  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<Row[]>;
}

/**
 * A set-based statement that serves many calls at once: the asks of a commit group's calls that
 * share a key are answered by ONE atomic statement (e.g. the numbers of one series and period
 * allocated together). Outside a commit group an ask simply runs alone.
 *
 * The committer only lets a call's ask join the group's batch when the batched statement is the
 * call's ONLY database statement (nothing before it; nothing after it, which is enforced): such a
 * call behaves exactly as if it ran whole at the moment the batch runs, so a group with batches
 * is still equivalent to its calls executed one after another. A call that touched the database
 * before asking runs its ask at once, alone.
 */
export interface StatementBatcher<Ask, Result> {
  /** Names the batcher in errors and logs. */
  readonly name: string;
  /**
   * Asks with equal keys share a statement. Statements of one group run in key order, so every
   * group (on every node) takes the row locks of batched statements in the same global order.
   */
  key(ask: Ask): string;
  /**
   * Answers every ask (all with the same key) in ask order, with ONE atomic statement (a read of
   * immutable data may precede it, e.g. a definition the statement needs). An ask it cannot serve
   * is answered with an Error in its place, and must then have changed nothing; the others are
   * unaffected. Nothing else of the group runs between its statements.
   */
  run(tx: TenantTransaction, asks: readonly Ask[]): Promise<ReadonlyArray<Result | Error>>;
  /**
   * True when the statement changes nothing a rollback would have to undo (reads; sequence
   * draws): a call that fails after such an ask is answered alone, without re-running its group.
   */
  readonly changesNothing?: boolean;
}

/**
 * A write every transaction may contribute items to, sent as ONE statement together with COMMIT
 * (same round trip): idempotency records, audit entries. Ordered by `order` (lower first).
 */
export interface DeferredWrite<Item> {
  readonly name: string;
  /** The audit writer is last, so that the tenant's audit head is the last lock a transaction takes. */
  readonly order: number;
  /** The statement writing every item of the transaction; it may raise to refuse the commit. */
  statement(tenantId: string, items: readonly Item[]): { text: string; params: readonly unknown[] };
}

/**
 * A transaction bound to one tenant, running as the application role (row-level security
 * applies). What a capability's use-case functions receive.
 */
export interface TenantTransaction extends Sql {
  readonly tenantId: string;
  /** Runs `ask` through `batcher`: batched with the group's other asks when allowed, else at once. */
  batch<Ask, Result>(batcher: StatementBatcher<Ask, Result>, ask: Ask): Promise<Result>;
  /** Adds an item to a deferred write, sent with COMMIT (never if the transaction rolls back). */
  defer<Item>(write: DeferredWrite<Item>, item: Item): void;
  /**
   * Runs `fn` once the transaction has committed (never if it rolls back): in-memory caches
   * must only learn facts that are durable.
   */
  onCommit(fn: () => void): void;
}

/** What platform code that drives a transaction (the committer, the batch runner) may also do. */
export interface TransactionControl extends TenantTransaction {
  /**
   * Queues parameterless statements (SAVEPOINT …) to travel in the same round trip as the next
   * query. They are never sent if no query follows.
   */
  prefixNextQuery(statements: string): void;
  /** Drops the `prefixNextQuery` statements no query has carried yet; returns whether there were any. */
  dropPendingPrefix(): boolean;
  /**
   * Queues a statement to travel in the same message as the next query (or COMMIT), after the
   * statements queued before it: no round trip of its own. Its rows resolve when that message
   * returns; if the message fails, it rejects with the message's error (the statement may or may
   * not have run: a caller that can tell the transaction is still usable asks again).
   */
  queue<Row>(text: string, params?: readonly unknown[]): Promise<Row[]>;
  /** Sends the queued statements now, alone, if no query has carried them yet (rejects if they fail). */
  flush(): Promise<void>;
}

export interface TransactionOptions {
  readOnly?: boolean;
  /** The OpenTelemetry context whose span the transaction's statement spans are children of. */
  trace?: OtelContext;
  /** Aborts waiting for a connection (the call was cancelled or its deadline passed). */
  signal?: CancelSignal;
  /** Overrides the configured statement timeout (background work that scans more). */
  statementTimeoutMs?: number;
}
