import { Status } from 'nice-grpc-common';
import { isAbortError } from '../abort';
import { KernelClientError } from '../kernel-client-error';
import type { KernelMiddleware } from './kernel-middleware-type';

/**
 * One deadline per logical call, covering every attempt and every backoff pause: the caller's
 * `deadline` (a Date, or milliseconds from now), else the client's default. Enforced by
 * aborting the call's signal, which cancels the in-flight RPC (the server sees the
 * cancellation) or the pending backoff; the expiry surfaces as DEADLINE_EXCEEDED. Inner
 * middleware receive `deadline` as an absolute Date so the retry loop can respect it.
 * A non-finite or non-positive default disables the default deadline.
 */
export function deadlineMiddleware(defaultDeadlineMs: number): KernelMiddleware {
  return async function deadline(call, options) {
    const at = resolveDeadline(options.deadline, defaultDeadlineMs);
    if (at === undefined) return await call.next(call.request, { ...options, deadline: undefined });

    const path = call.method.path;
    const expired = () =>
      new KernelClientError({ code: Status.DEADLINE_EXCEEDED, path, details: `deadline ${at.toISOString()} exceeded` });
    const remainingMs = at.getTime() - Date.now();
    if (remainingMs <= 0) throw expired();

    const controller = new AbortController();
    const callerSignal = options.signal;
    const forwardAbort = () => controller.abort(callerSignal?.reason);
    if (callerSignal?.aborted) forwardAbort();
    else callerSignal?.addEventListener('abort', forwardAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, remainingMs);
    try {
      return await call.next(call.request, { ...options, signal: controller.signal, deadline: at });
    } catch (error) {
      // Only our own timer turns an abort into DEADLINE_EXCEEDED; the caller's abort stays theirs.
      if (timedOut && isAbortError(error) && !callerSignal?.aborted) throw expired();
      throw error;
    } finally {
      clearTimeout(timer);
      callerSignal?.removeEventListener('abort', forwardAbort);
    }
  };
}

function resolveDeadline(deadline: Date | number | undefined, defaultMs: number): Date | undefined {
  if (deadline instanceof Date) return deadline;
  if (typeof deadline === 'number') return new Date(Date.now() + deadline);
  if (!Number.isFinite(defaultMs) || defaultMs <= 0) return undefined;
  return new Date(Date.now() + defaultMs);
}
