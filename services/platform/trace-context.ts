import { randomFillSync } from 'node:crypto';

/** A W3C trace context as the kernel carries it through logs, audit, jobs and events (docs/laws.md#law-4, trace propagation). */
export interface TraceContext {
  readonly traceId: string;
  /** The span id of this kernel call (a child of the caller's span when one was given). */
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly sampled: boolean;
  /** The caller's trace flags as two hex digits (sampled 0x01, random 0x02, …): propagated as received. */
  readonly flags?: string;
  /** The incoming tracestate, its valid members only. */
  readonly traceState?: string;
  /** The incoming W3C baggage, its valid members within the limits only. */
  readonly baggage?: string;
  /** True when the caller's traceparent was absent or invalid and a new trace was started. */
  readonly restarted: boolean;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(.*)$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);
// Trace Context level 2 key grammar: a lower-case letter or digit, then up to 255 of [_0-9a-z-*/@].
const TRACESTATE_KEY = /^[0-9a-z][_0-9a-z\-*/@]{0,255}$/;
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
const TRACESTATE_MAX_MEMBERS = 32;
/** W3C Baggage limits: at least 64 list-members and 8192 bytes must be propagated; beyond, members are dropped. */
const BAGGAGE_MAX_MEMBERS = 64;
const BAGGAGE_MAX_BYTES = 8192;
const OWS = /^[ \t]+|[ \t]+$/g;
const BAGGAGE_KEY = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAGGAGE_VALUE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/;

/**
 * Trace and span ids from the CSPRNG, drawn from a 4 KiB pool refilled in one call: one
 * `randomBytes` per id cost a synchronous OpenSSL call and a buffer per call on the hot path.
 * Every byte is used once. W3C forbids all-zero ids; one is drawn again (p = 2^-64 or less).
 */
const ID_POOL_BYTES = 4096;
const idPool = Buffer.allocUnsafe(ID_POOL_BYTES);
let idPoolOffset = ID_POOL_BYTES;
const ALL_ZERO = /^0+$/;

function randomHex(bytes: number): string {
  for (;;) {
    if (idPoolOffset + bytes > ID_POOL_BYTES) {
      randomFillSync(idPool);
      idPoolOffset = 0;
    }
    const hex = idPool.toString('hex', idPoolOffset, idPoolOffset + bytes);
    idPoolOffset += bytes;
    if (!ALL_ZERO.test(hex)) return hex;
  }
}

export const newTraceId = () => randomHex(16);
export const newSpanId = () => randomHex(8);

/** Header values as gRPC metadata gives them: absent, one, or several (repeated headers). */
type HeaderValues = string | readonly string[] | undefined;
const all = (values: HeaderValues): string[] => (values === undefined ? [] : typeof values === 'string' ? [values] : [...values]);

/**
 * Continues the caller's trace, following the W3C Trace Context rules (as the W3C test suite
 * checks them; tests/platform/trace-context.spec.ts ports its cases): an invalid traceparent —
 * version `ff`, all-zero ids, wrong lengths, upper-case or other non-hex characters, extra fields
 * on version 00, more than one traceparent — restarts the trace; it never fails the call. Later
 * versions are accepted by their first four fields (extra fields after a `-` are ignored).
 * tracestate (all headers, combined in order) keeps its valid members unless it is malformed or
 * has more than 32 members, in which case it is dropped; of duplicate keys the first is kept.
 * Baggage keeps its valid members up to the W3C limits (64 members, 8192 bytes).
 */
export function continueTrace(traceparent: HeaderValues, tracestate: HeaderValues, baggage?: HeaderValues): TraceContext {
  const parents = all(traceparent);
  const parent = parents.length === 1 ? parseTraceparent(parents[0]) : undefined;
  if (!parent) {
    return { traceId: newTraceId(), spanId: newSpanId(), sampled: true, baggage: validBaggage(all(baggage)), restarted: true };
  }
  return {
    traceId: parent.traceId,
    spanId: newSpanId(),
    parentSpanId: parent.spanId,
    sampled: (parseInt(parent.flags, 16) & 1) === 1,
    flags: parent.flags,
    traceState: validTracestate(all(tracestate)),
    baggage: validBaggage(all(baggage)),
    restarted: false,
  };
}

function parseTraceparent(header: string) {
  const m = TRACEPARENT.exec(header.replace(OWS, ''));
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m;
  if (version === 'ff') return undefined;
  // Version 00 has exactly four fields; a later version may append more, after a dash.
  if (rest !== '' && (version === '00' || !rest.startsWith('-'))) return undefined;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, flags };
}

/** The valid tracestate, or undefined (dropped, never fatal). */
export function validTracestate(headers: readonly string[]): string | undefined {
  const members = headers.flatMap((h) => h.split(',')).map((m) => m.replace(OWS, '')).filter((m) => m !== '');
  if (members.length === 0 || members.length > TRACESTATE_MAX_MEMBERS) return undefined;
  const kept = new Map<string, string>();
  for (const member of members) {
    const eq = member.indexOf('=');
    if (eq <= 0) return undefined;
    const key = member.slice(0, eq);
    const value = member.slice(eq + 1);
    if (!TRACESTATE_KEY.test(key) || !TRACESTATE_VALUE.test(value)) return undefined;
    if (!kept.has(key)) kept.set(key, value);
  }
  return [...kept].map(([k, v]) => `${k}=${v}`).join(',');
}

/** The valid baggage members within the W3C limits, or undefined when none is left. */
export function validBaggage(headers: readonly string[]): string | undefined {
  const members: string[] = [];
  let bytes = 0;
  for (const raw of headers.flatMap((h) => h.split(','))) {
    const member = raw.replace(OWS, '');
    if (member === '') continue;
    const [pair, ...properties] = member.split(';');
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const key = pair.slice(0, eq).replace(OWS, '');
    const value = pair.slice(eq + 1).replace(OWS, '');
    if (!BAGGAGE_KEY.test(key) || !BAGGAGE_VALUE.test(value) || !validPercentEncoding(value)) continue;
    const kept = [`${key}=${value}`, ...properties.map((p) => p.replace(OWS, '')).filter((p) => p !== '')].join(';');
    const size = Buffer.byteLength(kept) + (members.length > 0 ? 1 : 0);
    if (members.length === BAGGAGE_MAX_MEMBERS || bytes + size > BAGGAGE_MAX_BYTES) break;
    members.push(kept);
    bytes += size;
  }
  return members.length > 0 ? members.join(',') : undefined;
}

function validPercentEncoding(value: string): boolean {
  try {
    decodeURIComponent(value);
    return true;
  } catch {
    return false;
  }
}

/** The traceparent header that continues `trace` from the kernel's own span (the caller's flags kept). */
export function formatTraceparent(trace: Pick<TraceContext, 'traceId' | 'spanId' | 'sampled' | 'flags'>): string {
  const flags = trace.flags ?? (trace.sampled ? '01' : '00');
  return `00-${trace.traceId}-${trace.spanId}-${flags}`;
}
