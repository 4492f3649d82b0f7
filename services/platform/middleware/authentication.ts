import { Status, type ServerMiddleware } from 'nice-grpc-common';
import type { AuthenticationContext, TracingContext } from '../call-context';
import type { TokenVerifier } from '../auth/token-verifier';
import { KernelError } from '../kernel-error';

/**
 * Deny by default (law 9): no bearer token, a malformed one, a bad signature or an expired
 * token is UNAUTHENTICATED before anything else looks at the request.
 */
export function authenticationMiddleware(deps: { verifier: TokenVerifier }): ServerMiddleware<AuthenticationContext, TracingContext> {
  return async function* authentication(call, context) {
    const header = context.metadata.get('authorization');
    if (!header) throw new KernelError(Status.UNAUTHENTICATED, 'TOKEN_MISSING', 'the authorization metadata (Bearer token) is required');
    const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(header.trim());
    if (!match) throw new KernelError(Status.UNAUTHENTICATED, 'TOKEN_MALFORMED', 'authorization must be "Bearer <JWT>"');
    const principal = await deps.verifier.verify(match[1]);
    context.parties.principal = principal.subject;
    return yield* call.next(call.request, { ...context, principal });
  };
}
