import { createHash } from 'node:crypto';
import { Status, type CallContext, type ServerMiddleware, type ServerMiddlewareCall } from 'nice-grpc-common';
import { auditInsert } from '../audit/audit-log';
import type { AuthenticationContext, TenantContext, TracingContext, UnitOfWork, UnitOfWorkContext } from '../call-context';
import type { Database, TenantTransaction } from '../database/database';
import { invalidArgument, KernelError } from '../kernel-error';

const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/**
 * Law 5 and the call's unit of work. A read-only method (NO_SIDE_EFFECTS) gets read-only
 * transactions. Any other method needs an `idempotency-key`; inside ONE tenant transaction the
 * middleware (1) takes a transaction-scoped advisory lock on (tenant, method, key) without
 * waiting — held elsewhere means the first call is still running: ABORTED
 * IDEMPOTENCY_KEY_IN_USE with RetryInfo; (2) replays a stored response (trailer
 * `idempotent-replayed: true`) or refuses a different request under the same key
 * (IDEMPOTENCY_KEY_REUSED); (3) runs the handler; (4) stores the response and the call's audit
 * entry in the same statement, so the change, its replay record and its audit entry commit or
 * vanish together.
 */
export function idempotencyMiddleware(deps: { db: Database; retentionHours: number }): ServerMiddleware<
  UnitOfWorkContext,
  TracingContext & AuthenticationContext & TenantContext
> {
  return async function* idempotency(call, context) {
    const { method, tenantId } = context;
    if (method.readOnly) {
      const unitOfWork: UnitOfWork = {
        run: (fn) => deps.db.inTenantTransaction(tenantId, fn, { readOnly: true }),
        describeChange: () => undefined,
      };
      return yield* call.next(call.request, { ...context, unitOfWork });
    }
    if (call.requestStream || call.responseStream) {
      throw new KernelError(Status.UNIMPLEMENTED, 'STREAMING_MUTATION_UNSUPPORTED', 'streaming mutations are not governed yet');
    }

    const key = context.metadata.get('idempotency-key');
    if (key === undefined || key === '') {
      throw invalidArgument('IDEMPOTENCY_KEY_MISSING', 'mutating calls need an idempotency-key metadata entry', [
        { field: 'idempotency-key', description: 'required on every mutating RPC' },
      ]);
    }
    if (!KEY_PATTERN.test(key)) {
      throw invalidArgument('IDEMPOTENCY_KEY_INVALID', 'idempotency-key must be 1–255 visible ASCII characters', [
        { field: 'idempotency-key', description: '1–255 visible ASCII characters' },
      ]);
    }
    const requestBytes = method.requestType.encode(call.request).finish();
    const requestHash = createHash('sha256').update(method.path).update('\0').update(requestBytes).digest();
    const lockKey = idempotencyLockKey(tenantId, method.path, key);

    const outcome = await deps.db.inTenantTransaction(tenantId, async (tx) => {
      const [prior] = await tx.query<{ locked: boolean; request_hash: Buffer | null; response: Buffer | null }>(
        `SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked, r.request_hash, r.response
           FROM (SELECT 1) AS one
           LEFT JOIN kernel_idempotency_record r
             ON r.tenant_id = $2 AND r.method = $3 AND r.idempotency_key = $4 AND r.expire_time > now()`,
        [lockKey, tenantId, method.path, key],
      );
      if (!prior.locked) throw keyInUse();
      if (prior.request_hash && prior.response) {
        if (!prior.request_hash.equals(requestHash)) {
          throw invalidArgument('IDEMPOTENCY_KEY_REUSED', 'this idempotency-key was used with a different request', [
            { field: 'idempotency-key', description: 'already used with a different request' },
          ]);
        }
        return { replayed: true as const, response: method.responseType.decode(prior.response) };
      }

      const change = { resource: '', detail: {} as Record<string, unknown> };
      const unitOfWork: UnitOfWork = {
        run: (fn) => fn(tx),
        describeChange: (resource, detail) => {
          change.resource = resource;
          if (detail) Object.assign(change.detail, detail);
        },
      };
      const response = await runUnary(call, { ...context, unitOfWork, idempotencyKey: key });
      await storeResponseAndAudit(tx, {
        tenantId,
        method: method.path,
        key,
        requestHash,
        response: method.responseType.encode(response).finish(),
        retentionHours: deps.retentionHours,
        audit: {
          tenantId,
          principal: context.principal.subject,
          action: method.action,
          resource: change.resource,
          outcome: 'OK',
          traceId: context.trace.traceId,
          idempotencyKey: key,
          requestDigest: requestHash.toString('hex'),
          detail: change.detail,
        },
      });
      return { replayed: false as const, response };
    });

    if (outcome.replayed) context.trailer.set('idempotent-replayed', 'true');
    return outcome.response as never;
  };
}

/** The text hashed into the call's advisory lock; `|` cannot occur in a tenant id or method path. */
export const idempotencyLockKey = (tenantId: string, methodPath: string, key: string) => `${tenantId}|${methodPath}|${key}`;

const keyInUse = () =>
  new KernelError(Status.ABORTED, 'IDEMPOTENCY_KEY_IN_USE', 'a call with this idempotency-key is still running; retry', {
    retryDelayMs: 100,
  });

async function storeResponseAndAudit(
  tx: TenantTransaction,
  record: {
    tenantId: string;
    method: string;
    key: string;
    requestHash: Buffer;
    response: Uint8Array;
    retentionHours: number;
    audit: Parameters<typeof auditInsert>[0];
  },
): Promise<void> {
  const audit = auditInsert(record.audit, 7);
  // An expired record under the same key is replaced; a live one means a concurrent twin got
  // in between our lock check and now (it committed first): the retry will replay its answer.
  const [row] = await tx.query<{ stored: string }>(
    `WITH stored AS (
       INSERT INTO kernel_idempotency_record AS r (tenant_id, method, idempotency_key, request_hash, response, expire_time)
       VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
       ON CONFLICT (tenant_id, method, idempotency_key) DO UPDATE
         SET request_hash = excluded.request_hash, response = excluded.response,
             create_time = now(), expire_time = excluded.expire_time
         WHERE r.expire_time <= now()
       RETURNING 1
     ), audited AS (${audit.sql} RETURNING 1)
     SELECT (SELECT count(*) FROM stored) AS stored, (SELECT count(*) FROM audited) AS audited`,
    [record.tenantId, record.method, record.key, record.requestHash, Buffer.from(record.response), record.retentionHours * 3600, ...audit.params],
  );
  if (Number(row.stored) !== 1) throw keyInUse();
}

/** Drives a unary call's next() to its single response (middleware cannot yield inside a callback). */
async function runUnary<Req, Res>(call: ServerMiddlewareCall<Req, Res, any>, context: CallContext & Record<string, unknown>): Promise<Res> {
  const generator = call.next(call.request as Req, context as never);
  const step = await generator.next();
  if (!step.done) throw new Error('unary handler yielded a stream message');
  return step.value as Res;
}
