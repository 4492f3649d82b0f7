import { Status } from 'nice-grpc-common';
import type { TracingContext } from './call-context';
import { FIELD_INVALID } from './request-validation';
import { invalidArgument, KernelError, type FieldViolation } from './kernel-error';
import { compileWireCheck, kernelDescriptors, strictReader } from './wire-check';
import type { KernelMiddleware } from './middleware/typed-chain';

/**
 * The largest request message the kernel takes: 4 MiB (what grpc-js enforces by default). The
 * kernel checks it itself, in the wrapped decode below, so that a request over it is answered
 * like every other refusal (ErrorInfo REQUEST_TOO_LARGE, the trace id) instead of with grpc-js'
 * bare RESOURCE_EXHAUSTED.
 */
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;

/**
 * grpc-js' own receive limit (`grpc.max_receive_message_length`), set above MAX_REQUEST_BYTES so
 * that requests between the two reach the kernel's check. grpc-js buffers a message before
 * decoding it, so this bounds the memory one call can hold. Beyond it grpc-js answers
 * RESOURCE_EXHAUSTED itself, before any kernel code runs: no ErrorInfo, no x-trace-id (README,
 * error model).
 */
export const TRANSPORT_MAX_RECEIVE_BYTES = 2 * MAX_REQUEST_BYTES;

/**
 * What a request that must be refused before it is decoded (or that could not be decoded)
 * turns into, so the middleware chain can answer it with the kernel's error envelope.
 */
export class RefusedRequest {
  constructor(readonly error: KernelError) {}
}

interface TsProtoServiceDefinition {
  readonly fullName: string;
  readonly methods: Record<string, { readonly name: string; readonly requestType: { decode(input: Uint8Array): unknown } }>;
}

/**
 * The bytes each decoded request arrived as, so that its digest (idempotency, audit) is taken over
 * what the client sent rather than a re-encoding: no second encode per call, and a digest of what
 * was actually asked (unknown fields included). Keyed by the decoded object, gone with it.
 */
const arrived = new WeakMap<object, Uint8Array>();

/** The bytes `request` was decoded from, when it came through a guarded decode. */
export function arrivedBytes(request: unknown): Uint8Array | undefined {
  return typeof request === 'object' && request !== null ? arrived.get(request) : undefined;
}

/**
 * A copy of a generated service definition whose request decoding never throws and refuses,
 * by field, what the generated decoder would silently accept or normalise. Decoding runs inside
 * grpc-js before any middleware (without this, bytes that do not decode would get a bare
 * INTERNAL with no trace id and no ErrorInfo), so each refusal is returned as a RefusedRequest
 * for the request guard to throw:
 *  - more than MAX_REQUEST_BYTES: RESOURCE_EXHAUSTED REQUEST_TOO_LARGE;
 *  - bytes that are not the request message (or an int64 beyond 2^53, which the generated code
 *    refuses): INVALID_ARGUMENT REQUEST_MALFORMED;
 *  - a string that is not valid UTF-8, a Timestamp or Duration outside its defined range
 *    (wire-check.ts): INVALID_ARGUMENT FIELD_INVALID with the field in BadRequest.
 * Measured with `npx tsx bench/request-decoding.ts` (figures in the README).
 */
export function guardRequestDecoding<D extends TsProtoServiceDefinition>(definition: D): D {
  const service = kernelDescriptors().getService(definition.fullName);
  if (!service) throw new Error(`${definition.fullName} is not in gen/descriptor.binpb (run npm run gen)`);
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([key, method]) => {
      const input = service.methods.find((m) => m.name === method.name)?.input;
      if (!input) throw new Error(`${definition.fullName}/${method.name} is not in gen/descriptor.binpb (run npm run gen)`);
      const check = compileWireCheck(input);
      const action = `${definition.fullName}/${method.name}`;
      const decode = (bytes: Uint8Array) => {
        if (bytes.length > MAX_REQUEST_BYTES) return new RefusedRequest(tooLarge(bytes.length));
        let request: unknown;
        let violation: FieldViolation | undefined;
        try {
          // Strict: a string that is not UTF-8 throws here instead of turning into U+FFFD.
          request = method.requestType.decode(strictReader(bytes) as never);
          violation = check.timeViolation?.(bytes);
        } catch (error) {
          // Name the field when it is one (invalid UTF-8); anything else is not the message.
          try {
            violation = check.firstViolation(bytes);
          } catch {
            violation = undefined;
          }
          if (!violation) return new RefusedRequest(malformed(action, error));
        }
        if (violation) return new RefusedRequest(invalidArgument(FIELD_INVALID, `invalid request: ${violation.field}: ${violation.description}`, [violation]));
        if (typeof request === 'object' && request !== null) arrived.set(request, bytes);
        return request;
      };
      return [key, { ...method, requestType: { ...method.requestType, decode } }];
    }),
  );
  return { ...definition, methods };
}

const tooLarge = (size: number) =>
  new KernelError(Status.RESOURCE_EXHAUSTED, 'REQUEST_TOO_LARGE', `the request is ${size} bytes; the limit is ${MAX_REQUEST_BYTES}`, {
    metadata: { limit_bytes: String(MAX_REQUEST_BYTES), size_bytes: String(size) },
  });

const malformed = (action: string, cause: unknown) =>
  new KernelError(Status.INVALID_ARGUMENT, 'REQUEST_MALFORMED', `the request is not a valid ${action} request message`, {
    fieldViolations: [{ field: '(request)', description: 'could not be decoded' }],
    cause,
  });

/**
 * google.protobuf.Timestamp's range in milliseconds. The wire check refuses out-of-range
 * Timestamps exactly; this check of the decoded Date remains because ts-proto converts with
 * floating point, which rounds the last instants of 9999 (e.g. 23:59:59.999999999) up into the
 * year 10000.
 */
const MIN_TIMESTAMP_MS = new Date('0001-01-01T00:00:00Z').getTime();
const MAX_TIMESTAMP_MS = new Date('9999-12-31T23:59:59.999Z').getTime();

const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The first field that no kernel handler can accept whatever its meaning, or undefined. */
function firstUnacceptableField(value: unknown, path: string, depth: number): FieldViolation | undefined {
  if (depth > 32) return { field: path || '(request)', description: 'nested too deeply' };
  if (typeof value === 'string') {
    // PostgreSQL text cannot hold U+0000; no kernel string has a use for it.
    return value.includes('\u0000') ? { field: path, description: 'must not contain U+0000' } : undefined;
  }
  if (typeof value === 'number') {
    // Integers decode finite; only google.protobuf.Value numbers (Struct values, job payloads)
    // can be NaN or ±Infinity, which JSON — and so the database — would silently turn into null.
    return Number.isFinite(value) ? undefined : { field: path, description: 'must be a finite number' };
  }
  if (value instanceof Date) {
    const ms = value.getTime();
    return Number.isNaN(ms) || ms < MIN_TIMESTAMP_MS || ms > MAX_TIMESTAMP_MS
      ? { field: path, description: 'must be a timestamp between 0001-01-01 and 9999-12-31' }
      : undefined;
  }
  if (value instanceof Uint8Array || value === null || typeof value !== 'object') return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = firstUnacceptableField(value[i], path ? `${path}.${i}` : String(i), depth + 1);
      if (found) return found;
    }
    return undefined;
  }
  // Keys too: ts-proto decodes google.protobuf.Struct (and maps) into plain objects whose keys
  // are the caller's strings. The violation names the object, never the offending key itself.
  for (const key of Object.keys(value)) {
    if (key.includes('\u0000')) return { field: path || '(request)', description: 'keys must not contain U+0000' };
  }
  for (const [key, child] of Object.entries(value)) {
    const found = firstUnacceptableField(child, path ? `${path}.${snake(key)}` : snake(key), depth + 1);
    if (found) return found;
  }
  return undefined;
}

/**
 * Refuses what cannot be a valid request of any kernel RPC before anything acts on it: what the
 * wrapped decode refused (see guardRequestDecoding), strings and keys with U+0000, non-finite
 * numbers and timestamps outside the protobuf-defined range (FIELD_INVALID). Field semantics are
 * each handler's own (Zod). Runs after authentication, so an anonymous caller learns nothing
 * about its request.
 */
export function requestGuardMiddleware(): KernelMiddleware<{}, TracingContext> {
  return async function requestGuard(call, context) {
    if (call.request instanceof RefusedRequest) throw call.request.error;
    if (!call.requestStream) {
      const bad = firstUnacceptableField(call.request, '', 0);
      if (bad) throw invalidArgument(FIELD_INVALID, `invalid request: ${bad.field}: ${bad.description}`, [bad]);
    }
    return await call.next(call.request, context);
  };
}
