import type { CallOptions, MethodDescriptor } from 'nice-grpc-common';
import type { KernelCallOptionsExt } from '../kernel-client-options';

/** The call options every kernel client middleware reads and forwards. */
export type KernelCallOptions = CallOptions & KernelCallOptionsExt;

/**
 * What a kernel client middleware sees of a call. `next` runs the rest of the chain (and the
 * RPC) and resolves with the call's result: the response of a unary or client-streaming call;
 * for a server-streaming or bidirectional call, once the response stream has ended (its messages
 * flow past the middleware, which never transform them) — so an error the stream ends with,
 * even after some messages, rejects `next` in every layer.
 */
export interface KernelMiddlewareCall {
  readonly method: MethodDescriptor;
  /** The request message; for a client-streaming or bidirectional call, the caller's AsyncIterable of messages, to pass on untouched. */
  readonly request: unknown;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  next(request: unknown, options: KernelCallOptions): Promise<unknown>;
}

/**
 * A kernel client middleware: straight-line async code around `call.next`, one shape for every
 * kind of call. Every one reads and forwards the same call options, so they are listed in one
 * plain array and built into a single nice-grpc middleware (see kernel-middleware.ts). (nice-grpc's
 * own middleware are async generators at every layer; a unary call — nearly every call — would
 * then pay a generator and its promise wrapping per layer. Here a unary call pays one promise
 * per layer, and streaming calls are adapted once, at the edge of the chain.)
 */
export type KernelMiddleware = (call: KernelMiddlewareCall, options: KernelCallOptions) => Promise<unknown>;
