import { createHash, createHmac, createSecretKey } from 'node:crypto';
import { Status } from 'nice-grpc-common';
import { cancelSignalOf } from '../cancel-signal';
import type { AuditEventDraft, AuthenticationContext, TenantContext, TracingContext, UnitOfWork, UnitOfWorkContext } from '../call-context';
import { EVENT_IDS, type AuditEntry, type AuditLog } from '../audit/audit-log';
import type { Database } from '../database/database';
import { invalidArgument, KernelError } from '../kernel-error';
import type { Metrics } from '../observability/metrics';
import type { MutationCommitter } from '../unit-of-work/mutation-committer';
import { arrivedBytes } from '../request-guard';
import type { KernelMiddleware } from './typed-chain';

const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/**
 * Idempotency (docs/laws.md#law-5) and the call's unit of work. A read-only method (NO_SIDE_EFFECTS) gets read-only
 * transactions and needs no key. Any other method needs an `idempotency-key`; its handler runs
 * inside the MutationCommitter, which replays a stored response (trailer
 * `idempotent-replayed: true`), refuses a key reused with another request
 * (IDEMPOTENCY_KEY_REUSED) or still running (IDEMPOTENCY_KEY_IN_USE), and commits the change,
 * the stored response and the call's one audit entry together. Counted by method:
 * idempotency_replays_total, idempotency_key_reuse_refusals_total (IDEMPOTENCY_KEY_REUSED) and
 * idempotency_in_flight_conflicts_total (IDEMPOTENCY_KEY_IN_USE).
 */
export function idempotencyMiddleware(deps: { db: Database; committer: MutationCommitter; retentionHours: number; audit: AuditLog; digestKey: Buffer; metrics?: Metrics }): KernelMiddleware<
  UnitOfWorkContext,
  TracingContext & AuthenticationContext & TenantContext
> {
  // The digest key as a KeyObject once: createHmac given raw bytes imports them on every call.
  const digestKey = createSecretKey(deps.digestKey);
  return async function idempotency(call, context) {
    const { method, tenantId } = context;
    if (method.readOnly && !method.auditedRead) {
      const unitOfWork: UnitOfWork = {
        run: (fn) => deps.db.inTenantTransaction(tenantId, fn, { readOnly: true, signal: cancelSignalOf(context), trace: context.otel }),
        describeChange: () => undefined,
        recordAuditEvents: () => Promise.reject(new Error('a read-only call records no audit events')),
      };
      return await call.next(call.request, Object.assign(context, { unitOfWork }));
    }
    if (call.requestStream || call.responseStream) {
      throw new KernelError(Status.UNIMPLEMENTED, 'STREAMING_MUTATION_UNSUPPORTED', 'streaming mutations are not governed yet');
    }

    // An audited read takes no key: nothing is replayed, its response (say, a secret) is never stored.
    const keys = method.auditedRead ? [] : context.metadata.getAll('idempotency-key');
    // Two entries — or one that Node's HTTP/2 server joined from two with ", " (a valid key has
    // no space) — are two keys: replaying under either one would be a guess.
    if (keys.length > 1 || keys[0]?.includes(', ')) {
      throw invalidArgument('IDEMPOTENCY_KEY_AMBIGUOUS', 'the call carries more than one idempotency-key', [
        { field: 'idempotency-key', description: 'exactly one key' },
      ]);
    }
    const key = keys[0];
    if (!method.auditedRead && (key === undefined || key === '')) {
      throw invalidArgument('IDEMPOTENCY_KEY_MISSING', 'mutating calls need an idempotency-key metadata entry', [
        { field: 'idempotency-key', description: 'required on every mutating RPC' },
      ]);
    }
    if (key !== undefined && !KEY_PATTERN.test(key)) {
      throw invalidArgument('IDEMPOTENCY_KEY_INVALID', 'idempotency-key must be 1–255 visible ASCII characters', [
        { field: 'idempotency-key', description: '1–255 visible ASCII characters' },
      ]);
    }
    // The bytes as they arrived (no re-encode per call); a request built in process (tests, the
    // CLI) has none and is encoded.
    const requestBytes = arrivedBytes(call.request) ?? method.requestType.encode(call.request).finish();
    // The audit entry's digest proves what was asked; the idempotency hash also binds who asked,
    // so another principal of the tenant presenting the same key is refused, not replayed to.
    // Keyed (HMAC under a kernel-wide sealed key): a request may carry a secret value or personal
    // data, and a plain hash of it could be checked against guesses by anyone reading the log.
    const requestDigest = createHmac('sha256', digestKey).update(method.path).update('\0').update(requestBytes).digest();
    const requestHash = createHash('sha256').update(context.principal.subject).update('\0').update(requestDigest).digest();

    const submitted = deps.committer.submit({
      tenantId,
      method: method.path,
      idempotencyKey: key,
      requestHash,
      retentionHours: deps.retentionHours,
      signal: cancelSignalOf(context),
      trace: context.otel,
      decode: (bytes) => method.responseType.decode(bytes),
      execute: async (tx) => {
        const change = { resource: '', detail: {} as Record<string, unknown>, recorded: undefined as AuditEntry[] | undefined };
        const entry = (draft: AuditEventDraft): AuditEntry => ({
          tenantId,
          principal: context.principal.subject,
          action: draft.action,
          resource: draft.resource,
          outcome: draft.outcome,
          traceId: context.trace.traceId,
          idempotencyKey: key,
          requestDigest: requestDigest.toString('hex'),
          detail: draft.detail,
        });
        const unitOfWork: UnitOfWork = {
          run: (fn) => fn(tx),
          describeChange: (resource, detail) => {
            change.resource = resource;
            if (detail) Object.assign(change.detail, detail);
          },
          recordAuditEvents: async (events) => {
            const ids = await tx.batch(EVENT_IDS, events.length);
            change.recorded = events.map((draft, i) => ({ ...entry(draft), eventId: ids[i] }));
            return ids;
          },
        };
        const response = (await call.next(call.request, Object.assign(context, { unitOfWork, idempotencyKey: key }))) as object;
        return {
          response,
          responseBytes: method.responseType.encode(response).finish(),
          audit: change.recorded ?? [entry({ action: method.action, resource: change.resource, outcome: 'OK', detail: change.detail })],
        };
      },
    });

    // An audited read is recorded even when refused (a secret past its grace period, a ciphertext
    // that fails authentication): the refusal gets a DENIED entry in its own transaction.
    const counted = submitted.catch((error: unknown) => {
      if (error instanceof KernelError && error.reason === 'IDEMPOTENCY_KEY_REUSED') deps.metrics?.increment('idempotency_key_reuse_refusals_total', { method: method.action });
      if (error instanceof KernelError && error.reason === 'IDEMPOTENCY_KEY_IN_USE') deps.metrics?.increment('idempotency_in_flight_conflicts_total', { method: method.action });
      throw error;
    });
    const outcome = await (method.auditedRead
      ? counted.catch(async (error: unknown) => {
          if (error instanceof KernelError) {
            await deps.audit.recordDenial({ tenantId, principal: context.principal.subject, action: method.action, reason: error.reason, traceId: context.trace.traceId });
          }
          throw error;
        })
      : counted);
    if (outcome.replayed) {
      context.trailer.set('idempotent-replayed', 'true');
      deps.metrics?.increment('idempotency_replays_total', { method: method.action });
    }
    return outcome.response as never;
  };
}
