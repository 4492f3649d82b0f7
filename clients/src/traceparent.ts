import { randomFillSync } from 'node:crypto';

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
const ZERO_TRACE_ID = '0'.repeat(32);
const ZERO_SPAN_ID = '0'.repeat(16);

/** Ids come from a 3 KiB CSPRNG pool refilled in one call (one OpenSSL call per 128 calls, not two per call). */
const ID_BYTES = 24;
const pool = Buffer.allocUnsafe(128 * ID_BYTES);
let offset = pool.length;

/** A new sampled W3C traceparent: `00-<32 hex trace id>-<16 hex span id>-01` (never an all-zero id). */
export function newTraceparent(): string {
  for (;;) {
    if (offset === pool.length) {
      randomFillSync(pool);
      offset = 0;
    }
    const traceId = pool.toString('hex', offset, offset + 16);
    const spanId = pool.toString('hex', offset + 16, offset + ID_BYTES);
    offset += ID_BYTES;
    if (traceId !== ZERO_TRACE_ID && spanId !== ZERO_SPAN_ID) return `00-${traceId}-${spanId}-01`;
  }
}

/**
 * The trace id of a version-00 traceparent, or undefined when the header is not one the kernel
 * would continue (it restarts the trace on anything invalid, all-zero ids included).
 */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  const match = traceparent === undefined ? null : TRACEPARENT.exec(traceparent.trim());
  if (!match || match[1] === ZERO_TRACE_ID || match[2] === ZERO_SPAN_ID) return undefined;
  return match[1];
}
