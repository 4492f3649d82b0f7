import type { ServerMiddleware } from 'nice-grpc-common';
import type { TracingContext } from './call-context';
import { FIELD_INVALID } from './request-validation';
import { invalidArgument } from './kernel-error';

/** What a request that could not be decoded turns into, so the middleware chain can answer it. */
export class MalformedRequest {
  constructor(readonly cause: unknown) {}
}

interface TsProtoServiceDefinition {
  readonly methods: Record<string, { readonly requestType: { decode(input: Uint8Array): unknown } }>;
}

/**
 * A copy of a generated service definition whose request decoding never throws: bytes that are
 * not the request message (or an int64 beyond 2^53, which the generated code refuses) become a
 * MalformedRequest. Decoding runs inside grpc-js before any middleware, so without this such
 * calls would get a bare INTERNAL with no trace id and no ErrorInfo.
 */
export function guardRequestDecoding<D extends TsProtoServiceDefinition>(definition: D): D {
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([name, method]) => [
      name,
      {
        ...method,
        requestType: {
          ...method.requestType,
          decode: (input: Uint8Array) => {
            try {
              return method.requestType.decode(input);
            } catch (error) {
              return new MalformedRequest(error);
            }
          },
        },
      },
    ]),
  );
  return { ...definition, methods };
}

/** google.protobuf.Timestamp's defined range: 0001-01-01T00:00:00Z … 9999-12-31T23:59:59.999999999Z. */
const MIN_TIMESTAMP_MS = new Date('0001-01-01T00:00:00Z').getTime();
const MAX_TIMESTAMP_MS = new Date('9999-12-31T23:59:59.999Z').getTime();

const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The first field that no kernel handler can accept whatever its meaning, or undefined. */
function firstUnacceptableField(value: unknown, path: string, depth: number): { field: string; description: string } | undefined {
  if (depth > 32) return { field: path || '(request)', description: 'nested too deeply' };
  if (typeof value === 'string') {
    // PostgreSQL text cannot hold U+0000; no kernel string has a use for it.
    return value.includes('\u0000') ? { field: path, description: 'must not contain U+0000' } : undefined;
  }
  if (value instanceof Date) {
    const ms = value.getTime();
    return Number.isNaN(ms) || ms < MIN_TIMESTAMP_MS || ms > MAX_TIMESTAMP_MS
      ? { field: path, description: 'must be a timestamp between 0001-01-01 and 9999-12-31' }
      : undefined;
  }
  if (value instanceof Uint8Array || value === null || typeof value !== 'object') return undefined;
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
  for (const [key, child] of entries) {
    const found = firstUnacceptableField(child, path ? `${path}.${snake(key)}` : snake(key), depth + 1);
    if (found) return found;
  }
  return undefined;
}

/**
 * Refuses what cannot be a valid request of any kernel RPC before anything acts on it:
 * undecodable bytes (REQUEST_MALFORMED), strings with U+0000 and timestamps outside the
 * protobuf-defined range (FIELD_INVALID). Field semantics are each handler's own (Zod).
 */
export function requestGuardMiddleware(): ServerMiddleware<{}, TracingContext> {
  return async function* requestGuard(call, context) {
    if (call.request instanceof MalformedRequest) {
      throw invalidArgument('REQUEST_MALFORMED', `the request is not a valid ${context.method.action} request message`, [
        { field: '(request)', description: 'could not be decoded' },
      ]);
    }
    if (!call.requestStream) {
      const bad = firstUnacceptableField(call.request, '', 0);
      if (bad) throw invalidArgument(FIELD_INVALID, `invalid request: ${bad.field}: ${bad.description}`, [bad]);
    }
    return yield* call.next(call.request, context);
  };
}
