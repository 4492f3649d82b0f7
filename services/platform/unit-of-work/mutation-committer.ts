import { Status } from 'nice-grpc-common';
import type { AuditEntry } from '../audit/audit-log';
import type { Database, TenantTransaction } from '../database/database';
import { translateDatabaseError } from '../database/postgres-errors';
import { invalidArgument, KernelError } from '../kernel-error';

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
  /** Runs the change inside the group's transaction; returns the response, its bytes and the audit entry. */
  execute(tx: TenantTransaction): Promise<ExecutedMutation<T>>;
  /** Turns a stored response back into the call's response (a replay). */
  decode(bytes: Buffer): T;
}

export interface ExecutedMutation<T> {
  response: T;
  responseBytes: Uint8Array;
  /** The call's audit entries still to write: normally its one entry; none when the call wrote its own (AppendEvents). */
  audit: readonly AuditEntry[];
}

export interface MutationOutcome<T> {
  response: T;
  replayed: boolean;
}

interface Pending {
  mutation: Mutation<unknown>;
  /** Absent for an audited read (no idempotency key). */
  lockKey?: string;
  /** Answered already (refused at claim time, or failed before touching the database). */
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

/**
 * The unit of work of every mutating call, committed in groups (group commit).
 *
 * Concurrent mutating calls of one tenant on this node queue up; one group at a time per
 * tenant runs in ONE tenant transaction:
 *   1. one statement takes every call's transaction-scoped advisory lock (held by another
 *      node ⇒ IDEMPOTENCY_KEY_IN_USE) and reads any stored responses (⇒ replay, or
 *      IDEMPOTENCY_KEY_REUSED for a different request);
 *   2. the remaining calls run their handlers — first all at once (see runGroup); if one of
 *      them fails after touching the database, the attempt is rolled back and they run again
 *      one at a time, each behind its own SAVEPOINT, so a failing call is rolled back alone
 *      and answered with its own error;
 *   3. one statement stores every call's response (idempotency record) and its audit entry;
 *   4. COMMIT — only then is any successful call answered.
 * A call's change, its replay record and its audit entry therefore commit or vanish together,
 * as with one transaction per call, while the commit (its fsync) and the locks on hot rows
 * (a series counter) are held once per group instead of once per call. If COMMIT fails, every
 * call of the group gets the (retryable) failure and none was applied.
 *
 * A second call with a key that is still queued or running on this node is refused with
 * IDEMPOTENCY_KEY_IN_USE at once; on another node the advisory lock says the same.
 *
 * Because a call may run in an attempt that is rolled back and then run again, handlers of
 * mutating RPCs must act on the database only (effects elsewhere go through an outbox).
 */
export class MutationCommitter {
  private readonly queues = new Map<string, Pending[]>();
  private readonly inFlight = new Set<string>();

  constructor(private readonly db: Database) {}

  submit<T>(mutation: Mutation<T>): Promise<MutationOutcome<T>> {
    const lockKey = mutation.idempotencyKey === undefined ? undefined : idempotencyLockKey(mutation.tenantId, mutation.method, mutation.idempotencyKey);
    if (lockKey !== undefined) {
      if (this.inFlight.has(lockKey)) return Promise.reject(keyInUse());
      this.inFlight.add(lockKey);
    }
    return new Promise<MutationOutcome<T>>((resolve, reject) => {
      const settle = <A>(fn: (a: A) => void) => (a: A) => {
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
      const queue = this.queues.get(mutation.tenantId);
      if (queue) {
        queue.push(pending);
      } else {
        this.queues.set(mutation.tenantId, [pending]);
        void this.drain(mutation.tenantId);
      }
    });
  }

  /** Runs the tenant's groups one after another until its queue is empty. */
  private async drain(tenantId: string): Promise<void> {
    const queue = this.queues.get(tenantId)!;
    try {
      while (queue.length > 0) {
        const group = queue.splice(0, MAX_GROUP_SIZE);
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
   * Runs one group: first optimistically, every call at once in one transaction without
   * savepoints — their statements queue on the connection and reach the server back to back,
   * with no event-loop turn between one call's statement and the next. If a call fails after it
   * touched the database, its partial work cannot be undone alone: the whole attempt rolls back
   * and the group runs again isolated, one call at a time behind savepoints. Calls that fail
   * before touching the database (validation) are simply answered.
   */
  private async runGroup(tenantId: string, group: Pending[]): Promise<void> {
    const optimistic = await this.attempt(tenantId, group, 'concurrent');
    if (optimistic === 'isolate') await this.attempt(tenantId, group.filter((p) => !p.settled), 'isolated');
  }

  private async attempt(tenantId: string, group: Pending[], mode: 'concurrent' | 'isolated'): Promise<'done' | 'isolate'> {
    const committed: Array<{ pending: Pending; outcome: MutationOutcome<unknown> }> = [];
    try {
      await this.db.inTenantTransaction(tenantId, async (tx) => {
        const fresh = await this.claimKeys(tx, group, committed);
        const executed = mode === 'concurrent' ? await runConcurrently(tx, fresh) : await runIsolated(tx, fresh);
        if (executed.length > 0) await storeResponsesAndAudit(tx, tenantId, executed);
        for (const { pending, result } of executed) committed.push({ pending, outcome: { response: result.response, replayed: false } });
      });
    } catch (error) {
      if (error instanceof IsolateGroup) return 'isolate';
      throw error;
    }
    // Only now, after COMMIT, does any call of the group learn that it succeeded.
    for (const { pending, outcome } of committed) pending.resolve(outcome);
    return 'done';
  }

  /**
   * Locks every call's key and reads stored responses in one statement. Replays and refusals
   * are settled here (replays only after COMMIT, with the rest); the calls left are returned.
   */
  private async claimKeys(tx: TenantTransaction, group: Pending[], committed: Array<{ pending: Pending; outcome: MutationOutcome<unknown> }>): Promise<Pending[]> {
    const keyless = group.filter((p) => p.lockKey === undefined);
    group = group.filter((p) => p.lockKey !== undefined);
    if (group.length === 0) return keyless;
    const rows = await tx.query<{ locked: boolean; request_hash: Buffer | null; response: Buffer | null }>(
      `SELECT pg_try_advisory_xact_lock(hashtextextended(k.lock_key, 0)) AS locked, r.request_hash, r.response
         FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS k(lock_key, method, idempotency_key, ord)
         LEFT JOIN kernel_idempotency_record r
           ON r.tenant_id = $1 AND r.method = k.method AND r.idempotency_key = k.idempotency_key AND r.expire_time > now()
        ORDER BY k.ord`,
      [
        tx.tenantId,
        group.map((p) => p.lockKey!),
        group.map((p) => p.mutation.method),
        group.map((p) => p.mutation.idempotencyKey),
      ],
    );
    const fresh: Pending[] = [];
    rows.forEach((row, i) => {
      const pending = group[i];
      if (!row.locked) {
        pending.reject(keyInUse());
      } else if (row.request_hash && row.response) {
        if (!row.request_hash.equals(pending.mutation.requestHash)) pending.reject(keyReused());
        else committed.push({ pending, outcome: { response: pending.mutation.decode(row.response), replayed: true } });
      } else {
        fresh.push(pending);
      }
    });
    return [...fresh, ...keyless];
  }
}

type Executed = Array<{ pending: Pending; result: ExecutedMutation<unknown> }>;

/** Thrown inside an optimistic attempt to roll it back and run the group isolated. */
class IsolateGroup extends Error {}

async function runConcurrently(tx: TenantTransaction, fresh: Pending[]): Promise<Executed> {
  const outcomes = await Promise.all(
    fresh.map(async (pending) => {
      let touched = false;
      const callTx: TenantTransaction = {
        tenantId: tx.tenantId,
        query: (text, params) => {
          touched = true;
          return tx.query(text, params);
        },
        prefixNextQuery: (statements) => tx.prefixNextQuery(statements),
        dropPendingPrefix: () => tx.dropPendingPrefix(),
        onCommit: (fn) => tx.onCommit(fn),
        // Transaction-scoped state (a statement batcher) may write on this call's behalf.
        scoped: (key, create) => {
          touched = true;
          return tx.scoped(key, create);
        },
      };
      try {
        return { pending, result: await pending.mutation.execute(callTx) };
      } catch (error) {
        return { pending, error, touched };
      }
    }),
  );
  if (outcomes.some((o) => 'error' in o && o.touched)) throw new IsolateGroup();
  const executed: Executed = [];
  for (const outcome of outcomes) {
    if ('error' in outcome) outcome.pending.reject(translateDatabaseError(outcome.error));
    else executed.push(outcome);
  }
  return executed;
}

async function runIsolated(tx: TenantTransaction, fresh: Pending[]): Promise<Executed> {
  const executed: Executed = [];
  // The savepoint travels with the call's first statement; a call that never reaches the
  // database gets none and needs no rollback.
  let savepoint = false;
  for (const pending of fresh) {
    tx.prefixNextQuery(savepoint ? 'RELEASE SAVEPOINT call; SAVEPOINT call' : 'SAVEPOINT call');
    try {
      const result = await pending.mutation.execute(tx);
      if (!tx.dropPendingPrefix()) savepoint = true;
      executed.push({ pending, result });
    } catch (error) {
      if (!tx.dropPendingPrefix()) {
        savepoint = true;
        await tx.query('ROLLBACK TO SAVEPOINT call');
      }
      pending.reject(translateDatabaseError(error));
    }
  }
  return executed;
}

/**
 * Stores every executed keyed call's response and appends every call's audit entry, in one statement. An
 * expired record under the same key is replaced; a live one means another node's twin
 * committed between our lock check and now — the group fails retryably and the retry replays.
 */
async function storeResponsesAndAudit(tx: TenantTransaction, tenantId: string, executed: Executed): Promise<void> {
  const calls = executed.map(({ pending, result }) => ({ mutation: pending.mutation, bytes: Buffer.from(result.responseBytes) }));
  const keyed = calls.filter((c) => c.mutation.idempotencyKey !== undefined);
  const audit = executed.flatMap(({ result }) => result.audit);
  const [row] = await tx.query<{ stored: string }>(
    `WITH stored AS (
       INSERT INTO kernel_idempotency_record AS r (tenant_id, method, idempotency_key, request_hash, response, expire_time)
       SELECT $1, u.method, u.idempotency_key, u.request_hash, u.response, now() + make_interval(secs => u.retention_seconds)
         FROM unnest($2::text[], $14::text[], $4::bytea[], $5::bytea[], $6::float8[]) AS u(method, idempotency_key, request_hash, response, retention_seconds)
       ON CONFLICT (tenant_id, method, idempotency_key) DO UPDATE
         SET request_hash = excluded.request_hash, response = excluded.response, create_time = now(), expire_time = excluded.expire_time
         WHERE r.expire_time <= now()
       RETURNING 1
     ), audited AS (
       INSERT INTO kernel_audit_event (tenant_id, principal, action, resource, outcome, trace_id, idempotency_key, request_digest, detail)
       SELECT $1, a.principal, a.action, a.resource, a.outcome, a.trace_id, a.idempotency_key, a.request_digest, a.detail::jsonb
         FROM unnest($7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $3::text[], $12::text[], $13::text[])
              AS a(principal, action, resource, outcome, trace_id, idempotency_key, request_digest, detail)
       RETURNING 1
     )
     SELECT (SELECT count(*) FROM stored) AS stored, (SELECT count(*) FROM audited) AS audited`,
    [
      tenantId,
      keyed.map((c) => c.mutation.method),
      audit.map((a) => a.idempotencyKey ?? null),
      keyed.map((c) => c.mutation.requestHash),
      keyed.map((c) => c.bytes),
      keyed.map((c) => c.mutation.retentionHours * 3600),
      audit.map((a) => a.principal),
      audit.map((a) => a.action),
      audit.map((a) => a.resource),
      audit.map((a) => a.outcome),
      audit.map((a) => a.traceId),
      audit.map((a) => a.requestDigest ?? null),
      audit.map((a) => JSON.stringify(a.detail ?? {})),
      keyed.map((c) => c.mutation.idempotencyKey!),
    ],
  );
  if (Number(row.stored) !== keyed.length) throw keyInUse();
}
