import { Metadata, Status } from 'nice-grpc-common';
import { KernelClientError } from '../kernel-client-error';
import type { TokenSource } from '../kernel-client-options';
import type { KernelMiddleware } from './kernel-middleware-type';

/**
 * Attaches `authorization: Bearer <token>` and `x-tenant-id`. It runs per attempt (inside the
 * retry loop) so that a token source is asked again on a retry and a token refreshed during a
 * backoff pause is used. Entries the caller put in the metadata win; the `tenantId` call option
 * wins over the client's tenant.
 */
export function authenticationMiddleware(deps: { token?: TokenSource; tenantId?: string }): KernelMiddleware {
  return async function authentication(call, options) {
    const metadata = Metadata(options.metadata);
    if (!metadata.has('authorization') && deps.token !== undefined) {
      metadata.set('authorization', `Bearer ${await resolveToken(deps.token, call.method.path)}`);
    }
    const tenantId = options.tenantId ?? deps.tenantId;
    if (!metadata.has('x-tenant-id') && tenantId) metadata.set('x-tenant-id', tenantId);
    return await call.next(call.request, { ...options, metadata });
  };
}

async function resolveToken(token: TokenSource, path: string): Promise<string> {
  if (typeof token === 'string') return token;
  try {
    return await token();
  } catch (cause) {
    // Not retried: a token source failing is not something the server said is transient.
    throw new KernelClientError({ code: Status.UNAUTHENTICATED, path, details: 'the token source failed', cause });
  }
}
