import type { EnvelopeBinding } from './envelope';

/**
 * A table holding envelope-encrypted values: columns `ciphertext`, `wrapped_key` and
 * `kek_version` (all NULL once crypto-erased) and the key columns below. Master-key rotation
 * (rewrap.ts) walks every table listed here.
 */
export interface EnvelopeTable {
  readonly table: string;
  /** Primary-key columns (`tenant_id` first) and their SQL types, e.g. `{ tenant_id: 'text', version: 'integer' }`. */
  readonly keyColumns: Readonly<Record<string, string>>;
  /** The binding a row's value was sealed with, from its key columns. */
  binding(row: Record<string, unknown>): EnvelopeBinding;
  /** A kernel-wide table (no tenant_id, no application-role access): re-wrapped by the operator command only. */
  readonly system?: boolean;
}

/** Every envelope-encrypted table of the kernel. A capability that seals values adds its table here. */
export const ENVELOPE_TABLES: readonly EnvelopeTable[] = [
  {
    table: 'kernel_sealed_key',
    keyColumns: { name: 'text' },
    binding: (row) => ({ tenantId: '', purpose: 'kernel-key', resource: `kernel-keys/${String(row.name)}`, version: 1 }),
    system: true,
  },
  {
    table: 'keymaster_key_version',
    keyColumns: { tenant_id: 'text', alias: 'text', version: 'integer' },
    binding: (row) => ({ tenantId: String(row.tenant_id), purpose: 'signing-key', resource: `keys/${String(row.alias)}`, version: Number(row.version) }),
  },
  {
    table: 'secret_version',
    keyColumns: { tenant_id: 'text', secret_id: 'text', version: 'integer' },
    binding: (row) => ({ tenantId: String(row.tenant_id), purpose: 'secret', resource: `secrets/${String(row.secret_id)}`, version: Number(row.version) }),
  },
];
