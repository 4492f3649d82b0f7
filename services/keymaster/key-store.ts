import { Status } from 'nice-grpc-common';
import type { EnvelopeBinding, SealedValue } from '../platform/crypto/envelope';
import type { StatementBatcher, TenantTransaction } from '../platform/database/database';
import { failedPrecondition, KernelError, notFound } from '../platform/kernel-error';
import type { AlgorithmName } from './signing-algorithms';

export type KeyVersionStateName = 'ENABLED' | 'DISABLED' | 'DESTRUCTION_SCHEDULED' | 'DESTROYED';

export interface KeyVersionRecord {
  version: number;
  /** Effective state: a scheduled destruction whose time has come is DESTROYED already. */
  state: KeyVersionStateName;
  restoreState: 'ENABLED' | 'DISABLED' | null;
  publicKey: Buffer;
  createTime: Date;
  destroyTime: Date | null;
}

export interface KeyRecord {
  alias: string;
  algorithm: AlgorithmName;
  primaryVersion: number;
  minSignVersion: number;
  minVerifyVersion: number;
  createTime: Date;
  updateTime: Date;
  versions: KeyVersionRecord[];
}

/** Aliases under this prefix belong to the kernel (the audit log's key): clients may not create them or sign with them. */
export const RESERVED_ALIAS_PREFIX = 'kernel.';

/** At most this many versions per key (rotation beyond it is refused). */
export const MAX_VERSIONS = 1000;

export const keyResource = (alias: string) => `keys/${alias}`;

/** What a signing key's sealed private key is bound to (envelope associated data). */
export const signingKeyBinding = (tenantId: string, keyAlias: string, keyVersion: number): EnvelopeBinding => ({
  tenantId,
  purpose: 'signing-key',
  resource: keyResource(keyAlias),
  version: keyVersion,
});
export const versionResource = (alias: string, version: number) => `keys/${alias}/versions/${version}`;

const EFFECTIVE_STATE = `CASE WHEN v.state = 'DESTRUCTION_SCHEDULED' AND v.destroy_time <= now() THEN 'DESTROYED' ELSE v.state END`;

interface KeyRow {
  alias: string;
  algorithm: AlgorithmName;
  primary_version: number;
  min_sign_version: number;
  min_verify_version: number;
  create_time: Date;
  update_time: Date;
  versions: Array<{ version: number; state: KeyVersionStateName; restore_state: KeyVersionRecord['restoreState']; public_key: string; create_time: string; destroy_time: string | null }>;
}

const KEY_SELECT = `
  SELECT k.alias, k.algorithm, k.primary_version, k.min_sign_version, k.min_verify_version, k.create_time, k.update_time,
         (SELECT json_agg(json_build_object('version', v.version, 'state', ${EFFECTIVE_STATE}, 'restore_state', v.restore_state,
                  'public_key', encode(v.public_key, 'base64'), 'create_time', v.create_time, 'destroy_time', v.destroy_time) ORDER BY v.version)
            FROM keymaster_key_version v WHERE v.tenant_id = k.tenant_id AND v.alias = k.alias) AS versions
    FROM keymaster_key k`;

function keyRecord(row: KeyRow): KeyRecord {
  return {
    alias: row.alias,
    algorithm: row.algorithm,
    primaryVersion: row.primary_version,
    minSignVersion: row.min_sign_version,
    minVerifyVersion: row.min_verify_version,
    createTime: row.create_time,
    updateTime: row.update_time,
    versions: (row.versions ?? []).map((v) => ({
      version: v.version,
      state: v.state,
      restoreState: v.restore_state,
      publicKey: Buffer.from(v.public_key, 'base64'),
      createTime: new Date(v.create_time),
      destroyTime: v.destroy_time ? new Date(v.destroy_time) : null,
    })),
  };
}

export const keyNotFound = (alias: string) => notFound('KEY_NOT_FOUND', `no key "${alias}" in this tenant`, { resource: keyResource(alias) });
export const versionNotFound = (alias: string, version: number) =>
  notFound('KEY_VERSION_NOT_FOUND', `key "${alias}" has no version ${version}`, { resource: versionResource(alias, version) });

/**
 * Reads a key with every version (metadata and public keys). `forUpdate` locks the key row first,
 * in a statement of its own: a statement that waited for the lock keeps its old snapshot for
 * everything but the locked row itself (READ COMMITTED), so its version list would predate the
 * change of the transaction it waited for. The read after the lock sees that change.
 */
export async function findKey(tx: TenantTransaction, alias: string, options: { forUpdate?: boolean } = {}): Promise<KeyRecord> {
  if (options.forUpdate) {
    const locked = await tx.query('SELECT 1 FROM keymaster_key WHERE tenant_id = $1 AND alias = $2 FOR UPDATE', [tx.tenantId, alias]);
    if (locked.length === 0) throw keyNotFound(alias);
  }
  const [row] = await tx.query<KeyRow>(`${KEY_SELECT} WHERE k.tenant_id = $1 AND k.alias = $2`, [tx.tenantId, alias]);
  if (!row) throw keyNotFound(alias);
  return keyRecord(row);
}

export async function listKeys(tx: TenantTransaction, afterAlias: string, limit: number): Promise<KeyRecord[]> {
  const rows = await tx.query<KeyRow>(`${KEY_SELECT} WHERE k.tenant_id = $1 AND k.alias > $2 ORDER BY k.alias LIMIT $3`, [tx.tenantId, afterAlias, limit]);
  return rows.map(keyRecord);
}

export function versionOf(key: KeyRecord, version: number): KeyVersionRecord {
  const found = key.versions.find((v) => v.version === (version === 0 ? key.primaryVersion : version));
  if (!found) throw versionNotFound(key.alias, version);
  return found;
}

export async function insertKey(tx: TenantTransaction, alias: string, algorithm: AlgorithmName, publicKey: Buffer, sealed: SealedValue): Promise<void> {
  const [row] = await tx.query<{ created: boolean }>(
    `WITH key AS (
       INSERT INTO keymaster_key (tenant_id, alias, algorithm, primary_version) VALUES ($1, $2, $3, 1)
       ON CONFLICT (tenant_id, alias) DO NOTHING RETURNING alias
     )
     INSERT INTO keymaster_key_version (tenant_id, alias, version, state, public_key, ciphertext, wrapped_key, kek_version)
     SELECT $1, alias, 1, 'ENABLED', $4, $5, $6, $7 FROM key
     RETURNING true AS created`,
    [tx.tenantId, alias, algorithm, publicKey, sealed.ciphertext, sealed.wrappedKey, sealed.kekVersion],
  );
  if (!row) throw new KernelError(Status.ALREADY_EXISTS, 'KEY_EXISTS', `key "${alias}" exists already`, { metadata: { resource: keyResource(alias) } });
}

/** Adds the next version and makes it primary (the key row is locked by the caller's findKey). */
export async function addVersion(tx: TenantTransaction, key: KeyRecord, version: number, publicKey: Buffer, sealed: SealedValue): Promise<void> {
  await tx.query(
    `WITH v AS (
       INSERT INTO keymaster_key_version (tenant_id, alias, version, state, public_key, ciphertext, wrapped_key, kek_version)
       VALUES ($1, $2, $3, 'ENABLED', $4, $5, $6, $7)
     )
     UPDATE keymaster_key SET primary_version = $3, update_time = now() WHERE tenant_id = $1 AND alias = $2`,
    [tx.tenantId, key.alias, version, publicKey, sealed.ciphertext, sealed.wrappedKey, sealed.kekVersion],
  );
}

export async function updatePolicy(tx: TenantTransaction, alias: string, minSign: number, minVerify: number): Promise<void> {
  await tx.query(`UPDATE keymaster_key SET min_sign_version = $3, min_verify_version = $4, update_time = now() WHERE tenant_id = $1 AND alias = $2`, [
    tx.tenantId,
    alias,
    minSign,
    minVerify,
  ]);
}

/** Moves a version between states; the caller has checked the transition on the locked key. */
export async function setVersionState(
  tx: TenantTransaction,
  alias: string,
  version: number,
  change: { state: 'ENABLED' | 'DISABLED' } | { state: 'DESTRUCTION_SCHEDULED'; restoreState: 'ENABLED' | 'DISABLED'; destroyAfterSeconds: number },
): Promise<void> {
  const scheduled = change.state === 'DESTRUCTION_SCHEDULED';
  await tx.query(
    `WITH v AS (
       UPDATE keymaster_key_version
          SET state = $4, restore_state = $5, destroy_time = CASE WHEN $6::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $6::float8) END
        WHERE tenant_id = $1 AND alias = $2 AND version = $3
     )
     UPDATE keymaster_key SET update_time = now() WHERE tenant_id = $1 AND alias = $2`,
    [tx.tenantId, alias, version, change.state, scheduled ? change.restoreState : null, scheduled ? change.destroyAfterSeconds : null],
  );
}

/** What signing with one version needs, read in the signing transaction. */
export interface SigningMaterial {
  algorithm: AlgorithmName;
  version: number;
  state: KeyVersionStateName;
  minSignVersion: number;
  minVerifyVersion: number;
  publicKey: Buffer;
  sealed: SealedValue | null;
}

/** The signing material of a group's Sign asks: $1 tenant, $2 aliases, $3 versions (0: the primary). */
export const SIGNING_MATERIAL_LOOKUP = `SELECT k.alias IS NOT NULL AS key_found, k.algorithm, v.version, ${EFFECTIVE_STATE} AS state, k.min_sign_version, k.min_verify_version,
            v.public_key, v.ciphertext, v.wrapped_key, v.kek_version
       FROM unnest($2::text[], $3::int[]) WITH ORDINALITY AS a(alias, version, ord)
       -- One primary-key probe per ask (LATERAL … LIMIT 1 cannot be flattened into a join that
       -- reads every key or version of the tenant; see tests/platform/lookup-plans.spec.ts).
       LEFT JOIN LATERAL (
         SELECT * FROM keymaster_key kk WHERE kk.tenant_id = $1 AND kk.alias = a.alias LIMIT 1
       ) k ON true
       LEFT JOIN LATERAL (
         SELECT * FROM keymaster_key_version vv
          WHERE vv.tenant_id = $1 AND vv.alias = a.alias AND vv.version = CASE WHEN a.version = 0 THEN k.primary_version ELSE a.version END
          LIMIT 1
       ) v ON true
      ORDER BY a.ord`;

/**
 * Reads the signing material of many (alias, version) asks in one statement — the concurrent
 * Sign calls of one commit group share it. Version 0 means the key's primary version. Each ask
 * gets its material, or the NOT_FOUND error that names what is missing.
 */
export async function loadSigningMaterial(tx: TenantTransaction, asks: ReadonlyArray<{ alias: string; version: number }>): Promise<Array<SigningMaterial | KernelError>> {
  const rows = await tx.query<{
    key_found: boolean;
    algorithm: AlgorithmName;
    version: number | null;
    state: KeyVersionStateName | null;
    min_sign_version: number;
    min_verify_version: number;
    public_key: Buffer | null;
    ciphertext: Buffer | null;
    wrapped_key: Buffer | null;
    kek_version: number | null;
  }>(
    SIGNING_MATERIAL_LOOKUP,
    [tx.tenantId, asks.map((a) => a.alias), asks.map((a) => a.version)],
  );
  return rows.map((row, i) => {
    if (!row.key_found) return keyNotFound(asks[i].alias);
    if (row.version === null) return versionNotFound(asks[i].alias, asks[i].version);
    return {
      algorithm: row.algorithm,
      version: row.version,
      state: row.state!,
      minSignVersion: row.min_sign_version,
      minVerifyVersion: row.min_verify_version,
      publicKey: row.public_key!,
      sealed: row.ciphertext && row.wrapped_key && row.kek_version !== null ? { ciphertext: row.ciphertext, wrappedKey: row.wrapped_key, kekVersion: row.kek_version } : null,
    };
  });
}

/**
 * The signing-material reads of a commit group's Sign calls, in one statement. Reads only: a Sign
 * refused after it (a disabled version, say) is answered alone, its group is not re-run.
 */
export const SIGNING_MATERIAL: StatementBatcher<{ alias: string; version: number }, SigningMaterial> = {
  name: 'keymaster signing material',
  key: () => '',
  changesNothing: true,
  run: (tx, asks) => loadSigningMaterial(tx, asks),
};

/** Refuses use of a version that is not enabled, naming its state. */
export function requireEnabled(alias: string, version: number, state: KeyVersionStateName): void {
  if (state === 'ENABLED') return;
  throw failedPrecondition(`KEY_VERSION_${state === 'DISABLED' ? 'DISABLED' : state}`, `version ${version} of key "${alias}" is ${state.toLowerCase().replace('_', ' ')}`, {
    resource: versionResource(alias, version),
  });
}
