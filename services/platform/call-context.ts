import type { Context as OtelContext } from '@opentelemetry/api';
import type { CallContext } from 'nice-grpc-common';
import type { Principal } from './auth/principal';
import type { TenantTransaction } from './database/database';
import type { KernelMethod } from './method-registry';
import type { CallLog } from './observability/logger';
import type { PageTokenCodec } from './page-token';
import type { TraceContext } from './trace-context';

/** Added by the tracing middleware: the call's trace, start time and contextual logger. */
export interface TracingContext {
  readonly trace: TraceContext;
  /** The OpenTelemetry context holding the call's server span: the parent of its child spans. */
  readonly otel: OtelContext;
  readonly log: CallLog;
  readonly method: KernelMethod;
  /** performance.now() at the start of the call. */
  readonly startedAt: number;
  /** Filled in by later middleware so the call's closing log line names tenant and principal. */
  readonly parties: CallParties;
}

export interface CallParties {
  tenant?: string;
  principal?: string;
}

/** Added by the authentication middleware. */
export interface AuthenticationContext {
  readonly principal: Principal;
}

/** Added by the tenant middleware once the tenant is valid and allowed. */
export interface TenantContext {
  readonly tenantId: string;
}

/**
 * Added by the tenant middleware too: the kernel's one page-token codec. Tokens are bound to
 * the tenant (and method), so it joins the context with the tenant — in the context object the
 * tenant middleware creates anyway, so it costs no allocation per call. Handlers use it through
 * encodePageToken / decodePageToken (page-token.ts).
 */
export interface PageTokenContext {
  readonly pageTokens: PageTokenCodec;
}

/**
 * Added by the idempotency middleware: the call's unit of work. A mutating call has exactly
 * one transaction, which also stores the idempotent response and the audit entry; a read-only
 * call gets a fresh read-only transaction for each `run`.
 */
export interface UnitOfWorkContext {
  readonly unitOfWork: UnitOfWork;
  readonly idempotencyKey?: string;
}

export interface UnitOfWork {
  run<T>(fn: (tx: TenantTransaction) => Promise<T>): Promise<T>;
  /** Names the resource the change touched and adds detail to the call's audit entry. */
  describeChange(resource: string, detail?: Record<string, unknown>): void;
  /**
   * Writes the call's audit entries itself, in its transaction, in place of the one the
   * platform writes (AppendEvents: each event is an entry). Principal, trace id, idempotency key
   * and request digest are the call's. Returns the entries' event ids, in order.
   */
  recordAuditEvents(events: readonly AuditEventDraft[]): Promise<string[]>;
}

/** What a call says of one audit entry it records (the rest comes from the call). */
export interface AuditEventDraft {
  action: string;
  resource: string;
  outcome: 'OK' | 'DENIED' | 'FAILED';
  detail: Record<string, unknown>;
}

/** Everything a kernel handler may rely on. */
export type KernelCallContext = CallContext & TracingContext & AuthenticationContext & TenantContext & PageTokenContext & UnitOfWorkContext;
