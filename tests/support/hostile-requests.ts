import { isUtf8 } from 'node:buffer';
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
 * Requests are ts-proto partials (built with the generated `fromPartial`), plus what ts-proto
 * cannot express, spliced into the wire bytes by `encodeHostile`:
 *  - RawTimestamp: top-level google.protobuf.Timestamp fields (ts-proto maps them to Date, so
 *    they cannot carry seconds outside the Date range or out-of-range nanos) as raw wire fields
 *    appended after the encoding (nested Timestamps in requests are output-only resource fields;
 *    they are sent as Dates);
 *  - RawUtf8: a string field at any depth (Struct values and repeated strings included) whose
 *    bytes are not valid UTF-8, and Struct keys made with `rawUtf8Key` — encoded as a placeholder
 *    of the same length that is then overwritten in place, so every length prefix stays right;
 *  - MintedPageToken: a page token with a valid MAC, minted by the test for the very request it
 *    is sent with (see tests/support/page-tokens.ts), so that its position reaches the call
 *    site's schema — or deliberately altered, or minted for another tenant or request.
 * google.protobuf.Struct and Value fields get JSON-like values with hostile keys, NaN, ±Infinity.
 */

const DESCRIPTOR_SET = path.resolve(__dirname, '../../gen/descriptor.binpb');

let registry: ReturnType<typeof createFileRegistry> | undefined;

export function loadService(fullName: string): DescService {
  // Parsed once: the fuzzers look services up for every request they build.
  registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(DESCRIPTOR_SET)));
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

/** A string field sent as these raw bytes (typically not valid UTF-8). At least 4 bytes (see encodeHostile). */
export class RawUtf8 {
  constructor(readonly bytes: Uint8Array) {
    if (bytes.length < 4) throw new Error('RawUtf8 needs at least 4 bytes');
  }
}

const RAW_KEY_PREFIX = '\u0002\u0004raw:';
/** A Struct (or map) key that goes on the wire as `bytes` (at least 4 of them): object keys can only be strings. */
export const rawUtf8Key = (bytes: Uint8Array) => `${RAW_KEY_PREFIX}${Buffer.from(bytes).toString('hex')}`;

/** How a MintedPageToken is spoiled after minting (or not). */
export type PageTokenAlteration = 'none' | 'flip' | 'truncate' | 'extend' | 'other-tenant' | 'other-request';

/**
 * A page token minted with the kernel's key for the request it is sent with, carrying `position`
 * (so the MAC verifies and the position reaches the handler's schema), then altered as asked.
 */
export class MintedPageToken {
  constructor(
    readonly position: unknown,
    readonly alteration: PageTokenAlteration = 'none',
  ) {}
}

/** Mints a page token for a decoded request of the method being called (in another tenant when asked). */
export type PageTokenMint = (request: unknown, position: unknown, otherTenant: boolean) => string;

/** Byte sequences that are not UTF-8: stray continuation bytes, truncated and overlong forms, surrogates, > U+10FFFF, 0xFE/0xFF. */
export const INVALID_UTF8_SEQUENCES: readonly number[][] = [
  [0x80],
  [0xbf],
  [0xc3],
  [0xe2, 0x82],
  [0xf0, 0x9f, 0x98],
  [0xc0, 0x80],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0x80],
  [0xf0, 0x80, 0x80, 0x80],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xfe],
  [0xff],
];

/** Invalid UTF-8 between plausible ASCII, at least 4 bytes long. */
export function invalidUtf8Bytes(): fc.Arbitrary<Uint8Array> {
  const ascii = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 8 });
  return fc.tuple(ascii, fc.constantFrom(...INVALID_UTF8_SEQUENCES), ascii).map(([before, bad, after]) => {
    const bytes = [...Buffer.from(before), ...bad, ...Buffer.from(after)];
    while (bytes.length < 4) bytes.push(0x61);
    return Uint8Array.from(bytes);
  });
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
    // A hint may also yield values that are not strings (a MintedPageToken): those pass as they are.
    .map(([text, nasty, at]) => (typeof text === 'string' ? text.slice(0, at % (text.length + 1)) + nasty + text.slice(at % (text.length + 1)) : text));
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
      return fc.oneof(
        { arbitrary: hostileString(hint as fc.Arbitrary<string> | undefined), weight: 12 },
        { arbitrary: invalidUtf8Bytes().map((bytes) => new RawUtf8(bytes)), weight: 1 },
      );
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
      return fc.oneof(
        {
          arbitrary: fc.record({
            seconds: int64Values(fc.oneof(fc.integer({ min: 0, max: 8 * 24 * 3600 }), fc.constantFrom(1, 900, 604_800, 604_801))),
            nanos: extremeNanos,
          }),
          weight: 3,
        },
        // The edges of protobuf's Duration: ±315,576,000,000 s, |nanos| < 1e9, signs that disagree.
        {
          arbitrary: fc.record({
            seconds: fc.constantFrom(0, 1, -1, 315_576_000_000, 315_576_000_001, -315_576_000_000, -315_576_000_001),
            nanos: fc.constantFrom(0, 1, -1, 999_999_999, -999_999_999, 1_000_000_000, -1_000_000_000),
          }),
          weight: 1,
        },
      );
    case 'google.protobuf.Struct':
      return structValue(depth);
    case 'google.protobuf.Value':
      return jsonValue(depth);
    case 'google.protobuf.ListValue':
      return fc.array(jsonValue(depth + 1), { maxLength: 4 });
  }
  if (depth > 3) return fc.constant({});
  return requestValue(message, hints, depth);
}

/** Keys of Struct objects: plausible ones, nasty characters (U+0000 included), empty, long, and not UTF-8. */
function structKey(): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.stringMatching(/^[a-z_]{1,12}$/), weight: 6 },
    { arbitrary: hostileString(), weight: 3 },
    { arbitrary: fc.constantFrom(...NASTY_CHARACTERS).map((c) => `k${c}`), weight: 2 },
    { arbitrary: invalidUtf8Bytes().map(rawUtf8Key), weight: 1 },
  );
}

/** Numbers JSON cannot hold (NaN, ±Infinity) and awkward ones it can. */
const structNumber = fc.oneof(
  { arbitrary: fc.double(), weight: 3 },
  { arbitrary: fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, Number.MAX_VALUE, Number.MIN_VALUE, 2 ** 53 + 2), weight: 2 },
);

/** A google.protobuf.Value as ts-proto takes it: any JSON-like value, with hostile strings, keys and numbers. */
function jsonValue(depth: number): fc.Arbitrary<unknown> {
  const leaf = fc.oneof(
    { arbitrary: hostileString(), weight: 3 },
    { arbitrary: invalidUtf8Bytes().map((bytes) => new RawUtf8(bytes)), weight: 1 },
    { arbitrary: structNumber, weight: 3 },
    { arbitrary: fc.boolean(), weight: 1 },
    { arbitrary: fc.constant(null), weight: 1 },
  );
  if (depth > 3) return leaf;
  return fc.oneof({ arbitrary: leaf, weight: 4 }, { arbitrary: structValue(depth + 1), weight: 1 }, { arbitrary: fc.array(jsonValue(depth + 1), { maxLength: 3 }), weight: 1 });
}

/** A google.protobuf.Struct as ts-proto takes it: a plain object. */
function structValue(depth: number): fc.Arbitrary<Record<string, unknown>> {
  return fc.dictionary(structKey(), jsonValue(depth + 1), { maxKeys: 4 });
}

/**
 * Positions for page tokens: what each list RPC's cursor looks like (ids, UUIDs, sequence
 * numbers, expiry cursors) plus what none of them may accept — U+0000, huge and fractional
 * numbers, bigint-ish decimal strings beyond int64 and the timestamp range, wrong types, extra
 * keys, deep nesting.
 */
export function hostilePagePositions(): fc.Arbitrary<unknown> {
  const bigDecimal = fc.constantFrom('99999999999999999999', '9223372036854775807', '9223372036854775808', '-9223372036854775809', '253402300800000000', '-0', '01', '1e3', '0x10', ' 1', '');
  const number = fc.constantFrom(0, -1, 1.5, 2 ** 53, 2 ** 62, -(2 ** 62), 1e20, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2_147_483_648);
  const text = fc.oneof(hostileString(fc.constantFrom('fz-never', 'fz-opaque', 'inv', 'default')), fc.uuid(), fc.uuid().map((u) => `${u}\u0000`));
  const scalar = fc.oneof(text, number, bigDecimal, fc.integer({ min: 0, max: 100 }), fc.boolean(), fc.constant(null));
  return fc.oneof(
    { arbitrary: scalar, weight: 4 },
    { arbitrary: fc.record({ period: fc.oneof(text, fc.constantFrom('', '2026', '2026-11')), value: fc.oneof(number, fc.integer({ min: 0, max: 10 }), bigDecimal) }, { requiredKeys: [] }), weight: 2 },
    {
      arbitrary: fc.record(
        { dueMicros: fc.oneof(bigDecimal, number, fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n }).map(String)), secretId: text, reason: fc.constantFrom('ROTATION_DUE', 'CERTIFICATE_NOT_AFTER', 'X', '') },
        { requiredKeys: [] },
      ),
      weight: 2,
    },
    { arbitrary: fc.dictionary(hostileString(), scalar, { maxKeys: 3 }), weight: 1 },
    { arbitrary: fc.array(scalar, { maxLength: 3 }), weight: 1 },
    { arbitrary: fc.constant(JSON.parse('['.repeat(200) + ']'.repeat(200))), weight: 1 },
  );
}

/**
 * page_token values of every hostile kind: empty, random, non-base64, overlong; forged in the
 * format any client can make (the unsigned pre-MAC one included, via `forge`); and minted with
 * the kernel's key for the request they travel with — intact (the position reaches the schema),
 * altered, truncated, or minted for another tenant or another request.
 */
export function hostilePageTokens(forge: (position: unknown) => string): fc.Arbitrary<unknown> {
  const alteration = fc.constantFrom<PageTokenAlteration>('none', 'none', 'none', 'flip', 'truncate', 'extend', 'other-tenant', 'other-request');
  return fc.oneof(
    { arbitrary: fc.constant(''), weight: 2 },
    { arbitrary: fc.base64String({ maxLength: 64 }), weight: 1 },
    { arbitrary: fc.oneof(hostileString(), fc.constant('A'.repeat(2000)), fc.constant('x'.repeat(1000))), weight: 1 },
    { arbitrary: hostilePagePositions().map(forge), weight: 2 },
    { arbitrary: fc.tuple(hostilePagePositions(), alteration).map(([position, how]) => new MintedPageToken(position, how)), weight: 4 },
  );
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
 * then what it cannot:
 *  - top-level RawTimestamp fields as raw length-delimited fields (seconds = 1, nanos = 2);
 *  - RawUtf8 values and `rawUtf8Key` keys at any depth: encoded as unique ASCII placeholders of
 *    the same byte length, then overwritten in place with the raw bytes;
 *  - a MintedPageToken in `pageToken`: minted with `mint` for the request as the kernel will
 *    decode it (without the token), then altered as it says.
 */
export function encodeHostile<T>(type: TsProtoType<T>, message: DescMessage, request: HostileRequest, mint?: PageTokenMint, report?: EncodingReport): Uint8Array {
  const placeholders = new Map<string, Uint8Array>();
  const substitute = (value: unknown): unknown => {
    if (value instanceof RawUtf8) return placeholder(placeholders, value.bytes);
    if (value instanceof Date || value instanceof Uint8Array || value instanceof RawTimestamp || value instanceof MintedPageToken || value === null || typeof value !== 'object') return value;
    if (Array.isArray(value)) return value.map(substitute);
    return Object.fromEntries(
      Object.entries(value).map(([key, child]) => [key.startsWith(RAW_KEY_PREFIX) ? placeholder(placeholders, Buffer.from(key.slice(RAW_KEY_PREFIX.length), 'hex')) : key, substitute(child)]),
    );
  };
  const partial: Record<string, unknown> = {};
  const raw = new BinaryWriter();
  let minted: MintedPageToken | undefined;
  for (const [name, value] of Object.entries(request.partial)) {
    if (value instanceof RawTimestamp) {
      const field = message.fields.find((f) => f.localName === name)!;
      raw.tag(field.number, WireType.LengthDelimited).fork().tag(1, WireType.Varint).int64(value.seconds).tag(2, WireType.Varint).int32(value.nanos).join();
      if (value.nanos < 0 || value.nanos >= 1e9 || value.seconds < MIN_TIMESTAMP_SECONDS || value.seconds > MAX_TIMESTAMP_SECONDS) report?.mustRefuse.push(`${field.name}: Timestamp out of range`);
    } else if (value instanceof MintedPageToken) {
      minted = value;
    } else {
      partial[name] = substitute(value);
    }
  }
  const encode = () => {
    const encoded = type.encode(type.fromPartial(partial)).finish();
    const tail = raw.finish();
    const bytes = new Uint8Array(encoded.length + tail.length);
    bytes.set(encoded, 0);
    bytes.set(tail, encoded.length);
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (const [text, rawBytes] of placeholders) {
      const marker = Buffer.from(text, 'latin1');
      const at = view.indexOf(marker);
      // Absent when ts-proto does not encode the field it was put in (e.g. a oneof member given as a plain key).
      if (at < 0) continue;
      if (view.indexOf(marker, at + 1) >= 0) throw new Error(`placeholder ${JSON.stringify(text)} occurs twice in the encoding`);
      bytes.set(rawBytes, at);
      if (!isUtf8(rawBytes)) report?.mustRefuse.push(`a string that is not UTF-8 (${Buffer.from(rawBytes).toString('hex')})`);
    }
    return bytes;
  };
  if (minted) {
    if (!mint) throw new Error('a MintedPageToken needs a mint function');
    // The token binds the request as the kernel decodes it, minus page_token and page_size. (A
    // request the generated decoder refuses — an int64 beyond 2^53 — is refused whatever it carries.)
    let decoded: T;
    try {
      decoded = type.decode(encode());
    } catch {
      decoded = type.decode(new Uint8Array());
    }
    const token = mint(minted.alteration === 'other-request' ? type.decode(new Uint8Array()) : decoded, minted.position, minted.alteration === 'other-tenant');
    partial.pageToken = alter(token, minted.alteration);
  }
  return encode();
}

/** What encodeHostile sent that every kernel RPC must refuse, whatever the field means. */
export interface EncodingReport {
  mustRefuse: string[];
}

/** google.protobuf.Timestamp's range (0001-01-01 … 9999-12-31) and Duration's (±10,000 years), in seconds. */
const MIN_TIMESTAMP_SECONDS = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS = 253_402_300_799;
const MAX_DURATION_SECONDS = 315_576_000_000;

/**
 * Why a decoded request (as the generated decoder returns it, which keeps NaN, U+0000 and
 * Durations as sent) must be refused by every RPC, or undefined: a string or key holding U+0000
 * (PostgreSQL text and jsonb cannot hold it), a Struct/Value number that is NaN or ±Infinity
 * (JSON would store null), a Duration outside protobuf's definition. Walked along the
 * descriptor, so only fields that were actually sent count.
 */
export function mustBeRefused(message: DescMessage, decoded: unknown): string | undefined {
  const json = (value: unknown, path: string): string | undefined => {
    if (typeof value === 'number') return Number.isFinite(value) ? undefined : `${path}: ${value}`;
    if (typeof value === 'string') return value.includes('\u0000') ? `${path}: U+0000` : undefined;
    if (value === null || typeof value !== 'object') return undefined;
    for (const [key, child] of Object.entries(value)) {
      if (key.includes('\u0000')) return `${path}: a key holding U+0000`;
      const found = json(child, `${path}.${key}`);
      if (found) return found;
    }
    return undefined;
  };
  const walk = (m: DescMessage, value: unknown, path: string): string | undefined => {
    if (value === null || typeof value !== 'object') return undefined;
    const record = value as Record<string, unknown>;
    for (const field of m.fields) {
      const at = path ? `${path}.${field.name}` : field.name;
      const v = field.oneof && !field.proto.proto3Optional ? oneofValue(record[field.oneof.localName], field.localName) : record[field.localName];
      if (v === undefined) continue;
      const values = field.fieldKind === 'list' ? (v as unknown[]) : field.fieldKind === 'map' ? Object.values(v as object) : [v];
      if (field.fieldKind === 'map' && Object.keys(v as object).some((k) => k.includes('\u0000'))) return `${at}: a key holding U+0000`;
      for (const item of values) {
        if (typeof item === 'string' && item.includes('\u0000')) return `${at}: U+0000`;
        const type = field.fieldKind === 'message' || (field.fieldKind === 'list' && field.listKind === 'message') || (field.fieldKind === 'map' && field.mapKind === 'message') ? field.message : undefined;
        if (!type) continue;
        if (type.typeName === 'google.protobuf.Duration') {
          const d = item as { seconds: number; nanos: number };
          if (Math.abs(d.nanos) >= 1e9 || Math.abs(d.seconds) > MAX_DURATION_SECONDS || (d.seconds > 0 && d.nanos < 0) || (d.seconds < 0 && d.nanos > 0)) return `${at}: Duration out of range`;
        } else if (type.typeName === 'google.protobuf.Struct' || type.typeName === 'google.protobuf.Value' || type.typeName === 'google.protobuf.ListValue') {
          const found = json(item, at);
          if (found) return found;
        } else if (type.typeName !== 'google.protobuf.Timestamp') {
          const found = walk(type, item, at);
          if (found) return found;
        }
      }
    }
    return undefined;
  };
  return walk(message, decoded, '');
}

const oneofValue = (union: unknown, caseName: string) =>
  union && typeof union === 'object' && (union as { $case?: unknown }).$case === caseName ? (union as { value?: unknown }).value : undefined;

/** A unique ASCII string of `bytes.length` bytes to stand in for raw bytes until they are spliced in. */
function placeholder(placeholders: Map<string, Uint8Array>, bytes: Uint8Array): string {
  const index = placeholders.size.toString(36).padStart(2, '0');
  const text = `\u0002\u0003${index}`.padEnd(bytes.length, '~');
  if (text.length !== bytes.length) throw new Error('too many raw values in one request');
  placeholders.set(text, bytes);
  return text;
}

function alter(token: string, how: PageTokenAlteration): string {
  switch (how) {
    case 'flip': {
      const at = token.length >> 1;
      return token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1);
    }
    case 'truncate':
      return token.slice(0, -3);
    case 'extend':
      return `${token}AAAA`;
    default:
      return token;
  }
}

/** JSON-ish rendering with every non-printable-ASCII character escaped and long strings abbreviated. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') {
    if (value.length > 80) return `${escape(value.slice(0, 24))}…(${value.length} chars)`;
    return escape(value);
  }
  if (value instanceof RawTimestamp) return `RawTimestamp{seconds: ${value.seconds}, nanos: ${value.nanos}}`;
  if (value instanceof RawUtf8) return `RawUtf8(${Buffer.from(value.bytes).toString('hex')})`;
  if (value instanceof MintedPageToken) return `MintedPageToken{position: ${JSON.stringify(value.position)?.slice(0, 120)}, ${value.alteration}}`;
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

const WELL_KNOWN_EXTREMES: Record<string, true> = {
  'google.protobuf.Timestamp': true,
  'google.protobuf.Duration': true,
  'google.protobuf.Struct': true,
  'google.protobuf.Value': true,
  'google.protobuf.ListValue': true,
};

const rawUtf8 = (...bytes: number[]) => new RawUtf8(Uint8Array.from(bytes));
/** Strings that are not UTF-8: a stray 0xFF, an overlong U+0000, a UTF-16 surrogate, a truncated sequence. */
const RAW_STRING_EXTREMES = [rawUtf8(0x78, 0xff, 0x78, 0x78), rawUtf8(0x78, 0xc0, 0x80, 0x78), rawUtf8(0xed, 0xa0, 0x80, 0x78), rawUtf8(0x78, 0x78, 0xe2, 0x82)];
const STRUCT_EXTREMES: unknown[] = [
  { 'k\u0000': 1 },
  { k: Number.NaN },
  { k: Number.POSITIVE_INFINITY },
  { k: { deeper: [Number.NEGATIVE_INFINITY] } },
  { k: 'v\u0000' },
  { k: rawUtf8(0x76, 0xff, 0x76, 0x76) },
  { [rawUtf8Key(Uint8Array.from([0x6b, 0xc3, 0x6b, 0x6b]))]: true },
  { '': 1, '\u202e': 2 },
];
const VALUE_EXTREMES: unknown[] = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 'v\u0000', rawUtf8(0x76, 0xff, 0x76, 0x76), [Number.NaN], ...STRUCT_EXTREMES];

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
      if (field.message.typeName === 'google.protobuf.Struct') return {};
      if (field.message.typeName === 'google.protobuf.Value') return { k: 'v' };
      if (field.message.typeName === 'google.protobuf.ListValue') return [];
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
          return ['', `${plausible}\u0000`, `\u202e${plausible}`, `${plausible}\ud800`, 'x'.repeat(100_000), ...RAW_STRING_EXTREMES];
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
    case 'list':
      return field.listKind === 'scalar' && field.scalar === ScalarType.STRING ? [['ok', 'x\u0000'], ['ok', ...RAW_STRING_EXTREMES.slice(0, 1)]] : [];
    case 'message':
      if (field.message.typeName === 'google.protobuf.Timestamp') {
        const dates = [new Date(DATE_LIMIT_MS), new Date(-DATE_LIMIT_MS), new Date(-62_167_219_200_000)];
        return depth === 0
          ? [
              ...dates,
              new RawTimestamp(8.64e12 + 1, 0),
              new RawTimestamp(0, -1),
              new RawTimestamp(0, 1_000_000_000),
              new RawTimestamp(0, 2_000_000_000),
              new RawTimestamp(1_700_000_000, INT32_MIN),
              new RawTimestamp(253_402_300_800, 0),
              new RawTimestamp(-62_135_596_801, 0),
              new RawTimestamp(253_402_300_799, 999_999_999),
              new RawTimestamp(2 ** 53, 0),
            ]
          : dates;
      }
      if (field.message.typeName === 'google.protobuf.Duration') {
        return [
          { seconds: 2 ** 53, nanos: 0 },
          { seconds: 60, nanos: -1 },
          { seconds: -60, nanos: 1 },
          { seconds: -1, nanos: 0 },
          { seconds: 0, nanos: INT32_MAX },
          { seconds: 0, nanos: 1_000_000_000 },
          { seconds: 315_576_000_001, nanos: 0 },
          { seconds: -315_576_000_001, nanos: 0 },
        ];
      }
      if (field.message.typeName === 'google.protobuf.Struct') return STRUCT_EXTREMES;
      if (field.message.typeName === 'google.protobuf.Value') return VALUE_EXTREMES;
      if (field.message.typeName === 'google.protobuf.ListValue') return [[Number.NaN], ['v\u0000'], [rawUtf8(0x76, 0xff, 0x76, 0x76)]];
      return [];
    default:
      return [];
  }
}
