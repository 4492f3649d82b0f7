import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import type { z } from 'zod';
import { invalidArgument } from './kernel-error';

/** page_size: 0 means the default; above the maximum is refused, not silently clamped. */
export function pageSize(requested: number, defaultSize = 100, maxSize = 1000): number {
  if (!Number.isInteger(requested) || requested < 0 || requested > maxSize) {
    throw invalidArgument('FIELD_INVALID', `page_size must be 0–${maxSize}`, [{ field: 'page_size', description: `0–${maxSize}` }]);
  }
  return requested === 0 ? defaultSize : requested;
}

/** The HKDF label of the page-token key: a key of its own, derived, so nothing new is stored. */
const PAGE_TOKEN_KEY_INFO = 'axis-kernel/page-token/v1';
const TOKEN_VERSION = 1;
/** HMAC-SHA256 truncated to 128 bits: forging one takes 2^128 guesses, each a call. */
const MAC_BYTES = 16;
/** Far above any position the kernel encodes (the longest is an expiry cursor of ~120 bytes). */
const MAX_TOKEN_CHARS = 1024;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * The page-token key: HKDF-SHA256 of the kernel-wide request-digest key (a sealed kernel key,
 * see master-key-registry.ts) under its own label, so it is independent of the digests' key and
 * needs no storage, rotation or start-up step of its own.
 */
export function derivePageTokenKey(requestDigestKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', requestDigestKey, Buffer.alloc(0), PAGE_TOKEN_KEY_INFO, 32));
}

/**
 * Opaque, tamper-evident keyset page tokens. A token is base64url(version ‖ MAC ‖ position as
 * JSON); the MAC (HMAC-SHA256 under the page-token key, truncated to 128 bits) covers the
 * position and the request it continues: the method, the tenant and every field of the request
 * except page_token and page_size (its canonical protobuf encoding) — a later page may ask for
 * another size, but any other change is another query. So a token forged, altered, truncated,
 * or replayed with another query, method or tenant is refused before its content is read; what
 * a genuine token decodes to is still validated with the call site's Zod schema, like any other
 * input.
 *
 * One instance per kernel, shared by every call (the call context carries it).
 */
export class PageTokenCodec {
  constructor(private readonly key: Buffer) {}

  encode(scope: PageTokenScope, request: PagedRequest, position: unknown): string {
    const payload = Buffer.from(JSON.stringify(position), 'utf8');
    return Buffer.concat([Buffer.of(TOKEN_VERSION), this.mac(scope, request, payload), payload]).toString('base64url');
  }

  decode<S extends z.ZodType>(scope: PageTokenScope, request: PagedRequest, schema: S): z.output<S> | undefined {
    const token = request.pageToken;
    if (token === '') return undefined;
    if (token.length > MAX_TOKEN_CHARS || !BASE64URL.test(token)) throw refused();
    const bytes = Buffer.from(token, 'base64url');
    // Only the canonical spelling: otherwise the unused low bits of the last character would let
    // several strings decode to one token.
    if (bytes.length <= 1 + MAC_BYTES || bytes[0] !== TOKEN_VERSION || bytes.toString('base64url') !== token) throw refused();
    const payload = bytes.subarray(1 + MAC_BYTES);
    if (!timingSafeEqual(bytes.subarray(1, 1 + MAC_BYTES), this.mac(scope, request, payload))) throw refused();
    let position: unknown;
    try {
      position = JSON.parse(payload.toString('utf8'));
    } catch {
      throw refused();
    }
    const parsed = schema.safeParse(position);
    if (!parsed.success) throw refused();
    return parsed.data;
  }

  private mac(scope: PageTokenScope, request: PagedRequest, payload: Buffer): Buffer {
    const query = scope.method.requestType.encode({ ...request, pageToken: '', pageSize: 0 }).finish();
    const hmac = createHmac('sha256', this.key);
    // Each part length-prefixed, so no two different (method, tenant, query, position) collide.
    for (const part of [Buffer.from(scope.method.path, 'utf8'), Buffer.from(scope.tenantId, 'utf8'), query, payload]) {
      hmac.update(uint32(part.length)).update(part);
    }
    return hmac.digest().subarray(0, MAC_BYTES);
  }
}

/** A list request as decoded (AIP-158 field names); its other fields are the query. */
export interface PagedRequest {
  readonly pageToken: string;
  readonly pageSize?: number;
}

/** What a token is bound to besides the request: the call's method and tenant (a handler's context has both). */
export interface PageTokenScope {
  readonly pageTokens: PageTokenCodec;
  readonly tenantId: string;
  readonly method: { readonly path: string; readonly requestType: { encode(message: unknown): { finish(): Uint8Array } } };
}

const uint32 = (n: number) => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n);
  return b;
};

const refused = () =>
  invalidArgument('PAGE_TOKEN_INVALID', 'page_token is not one this query returned', [{ field: 'page_token', description: 'not a token of this query' }]);

/** The next-page token for `position`, bound to the call's method, tenant and request (but its page_token and page_size). */
export function encodePageToken(ctx: PageTokenScope, request: PagedRequest, position: unknown): string {
  return ctx.pageTokens.encode(ctx, request, position);
}

/**
 * The position the request's page_token carries, or undefined for the first page (""); refused
 * (INVALID_ARGUMENT PAGE_TOKEN_INVALID) unless it is a token this kernel issued for the same
 * method, tenant and request (page_size aside) and its position passes `schema`.
 */
export function decodePageToken<S extends z.ZodType>(ctx: PageTokenScope, request: PagedRequest, schema: S): z.output<S> | undefined {
  return ctx.pageTokens.decode(ctx, request, schema);
}

/** What a List handler gives paginate(): how to read positions, fetch a page and name its last item. */
export interface PageSource<S extends z.ZodType, T> {
  /** The strict schema of the position a page token carries (the keyset cursor). */
  position: S;
  /** Reads up to `limit` items after `after` (undefined: from the start), in the list's order. */
  fetch(after: z.output<S> | undefined, limit: number): Promise<readonly T[]>;
  /** The position of an item: the next page starts after it. */
  positionOf(item: T): z.input<S>;
  /** page_size 0 means this (default 100). */
  defaultSize?: number;
  /** page_size above this is refused (default 1000). */
  maxSize?: number;
}

/**
 * The tail every List handler shares (AIP-158): validates page_size (0 means the default, more
 * than the maximum is refused), decodes page_token with the position schema (PAGE_TOKEN_INVALID
 * unless this kernel issued it for the same method, tenant and query), fetches one item more
 * than the page holds, cuts the page and, when that extra item exists, encodes the next token
 * from the page's last item. The handler keeps what is its own: parsing the query and mapping
 * the items to messages.
 */
export async function paginate<S extends z.ZodType, T>(
  ctx: PageTokenScope,
  request: PagedRequest,
  source: PageSource<S, T>,
): Promise<{ items: T[]; nextPageToken: string }> {
  const size = pageSize(request.pageSize ?? 0, source.defaultSize, source.maxSize);
  const after = decodePageToken(ctx, request, source.position);
  const page = await source.fetch(after, size + 1);
  const items = page.slice(0, size);
  const nextPageToken = page.length > size ? encodePageToken(ctx, request, source.positionOf(items[items.length - 1])) : '';
  return { items, nextPageToken };
}
