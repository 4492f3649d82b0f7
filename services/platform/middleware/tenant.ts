import { Status } from 'nice-grpc-common';
import { hasScope, mayActForTenant } from '../auth/principal';
import type { AuthenticationContext, PageTokenContext, TenantContext, TracingContext } from '../call-context';
import type { AuditLog } from '../audit/audit-log';
import { invalidArgument, KernelError } from '../kernel-error';
import type { PageTokenCodec } from '../page-token';
import type { KernelMiddleware } from './typed-chain';

/** Tenant ids: short, lower-case, safe in resource names and logs. */
export const TENANT_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/**
 * Every call runs in exactly one tenant (docs/laws.md#law-2): `x-tenant-id` must be present, well-formed and
 * one the token allows; then the method's scope must be held. Both refusals are security
 * events, recorded in the tenant's audit log in their own transaction (docs/laws.md#law-3).
 */
export function tenantMiddleware(deps: { audit: AuditLog; pageTokens: PageTokenCodec }): KernelMiddleware<TenantContext & PageTokenContext, TracingContext & AuthenticationContext> {
  return async function tenant(call, context) {
    const entries = context.metadata.getAll('x-tenant-id');
    const tenantId = entries[0]?.trim();
    // Two entries (or, as Node's HTTP/2 server delivers repeated headers, one joined with ", ")
    // name two tenants: refused rather than picking one.
    if (entries.length > 1 || tenantId?.includes(',')) {
      throw invalidArgument('TENANT_AMBIGUOUS', 'the call names more than one x-tenant-id', [{ field: 'x-tenant-id', description: 'exactly one tenant' }]);
    }
    if (!tenantId) throw invalidArgument('TENANT_MISSING', 'the x-tenant-id metadata is required', [{ field: 'x-tenant-id', description: 'required' }]);
    if (!TENANT_ID_PATTERN.test(tenantId)) {
      throw invalidArgument('TENANT_INVALID', 'x-tenant-id must match [a-z0-9][a-z0-9_-]{0,62}', [
        { field: 'x-tenant-id', description: 'must match [a-z0-9][a-z0-9_-]{0,62}' },
      ]);
    }
    const { principal, method } = context;
    let denial: KernelError | undefined;
    if (!mayActForTenant(principal, tenantId)) {
      denial = new KernelError(Status.PERMISSION_DENIED, 'TENANT_NOT_ALLOWED', 'the token does not allow this tenant');
    } else if (!hasScope(principal, method.requiredScope)) {
      denial = new KernelError(Status.PERMISSION_DENIED, 'SCOPE_MISSING', `the token lacks the scope ${method.requiredScope}`, {
        metadata: { required_scope: method.requiredScope },
      });
    }
    if (denial) {
      await deps.audit.recordDenial({
        tenantId,
        principal: principal.subject,
        action: method.action,
        reason: denial.reason,
        traceId: context.trace.traceId,
      });
      throw denial;
    }
    context.parties.tenant = tenantId;
    return await call.next(call.request, Object.assign(context, { tenantId, pageTokens: deps.pageTokens, log: context.log.child({ tenant: tenantId, principal: principal.subject }) }));
  };
}
