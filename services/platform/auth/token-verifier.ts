import { readFileSync } from 'node:fs';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { Status } from 'nice-grpc-common';
import { z } from 'zod';
import { KernelError } from '../kernel-error';
import { TENANT_ID_PATTERN } from '../middleware/tenant';
import type { Principal } from './principal';

/**
 * What a verified token may claim. A valid signature proves who issued the claims, not that
 * they are fit to use: the subject becomes the principal of audit entries, idempotency records
 * and log lines, tenants and scopes are compared with request metadata. So:
 *  - `sub`: 1–255 visible ASCII characters (U+0021–U+007E). OpenID Connect already limits `sub`
 *    to 255 ASCII characters; excluding spaces and controls as well keeps a principal one
 *    unambiguous word in logs and audit entries — no U+0000 (which PostgreSQL text cannot
 *    hold), no line breaks, no bidi overrides or look-alike letters that would let one
 *    principal pose as another when a person reads the log.
 *  - `tenants`: 1–1000 entries, each `*` (any tenant: operators) or a tenant id
 *    (TENANT_ID_PATTERN), so that no entry can match anything but the tenant it names.
 *  - `scope`: printable ASCII (U+0020–U+007E, space-separated scopes), at most 4096 characters.
 * A token outside this is UNAUTHENTICATED TOKEN_CLAIMS_INVALID.
 */
const claimsSchema = z.object({
  sub: z.string().regex(/^[\x21-\x7e]{1,255}$/),
  tenants: z
    .array(z.string().refine((tenant) => tenant === '*' || TENANT_ID_PATTERN.test(tenant)))
    .min(1)
    .max(1000),
  scope: z.string().regex(/^[\x20-\x7e]{0,4096}$/).default(''),
  exp: z.number(),
});

/**
 * Principals the kernel writes itself: `system:kernel` (its own audit entries), `operator:…` (the
 * CLI's operator actions, e.g. a master-key rewrap) and `anonymous` (refused attempts without a
 * valid token). A token may not claim them — whoever its issuer is — or a caller's actions would
 * pose as the kernel's or an operator's in the audit log: UNAUTHENTICATED TOKEN_SUBJECT_RESERVED.
 * Case-insensitive, so that `System:Kernel` cannot pass for one either when a person reads the log.
 * (Other `system:…` subjects stay valid: service accounts such as `system:billing-worker`.)
 */
export const RESERVED_SUBJECT = /^(?:system:kernel|anonymous)$|^operator:/i;

/** Verifies bearer tokens and turns their claims into a principal. */
export interface TokenVerifier {
  verify(token: string): Promise<Principal>;
}

const unauthenticated = (reason: string, message: string, cause?: unknown) =>
  new KernelError(Status.UNAUTHENTICATED, reason, message, { cause });

interface VerifiedToken {
  principal: Principal;
  expiresAtMs: number;
}

/**
 * Remembers tokens that verified, until they expire: a service calls with the same token many
 * times, and re-verifying the signature and re-parsing the claims on every call is a visible
 * share of a read RPC's cost. Only successful verifications are cached; the bound keeps memory
 * flat (oldest entries go first).
 */
function withVerificationCache(verify: (token: string) => Promise<VerifiedToken>, maxEntries = 10_000): TokenVerifier {
  const cache = new Map<string, VerifiedToken>();
  return {
    async verify(token) {
      const hit = cache.get(token);
      if (hit && hit.expiresAtMs > Date.now()) return hit.principal;
      if (hit) cache.delete(token);
      const verified = await verify(token);
      if (cache.size >= maxEntries) cache.delete(cache.keys().next().value as string);
      cache.set(token, verified);
      return verified.principal;
    },
  };
}

function principalFrom(payload: JWTPayload): VerifiedToken {
  const claims = claimsSchema.safeParse(payload);
  if (!claims.success) throw unauthenticated('TOKEN_CLAIMS_INVALID', 'the token lacks valid sub, tenants, scope or exp claims');
  if (RESERVED_SUBJECT.test(claims.data.sub)) {
    throw unauthenticated('TOKEN_SUBJECT_RESERVED', 'the token\'s subject is one the kernel reserves for its own entries (system:kernel, operator:…, anonymous)');
  }
  return {
    principal: {
      subject: claims.data.sub,
      tenants: claims.data.tenants,
      scopes: new Set(claims.data.scope.split(/\s+/).filter(Boolean)),
    },
    expiresAtMs: claims.data.exp * 1000,
  };
}

function mapJoseError(error: unknown): never {
  if (error instanceof KernelError) throw error;
  if (error instanceof joseErrors.JWTExpired) throw unauthenticated('TOKEN_EXPIRED', 'the token has expired', error);
  throw unauthenticated('TOKEN_INVALID', 'the token is malformed or its signature does not verify', error);
}

/** HS256 with a shared secret: development and tests. */
export function hs256Verifier(secret: string): TokenVerifier {
  const key = new TextEncoder().encode(secret);
  return withVerificationCache(async (token) => {
    try {
      const { payload } = await jwtVerify(token, key, { algorithms: ['HS256'], requiredClaims: ['exp', 'sub'] });
      return principalFrom(payload);
    } catch (error) {
      mapJoseError(error);
    }
  });
}

/** EdDSA / ES256 against the public keys of a JWKS file: production. */
export function jwksFileVerifier(path: string): TokenVerifier {
  const jwks = createLocalJWKSet(JSON.parse(readFileSync(path, 'utf8')));
  return withVerificationCache(async (token) => {
    try {
      const { payload } = await jwtVerify(token, jwks, { algorithms: ['EdDSA', 'ES256'], requiredClaims: ['exp', 'sub'] });
      return principalFrom(payload);
    } catch (error) {
      mapJoseError(error);
    }
  });
}

export interface DevelopmentTokenRequest {
  secret: string;
  subject: string;
  tenants: string[];
  scope: string;
  ttlSeconds?: number;
}

/** Mints an HS256 token the development verifier accepts (`kernel token`). */
export async function mintDevelopmentToken(request: DevelopmentTokenRequest): Promise<string> {
  return new SignJWT({ tenants: request.tenants, scope: request.scope })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(request.subject)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + (request.ttlSeconds ?? 12 * 3600))
    .sign(new TextEncoder().encode(request.secret));
}
