import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createFileRegistry, fromBinary, ScalarType, type DescField, type DescMessage, type DescService } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import * as fc from 'fast-check';
import type { MethodDefinition } from 'nice-grpc';

/**
 * Hostile request generation for property tests, driven by the FileDescriptorSet the kernel
 * serves (gen/descriptor.binpb), so every field of every request message of a service gets
 * values of the right and the wrong kinds without a hand-written list per RPC.
 *
 * Requests are ts-proto partials (built with the generated `fromPartial`), plus, for top-level
 * google.protobuf.Timestamp fields (which ts-proto maps to Date, so they cannot carry seconds
 * outside the Date range or out-of-range nanos), raw wire fields appended after the encoding.
 */

const DESCRIPTOR_SET = path.resolve(__dirname, '../../gen/descriptor.binpb');

export function loadService(fullName: string): DescService {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(DESCRIPTOR_SET)));
  const service = registry.getService(fullName);
  if (!service) throw new Error(`${fullName} is not in ${DESCRIPTOR_SET}`);
  return service;
}

/** A Timestamp sent as raw wire bytes: any int64 seconds, any int32 nanos. */
export class RawTimestamp {
  constructor(
    readonly seconds: number,
    readonly nanos: number,
  ) {}
}

/** Characters that break naive string handling: NUL, controls, bidi overrides, BOM, surrogates, combining marks. */
export const NASTY_CHARACTERS = [
  '\u0000',
  '\u0001',
  '\u001b',
  '\u007f',
  '\n',
  '\r\n',
  '\t',
  '\u202e', // RIGHT-TO-LEFT OVERRIDE
  '\u200f', // RIGHT-TO-LEFT MARK
  '\u2066', // LEFT-TO-RIGHT ISOLATE
  '\ufeff',
  '\ufffd',
  '\ud800', // lone high surrogate
  '\udfff', // lone low surrogate
  '\u0301\u0301\u0301',
  '\u05d0\u05d1\u05d2', // Hebrew
  '\u0627\u0644\u0639', // Arabic
  '😀',
  '%s%n',
  "'; DROP TABLE sequence_number; --",
  '../../etc/passwd',
  '{',
  '}',
  '\\',
  '"',
];

/** Strings of every awkward kind; `plausible` (if given) is mixed in and corrupted so validation is reached and passed. */
export function hostileString(plausible?: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const base = plausible ?? fc.string({ maxLength: 12 });
  const huge = fc
    .tuple(fc.string({ unit: 'binary', minLength: 1, maxLength: 6 }), fc.integer({ min: 256, max: 100_000 }))
    .map(([seed, length]) => seed.repeat(Math.ceil(length / seed.length)).slice(0, length));
  const corrupted = fc
    .tuple(base, fc.constantFrom(...NASTY_CHARACTERS), fc.nat())
    .map(([text, nasty, at]) => text.slice(0, at % (text.length + 1)) + nasty + text.slice(at % (text.length + 1)));
  return fc.oneof(
    { arbitrary: base, weight: 5 },
    { arbitrary: fc.constant(''), weight: 1 },
    { arbitrary: corrupted, weight: 3 },
    { arbitrary: fc.string({ unit: 'binary', maxLength: 64 }), weight: 2 },
    { arbitrary: fc.string({ unit: 'grapheme', maxLength: 64 }), weight: 1 },
    { arbitrary: huge, weight: 1 },
  );
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/** int64 values a JS number can carry exactly, including ones beyond 2^53 (up to ±2^62). */
function int64Values(plausible?: fc.Arbitrary<number>): fc.Arbitrary<number> {
  const beyondSafe = fc
    .tuple(fc.integer({ min: 512, max: 1023 }), fc.integer({ min: 44, max: 52 }), fc.boolean())
    .map(([mantissa, exponent, negative]) => (negative ? -1 : 1) * mantissa * 2 ** exponent);
  return fc.oneof(
    { arbitrary: plausible ?? fc.integer({ min: 0, max: 20 }), weight: 5 },
    { arbitrary: fc.constantFrom(0, -1, -0, INT32_MAX, INT32_MAX + 1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 1e15, 1e15 + 1), weight: 2 },
    { arbitrary: fc.integer({ min: INT32_MIN, max: INT32_MAX }), weight: 1 },
    { arbitrary: fc.maxSafeInteger(), weight: 1 },
    { arbitrary: beyondSafe, weight: 1 },
  );
}

function int32Values(plausible?: fc.Arbitrary<number>): fc.Arbitrary<number> {
  return fc.oneof(
    { arbitrary: plausible ?? fc.integer({ min: 0, max: 20 }), weight: 5 },
    { arbitrary: fc.constantFrom(0, -1, 1, 100, 999, 1000, 1001, INT32_MAX, INT32_MIN), weight: 2 },
    { arbitrary: fc.integer({ min: INT32_MIN, max: INT32_MAX }), weight: 2 },
  );
}

const DATE_LIMIT_MS = 8.64e15;

/** Dates across the whole JS range, its edges, the proleptic year 0 / 10000 boundaries, and near now. */
function dateValues(): fc.Arbitrary<Date> {
  const now = Date.now();
  return fc.oneof(
    { arbitrary: fc.integer({ min: now - 400 * 86_400_000, max: now + 400 * 86_400_000 }).map((ms) => new Date(ms)), weight: 4 },
    {
      arbitrary: fc
        // JS range edges, the epoch, 1 BC / 0000-01-01, 0001-01-01, the end of 9999 and 10000-01-01
        .constantFrom(DATE_LIMIT_MS, -DATE_LIMIT_MS, 0, -1, 1, -62_167_219_200_001, -62_167_219_200_000, -62_135_596_800_000, 253_402_300_799_999, 253_402_300_800_000)
        .map((ms) => new Date(ms)),
      weight: 2,
    },
    { arbitrary: fc.date({ min: new Date(-DATE_LIMIT_MS), max: new Date(DATE_LIMIT_MS), noInvalidDate: true }), weight: 2 },
  );
}

const extremeSeconds = fc.oneof(
  fc.constantFrom(0, -1, 253_402_300_799, 253_402_300_800, -62_135_596_800, -62_135_596_801, 8.64e12, 8.64e12 + 1, -8.64e12 - 1, Number.MAX_SAFE_INTEGER, 2 ** 53, 2 ** 62, -(2 ** 62)),
  fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
);
const extremeNanos = fc.oneof(fc.constantFrom(0, -1, 999_999_999, 1_000_000_000, INT32_MAX, INT32_MIN), fc.integer({ min: INT32_MIN, max: INT32_MAX }));

/** Per-field hints: plausible values (by field name) so hostile requests also get past validation and into the handlers. */
export type FieldHints = Partial<Record<string, fc.Arbitrary<unknown>>>;

function fieldValue(field: DescField, hints: FieldHints, depth: number, topLevel: boolean): fc.Arbitrary<unknown> {
  const hint = hints[field.localName];
  const single = (): fc.Arbitrary<unknown> => {
    switch (field.fieldKind) {
      case 'scalar':
        return scalarValue(field.scalar, hint);
      case 'enum': {
        const known = field.enum.values.map((v) => v.number);
        return fc.oneof(
          { arbitrary: fc.constantFrom(...known), weight: 4 },
          { arbitrary: fc.constantFrom(-1, Math.max(...known) + 1, INT32_MAX, INT32_MIN), weight: 1 },
          { arbitrary: fc.integer({ min: INT32_MIN, max: INT32_MAX }), weight: 1 },
        );
      }
      case 'message':
        return messageValue(field.message, hints, depth + 1, topLevel);
      case 'list':
        if (field.listKind === 'scalar') return fc.array(scalarValue(field.scalar, undefined), { maxLength: 4 });
        if (field.listKind === 'enum') return fc.array(fc.integer({ min: INT32_MIN, max: INT32_MAX }), { maxLength: 4 });
        return fc.array(messageValue(field.message, hints, depth + 1, false), { maxLength: 3 });
      case 'map':
        return fc.dictionary(hostileString(), field.mapKind === 'scalar' ? scalarValue(field.scalar, undefined) : fc.constant(undefined), { maxKeys: 3 });
    }
  };
  return single();
}

function scalarValue(scalar: ScalarType, hint: fc.Arbitrary<unknown> | undefined): fc.Arbitrary<unknown> {
  switch (scalar) {
    case ScalarType.STRING:
      return hostileString(hint as fc.Arbitrary<string> | undefined);
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 256 });
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.double();
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return int32Values(hint as fc.Arbitrary<number> | undefined);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.constantFrom(0, 1, 2 ** 32 - 1), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return int64Values(hint as fc.Arbitrary<number> | undefined).map(Math.abs);
    default:
      return int64Values(hint as fc.Arbitrary<number> | undefined);
  }
}

function messageValue(message: DescMessage, hints: FieldHints, depth: number, topLevel: boolean): fc.Arbitrary<unknown> {
  switch (message.typeName) {
    case 'google.protobuf.Timestamp':
      // ts-proto (useDate=true) maps Timestamp to Date; top-level fields may also go raw.
      return topLevel
        ? fc.oneof({ arbitrary: dateValues(), weight: 3 }, { arbitrary: fc.tuple(extremeSeconds, extremeNanos).map(([s, n]) => new RawTimestamp(s, n)), weight: 1 })
        : dateValues();
    case 'google.protobuf.Duration':
      return fc.record({
        seconds: int64Values(fc.oneof(fc.integer({ min: 0, max: 8 * 24 * 3600 }), fc.constantFrom(1, 900, 604_800, 604_801))),
        nanos: extremeNanos,
      });
  }
  if (depth > 3) return fc.constant({});
  return requestValue(message, hints, depth);
}

/** A message of `message`'s type with every field independently present or absent, hostile or plausible. */
function requestValue(message: DescMessage, hints: FieldHints, depth: number): fc.Arbitrary<Record<string, unknown>> {
  const plain: Record<string, fc.Arbitrary<unknown>> = {};
  const oneofs = new Map<string, fc.Arbitrary<unknown>[]>();
  for (const field of message.fields) {
    const value = fieldValue(field, hints, depth, depth === 0);
    if (field.oneof && !field.proto.proto3Optional) {
      // ts-proto oneof=unions-value: { [oneof]: { $case: field, value } }
      const cases = oneofs.get(field.oneof.localName) ?? [];
      cases.push(value.map((v) => ({ $case: field.localName, value: v })));
      oneofs.set(field.oneof.localName, cases);
    } else {
      plain[field.localName] = value;
    }
  }
  for (const [name, cases] of oneofs) plain[name] = fc.oneof(...cases);
  return fc.record(plain, { requiredKeys: [] });
}

/** One hostile request: the partial for `fromPartial`, printed compactly when fast-check reports it. */
export class HostileRequest {
  constructor(
    readonly method: string,
    readonly partial: Record<string, unknown>,
  ) {}

  [fc.toStringMethod](): string {
    return `${this.method}(${describeValue(this.partial)})`;
  }
  toString(): string {
    return this[fc.toStringMethod]();
  }
}

export function hostileRequests(service: DescService, methodName: string, hints: FieldHints): fc.Arbitrary<HostileRequest> {
  const method = service.methods.find((m) => m.name === methodName);
  if (!method) throw new Error(`${service.typeName}/${methodName} is not in the descriptor set`);
  return requestValue(method.input, hints, 0).map((partial) => new HostileRequest(methodName, partial));
}

/** Minimal structural view of a ts-proto message type. */
export interface TsProtoType<T> {
  fromPartial(object: any): T;
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
}

/** A raw nice-grpc definition of each method: requests go out as the exact bytes built, responses are decoded. */
export function rawMethodDefinitions(
  methods: ReadonlyArray<{ name: string; path: string; responseType: TsProtoType<unknown> }>,
): Record<string, MethodDefinition<Uint8Array, Uint8Array, unknown, unknown, false, false>> {
  return Object.fromEntries(
    methods.map((m) => [
      m.name,
      {
        path: m.path,
        requestStream: false,
        responseStream: false,
        requestSerialize: (bytes: Uint8Array) => bytes,
        requestDeserialize: (bytes: Uint8Array) => bytes,
        responseSerialize: (value: unknown) => m.responseType.encode(value).finish(),
        responseDeserialize: (bytes: Uint8Array) => m.responseType.decode(bytes),
        options: {},
      },
    ]),
  );
}

/**
 * Encodes the request: `fromPartial` + generated `encode` for everything ts-proto can express,
 * then top-level RawTimestamp fields as raw length-delimited fields (seconds = 1, nanos = 2).
 */
export function encodeHostile<T>(type: TsProtoType<T>, message: DescMessage, request: HostileRequest): Uint8Array {
  const partial: Record<string, unknown> = {};
  const raw = new BinaryWriter();
  for (const [name, value] of Object.entries(request.partial)) {
    if (value instanceof RawTimestamp) {
      const field = message.fields.find((f) => f.localName === name)!;
      raw.tag(field.number, WireType.LengthDelimited).fork().tag(1, WireType.Varint).int64(value.seconds).tag(2, WireType.Varint).int32(value.nanos).join();
    } else {
      partial[name] = value;
    }
  }
  const encoded = type.encode(type.fromPartial(partial)).finish();
  const tail = raw.finish();
  const bytes = new Uint8Array(encoded.length + tail.length);
  bytes.set(encoded, 0);
  bytes.set(tail, encoded.length);
  return bytes;
}

/** JSON-ish rendering with every non-printable-ASCII character escaped and long strings abbreviated. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') {
    if (value.length > 80) return `${escape(value.slice(0, 24))}…(${value.length} chars)`;
    return escape(value);
  }
  if (value instanceof RawTimestamp) return `RawTimestamp{seconds: ${value.seconds}, nanos: ${value.nanos}}`;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Date(NaN)' : `Date(${value.getTime()} = ${value.toISOString()})`;
  if (value instanceof Uint8Array) return `bytes(${value.length}:${Buffer.from(value.slice(0, 48)).toString('hex')}${value.length > 48 ? '…' : ''})`;
  if (Array.isArray(value)) return `[${value.map(describeValue).join(', ')}]`;
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (value && typeof value === 'object') {
    return `{${Object.entries(value)
      .map(([k, v]) => `${k}: ${describeValue(v)}`)
      .join(', ')}}`;
  }
  return String(value);
}

const escape = (text: string) =>
  `"${text.replace(/[^\x20-\x7e]|["\\]/g, (c) => (c === '"' || c === '\\' ? `\\${c}` : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`))}"`;

/**
 * Bytes that are not a valid encoding of `type`: random bytes (kept only when the generated
 * decoder rejects them), valid encodings cut mid-field, and hand-made wire-format violations.
 * Every value is checked against the generated decoder, the one the server uses.
 */
export function undecodableBytes<T>(type: TsProtoType<T>, valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const crafted = fc.oneof(
    // wire types 6 and 7 do not exist
    fc.tuple(fc.integer({ min: 1, max: 15 }), fc.constantFrom(6, 7), fc.uint8Array({ maxLength: 16 })).map(([no, wt, rest]) => concat([(no << 3) | wt], rest)),
    // a length-delimited field claiming more bytes than follow
    fc.tuple(fc.integer({ min: 1, max: 15 }), fc.integer({ min: 2, max: 2 ** 28 }), fc.uint8Array({ maxLength: 8 })).map(([no, len, rest]) => {
      const w = new BinaryWriter().tag(no, WireType.LengthDelimited).uint32(len).finish();
      return concat(w, rest.slice(0, Math.max(0, Math.min(rest.length, len - 1))));
    }),
    // a varint that never ends (11 continuation bytes)
    fc.integer({ min: 1, max: 15 }).map((no) => concat([(no << 3) | WireType.Varint], new Array(11).fill(0xff))),
    // a fixed64/fixed32 field cut short
    fc.tuple(fc.integer({ min: 1, max: 15 }), fc.constantFrom(WireType.Bit64, WireType.Bit32), fc.uint8Array({ maxLength: 2 })).map(([no, wt, rest]) => concat([(no << 3) | wt], rest)),
    // an end-group tag without a start, or a start-group never ended
    fc.integer({ min: 1, max: 15 }).map((no) => Uint8Array.from([(no << 3) | WireType.StartGroup, 0x08, 0x01])),
  );
  const truncated = fc.tuple(valid, fc.nat()).map(([bytes, cut]) => bytes.slice(0, bytes.length > 1 ? 1 + (cut % (bytes.length - 1)) : 0));
  const random = fc.uint8Array({ minLength: 1, maxLength: 4096 });
  return fc.oneof(crafted, truncated, random).filter((bytes) => !decodes(type, bytes));
}

export function decodes<T>(type: TsProtoType<T>, bytes: Uint8Array): boolean {
  try {
    type.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

const concat = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a as Uint8Array, 0);
  out.set(b as Uint8Array, a.length);
  return out;
};

/**
 * Canonical plausible values by field name, for the otherwise-valid requests that probes start
 * from. A function is called once per probe (e.g. to hand each probe its own reserved number).
 */
export type CanonicalValues = Record<string, unknown>;

/**
 * Deterministic probes: an otherwise plausible request with one field at a time set to an
 * extreme of its kind (NUL, bidi, lone surrogate, empty and 100 KB strings; int64 at and beyond
 * 2^53; out-of-range enums; Timestamps outside the JS Date range; Durations with out-of-range
 * nanos), plus `extras`: further values by field name.
 */
export function probeRequests(service: DescService, methodName: string, canonical: CanonicalValues, extras: Record<string, unknown[]> = {}): HostileRequest[] {
  const method = service.methods.find((m) => m.name === methodName);
  if (!method) throw new Error(`${service.typeName}/${methodName} is not in the descriptor set`);
  const baseline = (message: DescMessage, depth: number): Record<string, unknown> =>
    Object.fromEntries(message.fields.map((f) => [f.localName, canonicalValue(f, canonical, depth, baseline)]));
  const probes: HostileRequest[] = [new HostileRequest(methodName, baseline(method.input, 0))];
  const visit = (message: DescMessage, depth: number, at: (value: Record<string, unknown>) => Record<string, unknown>) => {
    for (const field of message.fields) {
      if (field.fieldKind === 'message' && !WELL_KNOWN_EXTREMES[field.message.typeName] && depth < 3) {
        visit(field.message, depth + 1, (inner) => at({ ...baseline(message, depth), [field.localName]: inner }));
        continue;
      }
      for (const extreme of [...extremesOf(field, canonical, depth), ...(extras[field.localName] ?? [])]) {
        probes.push(new HostileRequest(methodName, at({ ...baseline(message, depth), [field.localName]: extreme })));
      }
    }
  };
  visit(method.input, 0, (v) => v);
  return probes;
}

const WELL_KNOWN_EXTREMES: Record<string, true> = { 'google.protobuf.Timestamp': true, 'google.protobuf.Duration': true };

function canonicalValue(
  field: DescField,
  canonical: CanonicalValues,
  depth: number,
  baseline: (message: DescMessage, depth: number) => Record<string, unknown>,
): unknown {
  if (field.localName in canonical) {
    const value = canonical[field.localName];
    return typeof value === 'function' ? (value as () => unknown)() : value;
  }
  switch (field.fieldKind) {
    case 'scalar':
      return field.scalar === ScalarType.STRING ? 'x' : field.scalar === ScalarType.BOOL ? false : field.scalar === ScalarType.BYTES ? new Uint8Array() : 0;
    case 'enum':
      return field.enum.values.find((v) => v.number !== 0)?.number ?? 0;
    case 'message':
      if (field.message.typeName === 'google.protobuf.Timestamp') return new Date();
      if (field.message.typeName === 'google.protobuf.Duration') return { seconds: 60, nanos: 0 };
      return depth < 3 ? baseline(field.message, depth + 1) : {};
    default:
      return undefined;
  }
}

function extremesOf(field: DescField, canonical: CanonicalValues, depth: number): unknown[] {
  const plausible = typeof canonical[field.localName] === 'string' ? (canonical[field.localName] as string) : 'x';
  switch (field.fieldKind) {
    case 'scalar':
      switch (field.scalar) {
        case ScalarType.STRING:
          return ['', `${plausible}\u0000`, `\u202e${plausible}`, `${plausible}\ud800`, 'x'.repeat(100_000)];
        case ScalarType.INT32:
        case ScalarType.SINT32:
        case ScalarType.SFIXED32:
          return [-1, INT32_MAX, INT32_MIN];
        case ScalarType.INT64:
        case ScalarType.SINT64:
        case ScalarType.SFIXED64:
          return [-1, Number.MAX_SAFE_INTEGER, 2 ** 53, -(2 ** 53), 2 ** 62];
        default:
          return [];
      }
    case 'enum':
      return [0, -1, Math.max(...field.enum.values.map((v) => v.number)) + 1];
    case 'message':
      if (field.message.typeName === 'google.protobuf.Timestamp') {
        const dates = [new Date(DATE_LIMIT_MS), new Date(-DATE_LIMIT_MS), new Date(-62_167_219_200_000)];
        return depth === 0
          ? [...dates, new RawTimestamp(8.64e12 + 1, 0), new RawTimestamp(0, -1), new RawTimestamp(0, 1_000_000_000), new RawTimestamp(2 ** 53, 0)]
          : dates;
      }
      if (field.message.typeName === 'google.protobuf.Duration') {
        return [{ seconds: 2 ** 53, nanos: 0 }, { seconds: 60, nanos: -1 }, { seconds: -1, nanos: 0 }, { seconds: 0, nanos: INT32_MAX }];
      }
      return [];
    default:
      return [];
  }
}
