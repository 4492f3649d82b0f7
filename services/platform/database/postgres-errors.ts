import { Status } from 'nice-grpc-common';
import { KernelError } from '../kernel-error';

/** The SQLSTATE of a node-postgres error, if it is one. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * Maps database failures that are the caller's to retry (conflicts, lost connections) to
 * retryable kernel errors with RetryInfo. Everything else stays as it is and ends up INTERNAL.
 */
export function translateDatabaseError(error: unknown): unknown {
  if (error instanceof KernelError) return error;
  const state = sqlState(error);
  if (state === '40001' || state === '40P01' || state === '55P03') {
    return new KernelError(Status.ABORTED, 'TRANSACTION_CONFLICT', 'the transaction conflicted with another; retry', {
      retryDelayMs: 50,
      cause: error,
    });
  }
  if (state === '57014') {
    return new KernelError(Status.DEADLINE_EXCEEDED, 'STATEMENT_TIMEOUT', 'a database statement timed out', { cause: error });
  }
  const message = error instanceof Error ? error.message : '';
  if ((state && state.startsWith('08')) || state === '57P01' || /Connection terminated|ECONNREFUSED|ECONNRESET/.test(message)) {
    return new KernelError(Status.UNAVAILABLE, 'DATABASE_UNAVAILABLE', 'the database is unavailable; retry', {
      retryDelayMs: 500,
      cause: error,
    });
  }
  return error;
}
