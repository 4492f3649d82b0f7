import { Status, type ServerMiddleware } from 'nice-grpc-common';
import type { AuditLog } from '../audit/audit-log';
import type { AuthenticationContext, TracingContext } from '../call-context';
import type { TokenVerifier } from '../auth/token-verifier';
import { KernelError } from '../kernel-error';
import { TENANT_ID_PATTERN } from './tenant';

/** The principal of an entry recording an authentication failure: nobody was authenticated. */
export const ANONYMOUS_PRINCIPAL = 'anonymous';

/**
 * Deny by default (law 9): no bearer token, a malformed one, a bad signature or an expired
 * token is UNAUTHENTICATED before anything else looks at the request. The failure is a
 * security event (law 3): when the call names a well-formed tenant, it is recorded in that
 * tenant's audit log in its own transaction (rate-limited per tenant — see AuditLog.recordDenial).
 */
export function authenticationMiddleware(deps: { verifier: TokenVerifier; audit: AuditLog }): ServerMiddleware<AuthenticationContext, TracingContext> {
  return async function* authentication(call, context) {
    let principal;
    try {
      const header = context.metadata.get('authorization');
      if (!header) throw new KernelError(Status.UNAUTHENTICATED, 'TOKEN_MISSING', 'the authorization metadata (Bearer token) is required');
      const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(header.trim());
      if (!match) throw new KernelError(Status.UNAUTHENTICATED, 'TOKEN_MALFORMED', 'authorization must be "Bearer <JWT>"');
      principal = await deps.verifier.verify(match[1]);
    } catch (error) {
      const tenantId = context.metadata.get('x-tenant-id')?.trim();
      if (error instanceof KernelError && tenantId && TENANT_ID_PATTERN.test(tenantId)) {
        await deps.audit.recordDenial(
          { tenantId, principal: ANONYMOUS_PRINCIPAL, action: context.method.action, reason: error.reason, traceId: context.trace.traceId },
          { anonymous: true },
        );
      }
      throw error;
    }
    context.parties.principal = principal.subject;
    return yield* call.next(call.request, { ...context, principal });
  };
}
