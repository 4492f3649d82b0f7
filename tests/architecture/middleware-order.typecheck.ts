/**
 * Type-level proof that a mis-ordered middleware chain does not compile (`npm run typecheck`
 * runs on this file; nothing here executes). Each `@ts-expect-error` fails the typecheck if the
 * line below it ever compiles.
 */
import type { AuthenticationContext, TenantContext, TracingContext, UnitOfWorkContext } from '../../services/platform/call-context';
import { MiddlewareChain, type KernelMiddleware } from '../../services/platform/middleware/typed-chain';

declare const tracing: KernelMiddleware<TracingContext>;
declare const authentication: KernelMiddleware<AuthenticationContext, TracingContext>;
declare const tenant: KernelMiddleware<TenantContext, TracingContext & AuthenticationContext>;
declare const unitOfWork: KernelMiddleware<UnitOfWorkContext, TracingContext & AuthenticationContext & TenantContext>;

export const rightOrder = MiddlewareChain.start().use(tracing).use(authentication).use(tenant).use(unitOfWork).build();

// The tenant middleware needs the principal: it cannot run before authentication.
// @ts-expect-error — AuthenticationContext is not provided yet
export const tenantBeforeAuthentication = MiddlewareChain.start().use(tracing).use(tenant);

// Nothing runs before tracing: every later step needs the trace.
// @ts-expect-error — TracingContext is not provided yet
export const authenticationFirst = MiddlewareChain.start().use(authentication);

// The unit of work needs the tenant.
// @ts-expect-error — TenantContext is not provided yet
export const unitOfWorkWithoutTenant = MiddlewareChain.start().use(tracing).use(authentication).use(unitOfWork);
