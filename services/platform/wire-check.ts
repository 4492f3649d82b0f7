import { isUtf8 } from 'node:buffer';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createFileRegistry, fromBinary, ScalarType, type DescField, type DescMessage, type FileRegistry } from '@bufbuild/protobuf';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import type { FieldViolation } from './kernel-error';

/**
 * What the generated (ts-proto) decoder cannot check, because by the time it returns the
 * evidence is gone:
 *  - every string field (at any depth, map and Struct keys included) must be valid UTF-8: the
 *    generated decoder replaces invalid bytes with U+FFFD, so a different string would be
 *    stored than the one sent;
 *  - google.protobuf.Timestamp must have nanos in [0, 1e9) and seconds within
 *    0001-01-01..9999-12-31; the decoder turns it into a Date, normalising nanos = 2e9 into
 *    "two seconds later" and nanos = -1 into "one nanosecond earlier";
 *  - google.protobuf.Duration must have |nanos| < 1e9, |seconds| ≤ 315,576,000,000 (10,000
 *    years) and seconds and nanos of the same sign (protobuf's own definition of a valid
 *    Duration); handlers would otherwise add the parts up.
 *
 * UTF-8 is checked by decoding with a strict reader (`strictReader`): the generated decoder
 * reads every string through it, so a valid request pays only the difference between a fatal
 * and a replacing TextDecoder. Only when that decode fails is the request walked with the
 * descriptor to name the field (`firstViolation`). Timestamp and Duration ranges need the raw
 * values, so request types that can hold them are walked on every call (`timeViolation`), along
 * the fields that can lead to one only. Both walks are compiled once per request type from the
 * descriptor set the kernel serves (gen/descriptor.binpb) and build nothing on the way.
 */

/** google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z … 9999-12-31T23:59:59.999999999Z, in seconds. */
const MIN_TIMESTAMP_SECONDS = -62_135_596_800n;
const MAX_TIMESTAMP_SECONDS = 253_402_300_799n;
/** google.protobuf.Duration's range: ±10,000 years. */
const MAX_DURATION_SECONDS = 315_576_000_000n;
const NANOS_PER_SECOND = 1_000_000_000;
/** Deeper than any kernel request nests; beyond it the bytes are refused rather than walked. */
const MAX_DEPTH = 100;

const enum Kind {
  Message,
  Timestamp,
  Duration,
}

interface MessagePlan {
  readonly kind: Kind;
  /** The fields worth looking into, by field number; anything else is skipped. */
  readonly fields: Map<number, FieldPlan>;
  /**
   * google.protobuf.Struct / Value / ListValue and map entries: their inner fields are not the
   * caller's field names, so a violation inside is reported at the field holding the message.
   */
  readonly opaque: boolean;
  /** How many repeated fields (that need an index in violation paths) the message has. */
  repeated: number;
}

interface FieldPlan {
  readonly name: string;
  /** Index of the field's occurrence counter, or -1 when the field is not repeated. */
  readonly slot: number;
  /** A string field (validated as UTF-8); otherwise a message field walked with `message`. */
  readonly message?: MessagePlan;
}

/** What the walk found wrong: the path segments, innermost first, and what is wrong. */
interface Finding {
  segments: string[];
  description: string;
}

const OPAQUE_TYPES = new Set(['google.protobuf.Struct', 'google.protobuf.Value', 'google.protobuf.ListValue']);

/** Compiles the checks of one message type (and, recursively, of every message it holds). */
class PlanCompiler {
  private readonly plans = new Map<string, MessagePlan>();

  plan(message: DescMessage): MessagePlan {
    const known = this.plans.get(message.typeName);
    if (known) return known;
    const kind = message.typeName === 'google.protobuf.Timestamp' ? Kind.Timestamp : message.typeName === 'google.protobuf.Duration' ? Kind.Duration : Kind.Message;
    const plan: MessagePlan = { kind, fields: new Map(), opaque: OPAQUE_TYPES.has(message.typeName), repeated: 0 };
    // Registered before its fields, so recursive types (Struct → Value → Struct) end.
    this.plans.set(message.typeName, plan);
    if (kind !== Kind.Message) return plan;
    for (const field of message.fields) this.addField(plan, field);
    return plan;
  }

  private addField(plan: MessagePlan, field: DescField): void {
    const slot = () => (plan.opaque ? -1 : plan.repeated++);
    switch (field.fieldKind) {
      case 'scalar':
        if (field.scalar === ScalarType.STRING) plan.fields.set(field.number, { name: field.name, slot: -1 });
        return;
      case 'message':
        plan.fields.set(field.number, { name: field.name, slot: -1, message: this.plan(field.message) });
        return;
      case 'list':
        if (field.listKind === 'scalar' && field.scalar === ScalarType.STRING) plan.fields.set(field.number, { name: field.name, slot: slot() });
        if (field.listKind === 'message') plan.fields.set(field.number, { name: field.name, slot: slot(), message: this.plan(field.message) });
        return;
      case 'map': {
        // On the wire a map is a repeated entry message { key = 1; value = 2; }.
        const entry: MessagePlan = { kind: Kind.Message, fields: new Map(), opaque: true, repeated: 0 };
        if (field.mapKey === ScalarType.STRING) entry.fields.set(1, { name: 'key', slot: -1 });
        if (field.mapKind === 'scalar' && field.scalar === ScalarType.STRING) entry.fields.set(2, { name: 'value', slot: -1 });
        if (field.mapKind === 'message') entry.fields.set(2, { name: 'value', slot: -1, message: this.plan(field.message) });
        if (entry.fields.size > 0) plan.fields.set(field.number, { name: field.name, slot: -1, message: entry });
        return;
      }
      default:
        return;
    }
  }
}

/** Whether a Timestamp or Duration can occur anywhere in the message (else pure ASCII needs no walk). */
function holdsTimeValues(plan: MessagePlan, seen = new Set<MessagePlan>()): boolean {
  if (plan.kind !== Kind.Message) return true;
  if (seen.has(plan)) return false;
  seen.add(plan);
  for (const field of plan.fields.values()) if (field.message && holdsTimeValues(field.message, seen)) return true;
  return false;
}

/** The plan restricted to the fields through which a Timestamp or Duration can be reached, or undefined if none can. */
function timeOnly(plan: MessagePlan, memo = new Map<MessagePlan, MessagePlan | undefined>()): MessagePlan | undefined {
  if (plan.kind !== Kind.Message) return plan;
  if (memo.has(plan)) return memo.get(plan);
  if (!holdsTimeValues(plan)) {
    memo.set(plan, undefined);
    return undefined;
  }
  const pruned: MessagePlan = { kind: Kind.Message, fields: new Map(), opaque: plan.opaque, repeated: plan.repeated };
  memo.set(plan, pruned);
  for (const [number, field] of plan.fields) {
    const message = field.message && timeOnly(field.message, memo);
    if (message) pruned.fields.set(number, { ...field, message });
  }
  return pruned;
}

/** The compiled checks of one request type's raw bytes. */
export interface WireCheck {
  /** The first string that is not UTF-8, or Timestamp / Duration out of range, anywhere in the request. */
  firstViolation(bytes: Uint8Array): FieldViolation | undefined;
  /** The first Timestamp / Duration out of range; undefined when the type cannot hold one. */
  readonly timeViolation?: (bytes: Uint8Array) => FieldViolation | undefined;
}

export function compileWireCheck(message: DescMessage): WireCheck {
  const plan = new PlanCompiler().plan(message);
  const times = timeOnly(plan);
  const run = (bytes: Uint8Array, p: MessagePlan, strings: boolean) => {
    const finding = walk(bytes, new BinaryReader(bytes), bytes.length, p, strings, 0);
    return finding && { field: finding.segments.reverse().join('.') || '(request)', description: finding.description };
  };
  return {
    firstViolation: (bytes) => run(bytes, plan, true),
    timeViolation: times && ((bytes) => run(bytes, times, false)),
  };
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const decodeStrictUtf8 = (bytes: Uint8Array) => fatalUtf8.decode(bytes);

/**
 * A reader for the generated decoders whose strings throw on invalid UTF-8 instead of becoming
 * U+FFFD. (A leading U+FEFF stays part of the string, as with the default reader.)
 */
export function strictReader(bytes: Uint8Array): BinaryReader {
  return new BinaryReader(bytes, decodeStrictUtf8);
}

function walk(bytes: Uint8Array, reader: BinaryReader, end: number, plan: MessagePlan, strings: boolean, depth: number): Finding | undefined {
  if (depth > MAX_DEPTH) return { segments: [], description: 'nested too deeply' };
  // Timestamp and Duration: the last occurrence of each field wins, as in the generated decoder.
  let seconds = 0n;
  let nanos = 0;
  const counts = plan.repeated > 0 ? new Uint32Array(plan.repeated) : undefined;
  while (reader.pos < end) {
    const tag = reader.uint32();
    const fieldNo = tag >>> 3;
    const wireType = (tag & 7) as WireType;
    if (plan.kind !== Kind.Message) {
      // The generated decoder reads seconds (1) and nanos (2) only as varints and skips the rest.
      if (fieldNo === 1 && wireType === WireType.Varint) seconds = BigInt(reader.int64());
      else if (fieldNo === 2 && wireType === WireType.Varint) nanos = reader.int32();
      else reader.skip(wireType, fieldNo);
      continue;
    }
    const field = plan.fields.get(fieldNo);
    // A field sent with another wire type is unknown to the generated decoder too: skipped.
    if (field === undefined || wireType !== WireType.LengthDelimited) {
      reader.skip(wireType, fieldNo);
      continue;
    }
    const length = reader.uint32();
    const start = reader.pos;
    const stop = start + length;
    if (stop > end) throw new RangeError('length-delimited field beyond its message');
    const index = field.slot >= 0 ? counts![field.slot]++ : -1;
    let finding: Finding | undefined;
    if (field.message) {
      finding = walk(bytes, reader, stop, field.message, strings, depth + 1);
      if (finding && field.message.opaque) finding.segments.length = 0;
    } else if (strings && !validUtf8(bytes, start, stop)) {
      finding = { segments: [], description: 'must be valid UTF-8' };
    }
    if (finding) {
      if (index >= 0) finding.segments.push(String(index));
      finding.segments.push(field.name);
      return finding;
    }
    reader.pos = stop;
  }
  if (plan.kind === Kind.Timestamp && (nanos < 0 || nanos >= NANOS_PER_SECOND || seconds < MIN_TIMESTAMP_SECONDS || seconds > MAX_TIMESTAMP_SECONDS)) {
    return { segments: [], description: 'must be a timestamp between 0001-01-01 and 9999-12-31 with nanos in [0, 999999999]' };
  }
  if (
    plan.kind === Kind.Duration &&
    (nanos <= -NANOS_PER_SECOND || nanos >= NANOS_PER_SECOND || seconds < -MAX_DURATION_SECONDS || seconds > MAX_DURATION_SECONDS || (seconds > 0n && nanos < 0) || (seconds < 0n && nanos > 0))
  ) {
    return { segments: [], description: 'must be a duration within ±315,576,000,000 s, with |nanos| < 1e9 of the same sign as seconds' };
  }
  return undefined;
}

/** Strict UTF-8 (no overlong forms, surrogates or code points beyond U+10FFFF). */
function validUtf8(bytes: Uint8Array, start: number, stop: number): boolean {
  // Most kernel strings are short identifiers: a plain ASCII scan costs less than the native call.
  if (stop - start <= 64) {
    let i = start;
    while (i < stop && bytes[i] < 0x80) i++;
    if (i === stop) return true;
  }
  return isUtf8(bytes.subarray(start, stop));
}

let registry: FileRegistry | undefined;

/** The descriptor set the kernel serves through reflection, read once. */
export function kernelDescriptors(): FileRegistry {
  registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(path.resolve(__dirname, '../../gen/descriptor.binpb'))));
  return registry;
}
