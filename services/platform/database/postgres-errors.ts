import { Status } from 'nice-grpc-common';
import { KernelError } from '../kernel-error';

/** The SQLSTATE of a node-postgres error, if it is one. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * The reason of an INVALID_ARGUMENT answered because PostgreSQL refused a value the request
 * carried (SQLSTATE class 22 "data exception", or 08P01 "protocol violation", which a value
 * that cannot travel in a message — U+0000 inside an inlined literal — causes). It means the
 * kernel's own validation let something through that it should have refused by name: the
 * caller gets a permanent error (retrying the same request cannot help), and the error edge
 * logs it at error level with the trace id and counts it (`rpc_validation_gaps_total`).
 */
export const VALUE_REJECTED = 'VALUE_REJECTED';

/** Lost or refused connections: the request never ran, or ran on a server that went away. */
const CONNECTION_LOST = /Connection terminated|ECONNREFUSED|ECONNRESET/;

/**
 * Maps database failures to kernel errors by what they say about the request:
 *  - conflicts (40001, 40P01, 55P03) are ABORTED with RetryInfo: the same request may succeed;
 *  - a statement timeout (57014) is DEADLINE_EXCEEDED;
 *  - connection failures (class 08 except 08P01; 57P01/57P02/57P03, the server shutting down,
 *    crashing or starting; a reset or refused socket) are UNAVAILABLE with RetryInfo;
 *  - a value PostgreSQL refused (class 22, and 08P01) is INVALID_ARGUMENT VALUE_REJECTED
 *    without RetryInfo — it is permanent, and answering it as an outage made clients retry it
 *    forever.
 * Everything else stays as it is and ends up a masked INTERNAL.
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
  if (state === '08P01' || state?.startsWith('22')) {
    return new KernelError(Status.INVALID_ARGUMENT, VALUE_REJECTED, `the database refused a value of the request (SQLSTATE ${state})`, {
      metadata: { sqlstate: state },
      cause: error,
    });
  }
  const message = error instanceof Error ? error.message : '';
  if (state?.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03' || CONNECTION_LOST.test(message)) {
    return new KernelError(Status.UNAVAILABLE, 'DATABASE_UNAVAILABLE', 'the database is unavailable; retry', {
      retryDelayMs: 500,
      cause: error,
    });
  }
  return error;
}
