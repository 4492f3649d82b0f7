import { Status } from 'nice-grpc-common';

/** The ErrorInfo domain of every error the kernel returns (docs/laws.md#law-6). */
export const ERROR_DOMAIN = 'kernel.axis';

export interface FieldViolation {
  /** Path of the offending field in the request, e.g. `series.pattern`. */
  field: string;
  description: string;
}

export interface KernelErrorOptions {
  /** ErrorInfo metadata: machine-readable facts about the failure (never secrets or PII). */
  metadata?: Record<string, string>;
  fieldViolations?: FieldViolation[];
  /** When set, the client may retry after this many milliseconds (RetryInfo). */
  retryDelayMs?: number;
  quotaViolations?: Array<{ subject: string; description: string }>;
  preconditionViolations?: Array<{ type: string; subject: string; description: string }>;
  cause?: unknown;
}

/**
 * The one error type capabilities throw. Only the edge (error-mapping middleware) turns it into
 * a `google.rpc.Status`; anything else thrown becomes INTERNAL with the trace id.
 */
export class KernelError extends Error {
  override readonly name = 'KernelError';
  constructor(
    readonly code: Status,
    /** UPPER_SNAKE reason, documented on the RPC in the proto. */
    readonly reason: string,
    message: string,
    readonly options: KernelErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
  }
}

export const invalidArgument = (reason: string, message: string, fieldViolations: FieldViolation[] = [], metadata?: Record<string, string>) =>
  new KernelError(Status.INVALID_ARGUMENT, reason, message, { fieldViolations, metadata });

export const notFound = (reason: string, message: string, metadata?: Record<string, string>) =>
  new KernelError(Status.NOT_FOUND, reason, message, { metadata });

export const failedPrecondition = (reason: string, message: string, metadata?: Record<string, string>) =>
  new KernelError(Status.FAILED_PRECONDITION, reason, message, {
    metadata,
    preconditionViolations: [{ type: reason, subject: metadata?.resource ?? '', description: message }],
  });

export const alreadyExists = (reason: string, message: string, metadata?: Record<string, string>) =>
  new KernelError(Status.ALREADY_EXISTS, reason, message, { metadata });
