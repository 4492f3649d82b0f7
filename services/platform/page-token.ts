import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { invalidArgument } from './kernel-error';

/** page_size: 0 means the default; above the maximum is refused, not silently clamped. */
export function pageSize(requested: number, defaultSize = 100, maxSize = 1000): number {
  if (!Number.isInteger(requested) || requested < 0 || requested > maxSize) {
    throw invalidArgument('FIELD_INVALID', `page_size must be 0–${maxSize}`, [{ field: 'page_size', description: `0–${maxSize}` }]);
  }
  return requested === 0 ? defaultSize : requested;
}

const fingerprint = (query: unknown) => createHash('sha256').update(JSON.stringify(query)).digest('base64url').slice(0, 12);

/**
 * Opaque keyset page tokens: the position after the last item, bound to the query that made
 * it, so a token replayed against another query (or tampered with) is refused.
 */
export function encodePageToken(position: unknown, query: unknown): string {
  return Buffer.from(JSON.stringify({ p: position, q: fingerprint(query) })).toString('base64url');
}

export function decodePageToken<S extends z.ZodType>(token: string, schema: S, query: unknown): z.output<S> | undefined {
  if (token === '') return undefined;
  const refuse = () =>
    invalidArgument('PAGE_TOKEN_INVALID', 'page_token is not one this query returned', [{ field: 'page_token', description: 'not a token of this query' }]);
  let parsed: { p?: unknown; q?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw refuse();
  }
  if (parsed?.q !== fingerprint(query)) throw refuse();
  const position = schema.safeParse(parsed.p);
  if (!position.success) throw refuse();
  return position.data;
}
