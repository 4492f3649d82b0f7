import { Status } from 'nice-grpc-common';

/** The ErrorInfo domain of every error the kernel returns; ErrorInfo from other domains is ignored. */
export const KERNEL_ERROR_DOMAIN = 'kernel.axis';

/** One offending request field (from `google.rpc.BadRequest`). */
export interface FieldViolation {
  field: string;
  description: string;
}

/** One exhausted quota (from `google.rpc.QuotaFailure`). */
export interface QuotaViolation {
  subject: string;
  description: string;
}

/** One unmet precondition (from `google.rpc.PreconditionFailure`). */
export interface PreconditionViolation {
  type: string;
  subject: string;
  description: string;
}

/** Everything a {@link KernelClientError} is built from. */
export interface KernelClientErrorInit {
  code: Status;
  /** The gRPC method path, e.g. `/axis.kernel.sequences.v1.SequenceService/IssueNumber`. */
  path: string;
  /** The status message: for humans and logs only, never for branching. */
  details: string;
  reason?: string;
  metadata?: Record<string, string>;
  traceId?: string;
  retryDelayMs?: number;
  fieldViolations?: FieldViolation[];
  quotaViolations?: QuotaViolation[];
  preconditionViolations?: PreconditionViolation[];
  cause?: unknown;
}

/**
 * The one error type kernel clients throw (besides `AbortError` when the caller's own signal
 * cancels a call). Branch on `code` and `reason`; `message` is for humans only.
 */
export class KernelClientError extends Error {
  override readonly name = 'KernelClientError';
  /** The gRPC status code. */
  readonly code: Status;
  /** The method path of the failed call. */
  readonly path: string;
  /** The server's status message (or a local description for client-side failures). */
  readonly details: string;
  /** UPPER_SNAKE reason from the kernel's `google.rpc.ErrorInfo`; "" when there is none. */
  readonly reason: string;
  /** The ErrorInfo metadata: machine-readable facts about the failure. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The call's trace id: `x-trace-id` trailer, else ErrorInfo `trace_id`, else the id the client sent. */
  readonly traceId: string | undefined;
  /** Set when the server said the call may be retried after this many milliseconds (RetryInfo). */
  readonly retryDelayMs: number | undefined;
  readonly fieldViolations: readonly FieldViolation[];
  readonly quotaViolations: readonly QuotaViolation[];
  readonly preconditionViolations: readonly PreconditionViolation[];

  constructor(init: KernelClientErrorInit) {
    const reason = init.reason ?? '';
    super(
      `${init.path} ${Status[init.code] ?? init.code}${reason ? ` ${reason}` : ''}: ${init.details}`,
      init.cause === undefined ? undefined : { cause: init.cause },
    );
    this.code = init.code;
    this.path = init.path;
    this.details = init.details;
    this.reason = reason;
    this.metadata = init.metadata ?? {};
    this.traceId = init.traceId;
    this.retryDelayMs = init.retryDelayMs;
    this.fieldViolations = init.fieldViolations ?? [];
    this.quotaViolations = init.quotaViolations ?? [];
    this.preconditionViolations = init.preconditionViolations ?? [];
  }

  /** A copy carrying `traceId`, keeping the original stack (errors are immutable once thrown). */
  withTraceId(traceId: string): KernelClientError {
    const copy = new KernelClientError({ ...this.toInit(), traceId });
    copy.stack = this.stack;
    return copy;
  }

  private toInit(): KernelClientErrorInit {
    return {
      code: this.code,
      path: this.path,
      details: this.details,
      reason: this.reason,
      metadata: { ...this.metadata },
      traceId: this.traceId,
      retryDelayMs: this.retryDelayMs,
      fieldViolations: [...this.fieldViolations],
      quotaViolations: [...this.quotaViolations],
      preconditionViolations: [...this.preconditionViolations],
      cause: this.cause,
    };
  }
}

/**
 * True when `error` is a {@link KernelClientError}, and, when `reason` is given, carries that
 * ErrorInfo reason. Narrows the type, so `if (isKernelError(e, 'SERIES_NOT_FOUND'))` reads well.
 */
export function isKernelError(error: unknown, reason?: string): error is KernelClientError {
  return error instanceof KernelClientError && (reason === undefined || error.reason === reason);
}
