/** Who is calling, as proven by the bearer token. */
export interface Principal {
  /** The token's `sub`. */
  readonly subject: string;
  /** Tenant ids the principal may act for; `*` means any (operators). */
  readonly tenants: readonly string[];
  readonly scopes: ReadonlySet<string>;
}

/** True when the principal holds `scope` exactly or through `<capability>:*`. */
export function hasScope(principal: Principal, scope: string): boolean {
  if (principal.scopes.has(scope)) return true;
  const capability = scope.split(':')[0];
  return principal.scopes.has(`${capability}:*`);
}

export function mayActForTenant(principal: Principal, tenantId: string): boolean {
  return principal.tenants.includes('*') || principal.tenants.includes(tenantId);
}
