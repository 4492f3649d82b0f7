import { Status } from 'nice-grpc-common';
import type { AuditLog } from '../audit/audit-log';
import type { AuthenticationContext, TracingContext } from '../call-context';
import type { TokenVerifier } from '../auth/token-verifier';
import { KernelError } from '../kernel-error';
import { TENANT_ID_PATTERN } from './tenant';
import type { KernelMiddleware } from './typed-chain';

/**
 * More than one credential: two `authorization` entries, or one holding a comma — the HTTP list
 * syntax in which proxies (and Node's HTTP/2 server, for most headers) join repeated fields.
 * Taking the first would let the one this kernel checks differ from the one something in front
 * of it checked, so the call is refused. (Node's HTTP/2 server itself drops every `authorization`
 * field after the first before grpc-js sees the call — see the README's error model.)
 */
const tokenAmbiguous = () => new KernelError(Status.UNAUTHENTICATED, 'TOKEN_AMBIGUOUS', 'the call carries more than one authorization credential');

/** The principal of an entry recording an authentication failure: nobody was authenticated. */
export const ANONYMOUS_PRINCIPAL = 'anonymous';

/**
 * Deny by default (docs/laws.md#law-9): no bearer token, a malformed one, a bad signature or an expired
 * token is UNAUTHENTICATED before anything else looks at the request. The failure is a
 * security event (docs/laws.md#law-3): when the call names a well-formed tenant, it is recorded in that
 * tenant's audit log in its own transaction (rate-limited per tenant — see AuditLog.recordDenial).
 */
export function authenticationMiddleware(deps: { verifier: TokenVerifier; audit: AuditLog }): KernelMiddleware<AuthenticationContext, TracingContext> {
  return async function authentication(call, context) {
    let principal;
    try {
      const headers = context.metadata.getAll('authorization');
      if (headers.length > 1) throw tokenAmbiguous();
      const header = headers[0];
      if (!header) throw new KernelError(Status.UNAUTHENTICATED, 'TOKEN_MISSING', 'the authorization metadata (Bearer token) is required');
      const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(header.trim());
      if (!match && header.includes(',')) throw tokenAmbiguous();
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
    return await call.next(call.request, Object.assign(context, { principal }));
  };
}
