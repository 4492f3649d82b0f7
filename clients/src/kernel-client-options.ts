import type { Channel, ChannelCredentials, ChannelOptions } from '@grpc/grpc-js';

/** A bearer token, or a function producing the current one (consulted on every attempt). */
export type TokenSource = string | (() => string | Promise<string>);

/** How a kernel client connects, authenticates and behaves. */
export interface KernelClientOptions {
  /** `host:port` of the kernel; default `127.0.0.1:50051`. Ignored when `channel` is given. */
  address?: string;
  /** Default: insecure (plaintext), for local and in-cluster use. Ignored when `channel` is given. */
  channelCredentials?: ChannelCredentials;
  /** grpc-js channel options. Ignored when `channel` is given. */
  channelOptions?: ChannelOptions;
  /** An existing channel to share; the client then never closes it. */
  channel?: Channel;
  /** Sent as `authorization: Bearer <token>`; omitted when unset. */
  token?: TokenSource;
  /** Sent as `x-tenant-id`; a call may override it (`tenantId` call option or metadata). */
  tenantId?: string;
  /** Deadline of a logical call (all its attempts) when the caller passes none; default 30 000 ms. */
  deadlineMs?: number;
  /** Attempts per logical call, the first included; default 4. 1 disables retries. */
  maxAttempts?: number;
  /** First backoff step when the server gave no RetryInfo; default 100 ms, doubled per attempt. */
  initialBackoffMs?: number;
  /** Upper bound of one backoff step; default 5 000 ms. */
  maxBackoffMs?: number;
}

/** Options each call may add to nice-grpc's `CallOptions`. */
export interface KernelCallOptionsExt {
  /** Absolute deadline, or milliseconds from now, for the whole logical call including retries. */
  deadline?: Date | number;
  /** Overrides the client's tenant for this call (an `x-tenant-id` metadata entry wins over both). */
  tenantId?: string;
  /** Reuses a key, e.g. when the caller itself retries a call later (an `idempotency-key` metadata entry wins). */
  idempotencyKey?: string;
  /** Overrides the client's `maxAttempts` for this call. */
  maxAttempts?: number;
}

/** The defaults applied where {@link KernelClientOptions} leave a value unset. */
export const KERNEL_CLIENT_DEFAULTS = {
  address: '127.0.0.1:50051',
  deadlineMs: 30_000,
  maxAttempts: 4,
  initialBackoffMs: 100,
  maxBackoffMs: 5_000,
} as const;
