import type { ClientMiddleware } from 'nice-grpc-common';
import type { KernelCallOptionsExt } from '../kernel-client-options';

/**
 * Every kernel client middleware reads and forwards the same call options, so they can be
 * listed and composed in one plain array (see kernel-middleware.ts).
 */
export type KernelMiddleware = ClientMiddleware<KernelCallOptionsExt, KernelCallOptionsExt>;
