import type { z } from 'zod';
import { invalidArgument } from './kernel-error';

/** Reason used when a field fails validation and the schema names no more precise one. */
export const FIELD_INVALID = 'FIELD_INVALID';

const snake = (segment: PropertyKey) => String(segment).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * Validates a decoded request with its Zod schema (docs/laws.md#law-7: semantics beyond proto types). A
 * failure is INVALID_ARGUMENT with a BadRequest listing every offending field by its proto name;
 * the reason is the first issue's `params.reason` when the schema gives one, else FIELD_INVALID.
 */
export function parseRequest<S extends z.ZodType>(schema: S, request: unknown): z.output<S> {
  const result = schema.safeParse(request);
  if (result.success) return result.data;
  const violations = result.error.issues.map((issue) => ({
    field: issue.path.map(snake).join('.') || '(request)',
    description: issue.message,
  }));
  const first = result.error.issues[0] as { params?: { reason?: string } };
  const reason = first.params?.reason ?? FIELD_INVALID;
  throw invalidArgument(reason, `invalid request: ${violations.map((v) => `${v.field}: ${v.description}`).join('; ')}`, violations);
}
