import { SpanKind, SpanStatusCode, trace as otelTrace, type Context as OtelContext, type Link } from '@opentelemetry/api';
import { Status } from 'nice-grpc-common';
import type { CancelSignal } from '../cancel-signal';
import { AUDIT_ENTRIES, type AuditEntry } from '../audit/audit-log';
import type { Database, TransactionControl } from '../database/database';
import { translateDatabaseError } from '../database/postgres-errors';
import { invalidArgument, KernelError } from '../kernel-error';
import type { Metrics } from '../observability/metrics';
import type { Telemetry } from '../observability/telemetry';
import { runSerially, type Admission, type CallOutcome, type GroupCall } from './group-run';
import { IDEMPOTENCY_RECORDS, IDEMPOTENCY_STORE_CONFLICT } from './idempotency-records';

/** What one mutating call asks of the committer. */
export interface Mutation<T> {
  tenantId: string;
  /** `/package.Service/Method` */
  method: string;
  /**
   * The call's idempotency key. Absent for an audited read (a NO_SIDE_EFFECTS method whose
   * access must still be recorded): it takes no lock, replays nothing and stores no response,
   * but its audit entry commits with the group like any other.
   */
  idempotencyKey?: string;
  /** SHA-256 binding principal, method and request bytes: the same key with anything else is refused. */
  requestHash: Buffer;
  retentionHours: number;
  /** The call's cancellation (client cancel or deadline): a cancelled call is not started. */
  signal?: CancelSignal;
  /** The call's OpenTelemetry context (its server span): the commit group's span links to it. */
  trace?: OtelContext;
  /** Runs the change inside the group's transaction; returns the response, its bytes and the audit entries. */
  execute: GroupCall<ExecutedMutation<T>>['execute'];
  /** Turns a stored response back into the call's response (a replay). */
  decode(bytes: Buffer): T;
}

export interface ExecutedMutation<T> {
  response: T;
  responseBytes: Uint8Array;
  /** The call's audit entries (normally one; AppendEvents has one per event), written with COMMIT. */
  audit: readonly AuditEntry[];
}

export interface MutationOutcome<T> {
  response: T;
  replayed: boolean;
}

export interface CommitterOptions {
  telemetry?: Telemetry;
  metrics?: Metrics;
  /** Longest a call's handler may run inside its group (then DEADLINE_EXCEEDED, rolled back alone). */
  callTimeoutMs: number;
  /** Calls of one tenant waiting on this node beyond the running group (then RESOURCE_EXHAUSTED). */
  maxQueuedPerTenant: number;
}

interface Pending {
  mutation: Mutation<unknown>;
  /** Absent for an audited read (no idempotency key). */
  lockKey?: string;
  settled: boolean;
  resolve(outcome: MutationOutcome<unknown>): void;
  reject(error: unknown): void;
}

/**
 * Subtransactions that wrote get an XID each; past 64 in one transaction PostgreSQL's
 * per-backend subxid cache overflows and every snapshot in the cluster gets slower.
 */
const MAX_GROUP_SIZE = 60;

/** The text hashed into a call's advisory lock; `|` cannot occur in a tenant id or method path. */
export const idempotencyLockKey = (tenantId: string, methodPath: string, key: string) => `${tenantId}|${methodPath}|${key}`;

const keyInUse = () =>
  new KernelError(Status.ABORTED, 'IDEMPOTENCY_KEY_IN_USE', 'a call with this idempotency-key is still running; retry', {
    retryDelayMs: 100,
  });

const keyReused = () =>
  invalidArgument('IDEMPOTENCY_KEY_REUSED', 'this idempotency-key was used with a different request', [
    { field: 'idempotency-key', description: 'already used with a different request' },
  ]);

const cancelled = () => new KernelError(Status.CANCELLED, 'CANCELLED', 'the call was cancelled (or its deadline passed) before it started');

/**
 * The unit of work of every mutating call, committed in groups (group commit).
 *
 * Concurrent mutating calls of one tenant on this node queue up; one group at a time per
 * tenant runs in ONE tenant transaction:
 *   1. one statement takes every call's transaction-scoped advisory lock (held by another
 *      node ⇒ IDEMPOTENCY_KEY_IN_USE) and reads any stored responses (⇒ replay, or
 *      IDEMPOTENCY_KEY_REUSED for a different request) — travelling with the group's first
 *      statement, no round trip of its own: the first call runs speculatively until the claim
 *      is in, and is rolled back if refused (runSerially's admission);
 *   2. the remaining calls run ONE AFTER ANOTHER, each behind its own savepoint (group-run.ts):
 *      a call sees every earlier call's change, a failing call is rolled back alone, and the
 *      outcome of the group is the outcome of its calls executed in sequence — whatever the
 *      handlers do, without any of them having to remember it. Only set-based statements a
 *      capability declares (StatementBatcher: numbers of one series, signing material) serve
 *      several calls at once, and only for calls whose whole database work is that statement;
 *   3. with COMMIT, in the same round trip, one statement stores every call's response
 *      (idempotency record) and one appends every call's audit entry (deferred writes);
 *   4. only after COMMIT is any call of the group answered.
 * A call's change, its replay record and its audit entry therefore commit or vanish together,
 * as with one transaction per call, while the commit (its fsync) and the locks on hot rows
 * (a series counter) are held once per group instead of once per call. If COMMIT fails, every
 * call of the group gets the (retryable) failure and none was applied.
 *
 * Bounded everywhere: a call cancelled or past its deadline before its turn is not started; a
 * handler running longer than `callTimeoutMs` is answered DEADLINE_EXCEEDED and rolled back
 * alone; every statement has the database's statement and lock timeouts; a tenant's queue on
 * this node is bounded (RESOURCE_EXHAUSTED with RetryInfo beyond it).
 *
 * Because a call may run in an attempt that is rolled back and then run again, handlers of
 * mutating RPCs must act on the database only (effects elsewhere go through the scheduler).
 */
export class MutationCommitter {
  private readonly queues = new Map<string, Pending[]>();
  private readonly inFlight = new Set<string>();

  constructor(
    private readonly db: Database,
    private readonly options: CommitterOptions,
  ) {}

  submit<T>(mutation: Mutation<T>): Promise<MutationOutcome<T>> {
    const lockKey = mutation.idempotencyKey === undefined ? undefined : idempotencyLockKey(mutation.tenantId, mutation.method, mutation.idempotencyKey);
    if (lockKey !== undefined && this.inFlight.has(lockKey)) return Promise.reject(keyInUse());
    const queue = this.queues.get(mutation.tenantId);
    if (queue && queue.length >= this.options.maxQueuedPerTenant) {
      return Promise.reject(
        new KernelError(Status.RESOURCE_EXHAUSTED, 'COMMIT_QUEUE_FULL', `this node already queues ${queue.length} calls of the tenant; retry`, {
          retryDelayMs: 100,
          quotaViolations: [{ subject: `tenant:${mutation.tenantId}`, description: `at most ${this.options.maxQueuedPerTenant} queued mutating calls per node` }],
        }),
      );
    }
    if (lockKey !== undefined) this.inFlight.add(lockKey);
    return new Promise<MutationOutcome<T>>((resolve, reject) => {
      const settle = <A>(fn: (a: A) => void) => (a: A) => {
        if (pending.settled) return;
        if (lockKey !== undefined) this.inFlight.delete(lockKey);
        pending.settled = true;
        fn(a);
      };
      const pending: Pending = {
        mutation: mutation as Mutation<unknown>,
        lockKey,
        settled: false,
        resolve: settle(resolve as (o: MutationOutcome<unknown>) => void),
        reject: settle(reject),
      };
      if (queue) {
        queue.push(pending);
      } else {
        // The tenant's first group forms once this turn of the event loop has handed over what
        // arrived with this call: calls read from the socket together (a client's burst, the
        // answers of the previous group coming back as new calls) commit together, rather than
        // the first one alone in a group of one, then the few that came during its round trip.
        this.queues.set(mutation.tenantId, [pending]);
        setImmediate(() => void this.drain(mutation.tenantId));
      }
    });
  }

  /** Runs the tenant's groups one after another until its queue is empty. */
  private async drain(tenantId: string): Promise<void> {
    const queue = this.queues.get(tenantId)!;
    try {
      for (let group = queue.splice(0, MAX_GROUP_SIZE); group.length > 0; group = queue.splice(0, MAX_GROUP_SIZE)) {
        await this.runGroup(tenantId, group).catch((error) => {
          const failure = translateDatabaseError(error);
          for (const pending of group) pending.reject(failure);
        });
      }
    } finally {
      this.queues.delete(tenantId);
    }
  }

  /**
   * Runs one group: first with batching (calls whose only statement is a batched one share it);
   * if a call fails after a batched statement that changed something — its change cannot be
   * undone alone — the attempt rolls back and the group runs again without batching.
   */
  private async runGroup(tenantId: string, group: Pending[]): Promise<void> {
    const live = group.filter((pending) => {
      if (!pending.mutation.signal?.aborted) return true;
      pending.reject(cancelled());
      return false;
    });
    if (live.length === 0) return;
    if ((await this.attempt(tenantId, live, true)) === 'isolate') await this.attempt(tenantId, live, false);
  }

  private async attempt(tenantId: string, group: Pending[], batching: boolean): Promise<'done' | 'isolate'> {
    const answers: Array<{ pending: Pending; outcome: MutationOutcome<unknown> | { error: unknown } }> = [];
    this.options.metrics?.record('kernel.commit_group.size', group.length, { batching: String(batching) });
    // One span per attempt: a child of the first call's span, linked to every call of the group,
    // the parent of the group's statement spans — one transaction serves several traces.
    const spans = this.options.telemetry?.exporting ? this.options.telemetry : undefined;
    const links: Link[] = group.flatMap((p) => (p.mutation.trace ? [{ context: otelTrace.getSpanContext(p.mutation.trace)! }] : [])).filter((l) => l.context);
    const span = spans?.tracer.startSpan(
      'commit group',
      { kind: SpanKind.INTERNAL, links, attributes: { 'axis.tenant': tenantId, 'axis.commit_group.size': group.length, 'axis.commit_group.batching': batching } },
      group[0].mutation.trace,
    );
    const trace = span ? otelTrace.setSpan(group[0].mutation.trace!, span) : undefined;
    try {
      return await this.attemptIn(tenantId, group, batching, answers, trace);
    } catch (error) {
      span?.setStatus({ code: SpanStatusCode.ERROR });
      throw error;
    } finally {
      span?.end();
    }
  }

  private async attemptIn(tenantId: string, group: Pending[], batching: boolean, answers: Answers, trace: OtelContext | undefined): Promise<'done' | 'isolate'> {
    const rerun = await this.db.inTenantTransaction(tenantId, async (tx) => {
      const { calls, admission } = claimKeys(tx, group, answers);
      const ran = await runSerially<PendingCall, ExecutedMutation<unknown>>(tx, calls, { batching, callTimeoutMs: this.options.callTimeoutMs, admission });
      if (ran === 'isolate') throw new RerunIsolated();
      for (const { call, outcome } of ran) storeOutcome(tx, call, outcome, answers);
      return false;
    }, { trace }).catch((error: unknown) => {
      if (error instanceof RerunIsolated) return true;
      throw sqlState(error) === IDEMPOTENCY_STORE_CONFLICT ? keyInUse() : error;
    });
    if (rerun) return 'isolate';
    // Only now, after COMMIT, does any call of the group learn its outcome.
    for (const { pending, outcome } of answers) {
      if ('error' in outcome) pending.reject(translateDatabaseError(outcome.error));
      else pending.resolve(outcome);
    }
    return 'done';
  }
}

/** Thrown inside a batched attempt to roll it back and run the group without batching. */
class RerunIsolated extends Error {}

const sqlState = (error: unknown) => (error as { code?: unknown } | null)?.code;

type PendingCall = GroupCall<ExecutedMutation<unknown>> & { pending: Pending };

type Answers = Array<{ pending: Pending; outcome: MutationOutcome<unknown> | { error: unknown } }>;

/** A call that ran: its response and audit entries go with COMMIT; a failure is answered after it. */
function storeOutcome(tx: TransactionControl, call: PendingCall, outcome: CallOutcome<ExecutedMutation<unknown>>, answers: Answers): void {
  const { pending } = call;
  if ('error' in outcome) {
    answers.push({ pending, outcome });
    return;
  }
  const { mutation } = pending;
  const result = outcome.result;
  if (mutation.idempotencyKey !== undefined) {
    tx.defer(IDEMPOTENCY_RECORDS, {
      method: mutation.method,
      idempotencyKey: mutation.idempotencyKey,
      requestHash: mutation.requestHash,
      response: Buffer.from(result.responseBytes),
      retentionSeconds: mutation.retentionHours * 3600,
    });
  }
  for (const entry of result.audit) tx.defer(AUDIT_ENTRIES, entry);
  answers.push({ pending, outcome: { response: result.response, replayed: false } });
}

/**
 * The claim of a group's keys: each key's advisory lock and its live record, looked up by primary
 * key one key at a time (LATERAL … LIMIT 1, which the planner cannot flatten into a join). A plain
 * join let the planner (on statistics that lag a busy table) read EVERY live record of the
 * tenant into a hash table — 7,270 rows for 22 keys in a benchmark, a cost growing with the
 * tenant's retained records (24 h of traffic); tests/platform/lookup-plans.spec.ts holds the bound.
 * $1 tenant, $2 lock keys, $3 methods, $4 idempotency keys.
 */
export const CLAIM_KEYS = `SELECT pg_try_advisory_xact_lock(hashtextextended(k.lock_key, 0)) AS locked, r.request_hash, r.response
       FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS k(lock_key, method, idempotency_key, ord)
       LEFT JOIN LATERAL (
         SELECT rec.request_hash, rec.response FROM kernel_idempotency_record rec
          WHERE rec.tenant_id = $1 AND rec.method = k.method AND rec.idempotency_key = k.idempotency_key AND rec.expire_time > now()
          LIMIT 1 -- (the key is the primary key; LIMIT also keeps the planner from flattening the lookup into a join)
       ) r ON true
      ORDER BY k.ord`;

type ClaimRow = { locked: boolean; request_hash: Buffer | null; response: Buffer | null };

/**
 * Locks every call's key and reads stored responses in one statement, queued to travel with the
 * first statement any call of the group sends (no round trip of its own: runSerially starts the
 * first call speculatively and rolls it back if the claim refuses it). Refusals are answered as
 * soon as the claim is in (they depend on committed records only); replays after COMMIT, with
 * the rest. The calls: keyed ones first, then audited reads, in arrival order.
 */
function claimKeys(tx: TransactionControl, group: Pending[], answers: Answers): { calls: PendingCall[]; admission?: Admission<PendingCall> } {
  const asCall = (pending: Pending): PendingCall => ({ pending, signal: pending.mutation.signal, execute: pending.mutation.execute as GroupCall<ExecutedMutation<unknown>>['execute'] });
  const keyed = group.filter((p) => p.lockKey !== undefined);
  const calls = [...keyed, ...group.filter((p) => p.lockKey === undefined)].map(asCall);
  if (keyed.length === 0) return { calls };
  const params = [tx.tenantId, keyed.map((p) => p.lockKey!), keyed.map((p) => p.mutation.method), keyed.map((p) => p.mutation.idempotencyKey)];
  const queued = tx.queue<ClaimRow>(CLAIM_KEYS, params);
  queued.catch(() => undefined); // (its failure is the failure of the message that carried it)
  const decide = async () => {
    await tx.flush(); // nothing carried it yet: alone, as the group's first message
    // A call's failing statement failed the message that carried the claim; that call's savepoint
    // is rolled back by now and the claim (which ran before it) is asked again: the advisory
    // locks are the transaction's already, and taking them again succeeds.
    const rows = await queued.catch(() => tx.query<ClaimRow>(CLAIM_KEYS, params));
    const admitted = new Set<Pending>();
    rows.forEach((row, i) => {
      const pending = keyed[i];
      if (!row.locked) {
        pending.reject(keyInUse());
      } else if (row.request_hash && row.response) {
        if (!row.request_hash.equals(pending.mutation.requestHash)) pending.reject(keyReused());
        else answers.push({ pending, outcome: { response: pending.mutation.decode(row.response), replayed: true } });
      } else {
        admitted.add(pending);
      }
    });
    return (call: PendingCall) => call.pending.lockKey === undefined || admitted.has(call.pending);
  };
  return { calls, admission: { decide } };
}
