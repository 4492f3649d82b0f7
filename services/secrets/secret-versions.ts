import type { TenantTransaction } from '../platform/database/database';
import type { AlarmContext, Envelope, EnvelopeBinding } from '../platform/crypto/envelope';
import { failedPrecondition, notFound } from '../platform/kernel-error';
import { findSecret, labelsOf, secretResource, updateLabels, type SecretLabelName, type SecretRecord } from './secret-store';
import { checkSecretValue, type CertificateFacts } from './secret-value';

export type VersionStateName = 'ENABLED' | 'DISABLED' | 'DESTROYED';

/** A version's metadata (never its value). */
export interface VersionRecord {
  secretId: string;
  version: number;
  state: VersionStateName;
  labels: SecretLabelName[];
  valueSizeBytes: number;
  createTime: Date;
  retireTime?: Date;
  disableTime?: Date;
  destroyTime?: Date;
  certificate?: CertificateFacts;
}

interface VersionRow {
  secret_id: string;
  version: number;
  state: VersionStateName;
  value_size_bytes: number;
  cert_subject: string | null;
  cert_issuer: string | null;
  cert_serial_number: string | null;
  cert_fingerprint: string | null;
  cert_not_before: Date | null;
  cert_not_after: Date | null;
  create_time: Date;
  retire_time: Date | null;
  disable_time: Date | null;
  destroy_time: Date | null;
  /** retire_time <= now(), by the database clock. */
  retired: boolean;
}

interface SealedRow extends VersionRow {
  ciphertext: Buffer | null;
  wrapped_key: Buffer | null;
  kek_version: number | null;
}

const VERSION_COLUMNS = `secret_id, version, state, value_size_bytes, cert_subject, cert_issuer, cert_serial_number, cert_fingerprint,
  cert_not_before, cert_not_after, create_time, retire_time, disable_time, destroy_time, coalesce(retire_time <= now(), false) AS retired`;

function toVersion(secret: SecretRecord, row: VersionRow): VersionRecord {
  return {
    secretId: row.secret_id,
    version: row.version,
    state: row.state,
    labels: row.state === 'ENABLED' ? labelsOf(secret, row.version) : [],
    valueSizeBytes: row.value_size_bytes,
    createTime: row.create_time,
    retireTime: row.retire_time ?? undefined,
    disableTime: row.disable_time ?? undefined,
    destroyTime: row.destroy_time ?? undefined,
    certificate:
      row.cert_not_after === null
        ? undefined
        : {
            subject: row.cert_subject ?? '',
            issuer: row.cert_issuer ?? '',
            serialNumber: row.cert_serial_number ?? '',
            fingerprint: row.cert_fingerprint ?? '',
            notBefore: row.cert_not_before!,
            notAfter: row.cert_not_after,
          },
  };
}

export const versionResource = (secretId: string, version: number) => `${secretResource(secretId)}/versions/${version}`;

/** What a version's ciphertext and wrapped data key are bound to (also in envelope-tables.ts). */
export const secretBinding = (tenantId: string, secretId: string, version: number): EnvelopeBinding => ({
  tenantId,
  purpose: 'secret',
  resource: secretResource(secretId),
  version,
});

const versionNotFound = (secretId: string, version: number) =>
  notFound('SECRET_VERSION_NOT_FOUND', `version ${version} of secret ${secretId} does not exist`, { resource: versionResource(secretId, version) });

async function lockVersion(tx: TenantTransaction, secret: SecretRecord, version: number): Promise<VersionRow> {
  const [row] = await tx.query<VersionRow>(
    `SELECT ${VERSION_COLUMNS} FROM secret_version WHERE tenant_id = $1 AND secret_id = $2 AND version = $3 FOR UPDATE`,
    [tx.tenantId, secret.secretId, version],
  );
  if (!row) throw versionNotFound(secret.secretId, version);
  return row;
}

export interface AddVersionRequest {
  secretId: string;
  value: Buffer;
  /** Compare-and-set on the secret's latest version number. */
  expectedLatestVersion?: number;
  /** StartRotation: the version becomes PENDING instead of CURRENT. */
  pending: boolean;
  traceId: string;
}

/**
 * Seals and stores a new version. AddSecretVersion makes it CURRENT at once (the outgoing
 * CURRENT becomes PREVIOUS for the secret's default grace period); StartRotation labels it
 * PENDING. The secret row's lock serialises concurrent adds, so compare-and-set is exact.
 */
export async function addVersion(tx: TenantTransaction, envelope: Envelope, request: AddVersionRequest): Promise<{ secret: SecretRecord; version: VersionRecord }> {
  const secret = await findSecret(tx, request.secretId, { forUpdate: true });
  const certificate = checkSecretValue(secret.kind, request.value);
  const resource = secretResource(secret.secretId);
  if (request.expectedLatestVersion !== undefined && request.expectedLatestVersion !== secret.latestVersion) {
    throw failedPrecondition(
      'CAS_VERSION_MISMATCH',
      `expected latest version ${request.expectedLatestVersion}, but the secret's latest version is ${secret.latestVersion}`,
      { resource, expected_latest_version: String(request.expectedLatestVersion), latest_version: String(secret.latestVersion) },
    );
  }
  if (secret.pendingVersion !== 0) {
    throw failedPrecondition('ROTATION_IN_PROGRESS', `version ${secret.pendingVersion} is PENDING: promote it, or disable it to cancel the rotation`, {
      resource,
      pending_version: String(secret.pendingVersion),
    });
  }
  const version = secret.latestVersion + 1;
  const sealed = envelope.seal(request.value, secretBinding(tx.tenantId, secret.secretId, version));
  const [row] = await tx.query<VersionRow>(
    `INSERT INTO secret_version (tenant_id, secret_id, version, state, ciphertext, wrapped_key, kek_version, value_size_bytes,
                                 cert_subject, cert_issuer, cert_serial_number, cert_fingerprint, cert_not_before, cert_not_after, trace_id)
     VALUES ($1, $2, $3, 'ENABLED', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
     RETURNING ${VERSION_COLUMNS}`,
    [
      tx.tenantId,
      secret.secretId,
      version,
      sealed.ciphertext,
      sealed.wrappedKey,
      sealed.kekVersion,
      request.value.length,
      certificate?.subject ?? null,
      certificate?.issuer ?? null,
      certificate?.serialNumber ?? null,
      certificate?.fingerprint ?? null,
      certificate?.notBefore ?? null,
      certificate?.notAfter ?? null,
      request.traceId,
    ],
  );
  if (request.pending) {
    const updated = await updateLabels(tx, secret, { latest: version, pending: version });
    return { secret: updated, version: toVersion(updated, row) };
  }
  const updated = await moveCurrent(tx, { ...secret, latestVersion: version }, version, secret.defaultGracePeriodSeconds);
  return { secret: updated, version: toVersion(updated, { ...row, retire_time: null, retired: false }) };
}

/**
 * Moves CURRENT to `target`: the outgoing CURRENT becomes PREVIOUS and is retired when the
 * grace period ends; the outgoing PREVIOUS is retired now (one overlap at a time); the target
 * is readable again even if it had been retired (a rollback).
 */
async function moveCurrent(tx: TenantTransaction, secret: SecretRecord, target: number, graceSeconds: number): Promise<SecretRecord> {
  const outgoing = secret.currentVersion;
  await tx.query(
    `UPDATE secret_version
        SET retire_time = CASE WHEN version = $3 THEN NULL
                               WHEN version = $4 THEN now() + make_interval(secs => $6::double precision)
                               ELSE least(coalesce(retire_time, now()), now()) END
      WHERE tenant_id = $1 AND secret_id = $2 AND version IN ($3, $4, $5)`,
    [tx.tenantId, secret.secretId, target, outgoing, secret.previousVersion, graceSeconds],
  );
  return updateLabels(tx, secret, {
    current: target,
    previous: outgoing === target ? secret.previousVersion : outgoing,
    pending: secret.pendingVersion === target ? 0 : secret.pendingVersion,
  });
}

/** PromoteVersion: makes an enabled, non-current version CURRENT. */
export async function promoteVersion(tx: TenantTransaction, secretId: string, version: number, graceSeconds: number | undefined): Promise<SecretRecord> {
  const secret = await findSecret(tx, secretId, { forUpdate: true });
  const row = await lockVersion(tx, secret, version);
  const resource = versionResource(secretId, version);
  if (row.state === 'DESTROYED') throw failedPrecondition('VERSION_DESTROYED', `version ${version} is destroyed`, { resource });
  if (row.state === 'DISABLED') throw failedPrecondition('VERSION_DISABLED', `version ${version} is disabled`, { resource });
  if (secret.currentVersion === version) throw failedPrecondition('VERSION_ALREADY_CURRENT', `version ${version} is already CURRENT`, { resource });
  return moveCurrent(tx, secret, version, graceSeconds ?? secret.defaultGracePeriodSeconds);
}

/** DisableSecretVersion: the value stays, every read is refused, PREVIOUS/PENDING labels go. */
export async function disableVersion(tx: TenantTransaction, secretId: string, version: number): Promise<VersionRecord> {
  const { secret, row } = await lockForRetirement(tx, secretId, version);
  if (row.state === 'DISABLED') throw failedPrecondition('VERSION_ALREADY_DISABLED', `version ${version} is already disabled`, { resource: versionResource(secretId, version) });
  const [updated] = await tx.query<VersionRow>(
    `UPDATE secret_version SET state = 'DISABLED', disable_time = now()
      WHERE tenant_id = $1 AND secret_id = $2 AND version = $3 RETURNING ${VERSION_COLUMNS}`,
    [tx.tenantId, secretId, version],
  );
  return toVersion(await dropLabels(tx, secret, version), updated);
}

/** DestroySecretVersion: crypto-erase (ciphertext, wrapped data key and KEK version removed); metadata stays. */
export async function destroyVersion(tx: TenantTransaction, secretId: string, version: number): Promise<VersionRecord> {
  const { secret } = await lockForRetirement(tx, secretId, version);
  const [updated] = await tx.query<VersionRow>(
    `UPDATE secret_version SET state = 'DESTROYED', destroy_time = now(), ciphertext = NULL, wrapped_key = NULL, kek_version = NULL
      WHERE tenant_id = $1 AND secret_id = $2 AND version = $3 RETURNING ${VERSION_COLUMNS}`,
    [tx.tenantId, secretId, version],
  );
  return toVersion(await dropLabels(tx, secret, version), updated);
}

async function lockForRetirement(tx: TenantTransaction, secretId: string, version: number): Promise<{ secret: SecretRecord; row: VersionRow }> {
  const secret = await findSecret(tx, secretId, { forUpdate: true });
  const row = await lockVersion(tx, secret, version);
  const resource = versionResource(secretId, version);
  if (row.state === 'DESTROYED') throw failedPrecondition('VERSION_DESTROYED', `version ${version} is already destroyed`, { resource });
  if (secret.currentVersion === version) {
    throw failedPrecondition('VERSION_IS_CURRENT', `version ${version} is CURRENT: promote another version first`, { resource });
  }
  return { secret, row };
}

function dropLabels(tx: TenantTransaction, secret: SecretRecord, version: number): Promise<SecretRecord> {
  if (secret.previousVersion !== version && secret.pendingVersion !== version) return Promise.resolve(secret);
  return updateLabels(tx, secret, {
    previous: secret.previousVersion === version ? 0 : secret.previousVersion,
    pending: secret.pendingVersion === version ? 0 : secret.pendingVersion,
  });
}

export type VersionSelector = { $case: 'version'; value: number } | { $case: 'label'; value: SecretLabelName };

/**
 * AccessSecretVersion: resolves the selector, refuses versions that may not be read, and opens
 * the envelope. Ciphertext that does not belong to this row answers DATA_LOSS (the envelope
 * logs the alarm with the trace id).
 */
export async function accessVersion(
  tx: TenantTransaction,
  envelope: Envelope,
  secretId: string,
  selector: VersionSelector,
  alarm: AlarmContext,
): Promise<{ version: VersionRecord; value: Buffer }> {
  const secret = await findSecret(tx, secretId);
  let version: number;
  if (selector.$case === 'label') {
    const label = selector.value;
    version = { CURRENT: secret.currentVersion, PREVIOUS: secret.previousVersion, PENDING: secret.pendingVersion }[label];
    if (version === 0) {
      throw notFound('LABEL_NOT_ASSIGNED', `no version of secret ${secretId} holds the label ${label}`, { resource: secretResource(secretId), label });
    }
  } else {
    version = selector.value;
  }
  const [row] = await tx.query<SealedRow>(
    `SELECT ${VERSION_COLUMNS}, ciphertext, wrapped_key, kek_version FROM secret_version
      WHERE tenant_id = $1 AND secret_id = $2 AND version = $3`,
    [tx.tenantId, secretId, version],
  );
  if (!row) throw versionNotFound(secretId, version);
  const resource = versionResource(secretId, version);
  if (row.state === 'DESTROYED') throw failedPrecondition('VERSION_DESTROYED', `version ${version} is destroyed`, { resource });
  if (row.state === 'DISABLED') throw failedPrecondition('VERSION_DISABLED', `version ${version} is disabled`, { resource });
  if (row.retired) {
    throw failedPrecondition('GRACE_PERIOD_EXPIRED', `version ${version} was retired at ${row.retire_time!.toISOString()}`, {
      resource,
      retire_time: row.retire_time!.toISOString(),
    });
  }
  const value = envelope.open(
    { ciphertext: row.ciphertext!, wrappedKey: row.wrapped_key!, kekVersion: row.kek_version! },
    secretBinding(tx.tenantId, secretId, version),
    alarm,
  );
  return { version: toVersion(secret, row), value };
}

export async function listVersions(tx: TenantTransaction, secretId: string, before: number | undefined, limit: number): Promise<VersionRecord[]> {
  const secret = await findSecret(tx, secretId);
  const rows = await tx.query<VersionRow>(
    `SELECT ${VERSION_COLUMNS} FROM secret_version
      WHERE tenant_id = $1 AND secret_id = $2 AND ($3::integer IS NULL OR version < $3)
      ORDER BY version DESC LIMIT $4`,
    [tx.tenantId, secretId, before ?? null, limit],
  );
  return rows.map((row) => toVersion(secret, row));
}
