import { randomBytes } from 'node:crypto';

/** A W3C trace context as the kernel carries it through logs, audit, jobs and events (law 4). */
export interface TraceContext {
  readonly traceId: string;
  /** The span id of this kernel call (a child of the caller's span when one was given). */
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly sampled: boolean;
  /** The incoming tracestate, kept only when valid. */
  readonly traceState?: string;
  /** True when the caller's traceparent was absent or invalid and a new trace was started. */
  readonly restarted: boolean;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);
const TRACESTATE_KEY = /^([a-z0-9][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})$/;
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

export const newTraceId = () => randomBytes(16).toString('hex');
export const newSpanId = () => randomBytes(8).toString('hex');

/**
 * Continues the caller's trace, following the W3C trace-context rules: an invalid header
 * (bad version `ff`, all-zero ids, wrong lengths, upper-case hex) restarts the trace; it never
 * fails the call. Future versions are accepted by reading their first four fields.
 */
export function continueTrace(traceparent: string | undefined, tracestate: string | undefined): TraceContext {
  const parent = parseTraceparent(traceparent);
  if (!parent) {
    return { traceId: newTraceId(), spanId: newSpanId(), sampled: true, restarted: true };
  }
  return {
    traceId: parent.traceId,
    spanId: newSpanId(),
    parentSpanId: parent.spanId,
    sampled: parent.sampled,
    traceState: validTracestate(tracestate),
    restarted: false,
  };
}

function parseTraceparent(header: string | undefined) {
  if (!header) return undefined;
  const m = TRACEPARENT.exec(header.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m;
  if (version === 'ff') return undefined;
  // Version 00 has exactly four fields; later versions may append more after a dash.
  if (version === '00' && rest !== undefined) return undefined;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 };
}

/** Returns the tracestate when it is well-formed, else undefined (it is dropped, not fatal). */
function validTracestate(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const members = header.split(',').map((m) => m.trim()).filter((m) => m !== '');
  if (members.length === 0 || members.length > 32) return undefined;
  const keys = new Set<string>();
  for (const member of members) {
    const eq = member.indexOf('=');
    if (eq <= 0) return undefined;
    const key = member.slice(0, eq);
    const value = member.slice(eq + 1);
    if (!TRACESTATE_KEY.test(key) || !TRACESTATE_VALUE.test(value) || keys.has(key)) return undefined;
    keys.add(key);
  }
  return members.join(',');
}

/** The traceparent header that continues `trace` from the kernel's own span. */
export function formatTraceparent(trace: Pick<TraceContext, 'traceId' | 'spanId' | 'sampled'>): string {
  return `00-${trace.traceId}-${trace.spanId}-${trace.sampled ? '01' : '00'}`;
}
