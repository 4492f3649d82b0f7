/**
 * An audit entry as the log commits to it. The leaf data is the entry's canonical JSON (keys
 * sorted by UTF-16 code units, no whitespace — RFC 8785 for the values an entry holds), so any
 * verifier can recompute a leaf from an exported entry. The leaf does not contain the entry's
 * position: the tree and the chain fix the order, and an entry moved elsewhere is told apart
 * from an edited one (VerifyLog's ORDER_CHANGED vs PAYLOAD_CHANGED).
 */
export interface LogEntry {
  tenant: string;
  /** UTC with microseconds, e.g. `2026-11-26T12:00:00.123456Z` (kernel_audit_time_text). */
  time: string;
  principal: string;
  action: string;
  resource: string;
  outcome: string;
  traceId: string;
  idempotencyKey: string | null;
  requestDigest: string | null;
  detail: unknown;
}

/** The leaf format version inside the data (`"v":1`). */
export const LEAF_FORMAT_VERSION = 1;

/** The columns of kernel_audit_event (alias `e`) an entry is read from: one definition for every reader. */
export const ENTRY_COLUMNS = `e.tenant_id, kernel_audit_time_text(e.event_time) AS event_time, e.principal, e.action, e.resource, e.outcome,
  e.trace_id, e.idempotency_key, e.request_digest, e.detail`;

export interface EntryRow {
  tenant_id: string;
  event_time: string;
  principal: string;
  action: string;
  resource: string;
  outcome: string;
  trace_id: string;
  idempotency_key: string | null;
  request_digest: string | null;
  detail: unknown;
}

export function entryFromRow(row: EntryRow): LogEntry {
  return {
    tenant: row.tenant_id,
    time: row.event_time,
    principal: row.principal,
    action: row.action,
    resource: row.resource,
    outcome: row.outcome,
    traceId: row.trace_id,
    idempotencyKey: row.idempotency_key,
    requestDigest: row.request_digest,
    detail: row.detail ?? {},
  };
}

/** The canonical JSON text an entry's leaf hashes. */
export function leafText(entry: LogEntry): string {
  return canonicalJson({
    v: LEAF_FORMAT_VERSION,
    tenant: entry.tenant,
    time: entry.time,
    principal: entry.principal,
    action: entry.action,
    resource: entry.resource,
    outcome: entry.outcome,
    trace_id: entry.traceId,
    idempotency_key: entry.idempotencyKey,
    request_digest: entry.requestDigest,
    detail: entry.detail,
  });
}

export const leafData = (entry: LogEntry): Buffer => Buffer.from(leafText(entry), 'utf8');

/** Reads leaf data back into an entry (the offline verifier); throws on anything else. */
export function entryFromLeafText(text: string): LogEntry {
  const value = JSON.parse(text) as Record<string, unknown>;
  const str = (k: string) => {
    if (typeof value[k] !== 'string') throw new Error(`leaf data: "${k}" must be a string`);
    return value[k] as string;
  };
  const optional = (k: string) => (value[k] === null ? null : str(k));
  if (value === null || typeof value !== 'object' || value.v !== LEAF_FORMAT_VERSION) throw new Error(`leaf data: unknown format (v must be ${LEAF_FORMAT_VERSION})`);
  const entry: LogEntry = {
    tenant: str('tenant'),
    time: str('time'),
    principal: str('principal'),
    action: str('action'),
    resource: str('resource'),
    outcome: str('outcome'),
    traceId: str('trace_id'),
    idempotencyKey: optional('idempotency_key'),
    requestDigest: optional('request_digest'),
    detail: value.detail,
  };
  if (leafText(entry) !== text) throw new Error('leaf data is not in canonical form');
  return entry;
}

/** Canonical JSON: object keys sorted (UTF-16 code units), no whitespace, ECMAScript number and string forms. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error('canonical JSON has no form for non-finite numbers');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item)).join(',')}]`;
  if (typeof value === 'object') {
    // Array.prototype.sort without a comparator orders strings by UTF-16 code units.
    const record = value as Record<string, unknown>;
    let text = '';
    for (const key of Object.keys(record).sort()) {
      const item = record[key];
      if (item === undefined) continue;
      text += `${text === '' ? '' : ','}${JSON.stringify(key)}:${canonicalJson(item)}`;
    }
    return `{${text}}`;
  }
  throw new Error(`canonical JSON has no form for ${typeof value}`);
}
