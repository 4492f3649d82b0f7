import type { CallContext } from 'nice-grpc-common';

/**
 * What the kernel's own machinery (the commit group, the connection gate) needs of a call's
 * cancellation: whether it has happened, and a listener for when it does. An AbortSignal is one.
 * The server edge (grpc-server.ts) offers a lighter one for unary calls, read from grpc-js's call
 * itself: on Node 20 an AbortSignal costs ~5 µs to make and ~3 µs per listener on the reference
 * machine (a micro-benchmark, 2026-12-08), paid by every mutating call for a cancellation that
 * almost never comes.
 */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** A call context that has a light cancel signal of its own (the server edge's). */
interface WithCancelSignal {
  readonly cancelSignal: CancelSignal;
}

/** The call's cancellation for the kernel's machinery: the edge's light signal, else the context's AbortSignal. */
export function cancelSignalOf(context: CallContext): CancelSignal {
  return (context as Partial<WithCancelSignal>).cancelSignal ?? context.signal;
}
