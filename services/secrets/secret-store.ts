import type { TenantTransaction } from '../platform/database/database';
import type { PrismaTenantTransaction } from '../platform/database/prisma-tenant-client';
import { sqlState } from '../platform/database/postgres-errors';
import { alreadyExists, notFound } from '../platform/kernel-error';
import type { SecretKindName } from './secret-value';

export type SecretLabelName = 'CURRENT' | 'PREVIOUS' | 'PENDING';

/** A secret as stored: policy and which versions hold the labels (0 = none). */
export interface SecretRecord {
  secretId: string;
  kind: SecretKindName;
  description: string;
  rotationPeriodSeconds?: number;
  defaultGracePeriodSeconds: number;
  latestVersion: number;
  currentVersion: number;
  previousVersion: number;
  pendingVersion: number;
  currentSinceTime?: Date;
  createTime: Date;
  /** When the CURRENT version's rotation period ends (from the first version's time, or creation). */
  rotationDueTime?: Date;
}

interface SecretRow {
  secret_id: string;
  kind: SecretKindName;
  description: string;
  rotation_period_seconds: string | null;
  default_grace_period_seconds: number;
  latest_version: number;
  current_version: number;
  previous_version: number;
  pending_version: number;
  current_since_time: Date | null;
  create_time: Date;
}

const SECRET_COLUMNS = `secret_id, kind, description, rotation_period_seconds, default_grace_period_seconds, latest_version,
  current_version, previous_version, pending_version, current_since_time, create_time`;

function toSecret(row: SecretRow): SecretRecord {
  const period = row.rotation_period_seconds === null ? undefined : Number(row.rotation_period_seconds);
  const since = row.current_since_time ?? row.create_time;
  return {
    secretId: row.secret_id,
    kind: row.kind,
    description: row.description,
    rotationPeriodSeconds: period,
    defaultGracePeriodSeconds: row.default_grace_period_seconds,
    latestVersion: row.latest_version,
    currentVersion: row.current_version,
    previousVersion: row.previous_version,
    pendingVersion: row.pending_version,
    currentSinceTime: row.current_since_time ?? undefined,
    createTime: row.create_time,
    rotationDueTime: period === undefined ? undefined : new Date(since.getTime() + period * 1000),
  };
}

export const secretResource = (secretId: string) => `secrets/${secretId}`;

export const secretNotFound = (secretId: string) =>
  notFound('SECRET_NOT_FOUND', `secret ${secretId} does not exist`, { resource: secretResource(secretId) });

/** The labels a version holds according to its secret. */
export function labelsOf(secret: SecretRecord, version: number): SecretLabelName[] {
  const labels: SecretLabelName[] = [];
  if (secret.currentVersion === version) labels.push('CURRENT');
  if (secret.previousVersion === version) labels.push('PREVIOUS');
  if (secret.pendingVersion === version) labels.push('PENDING');
  return labels;
}

export interface NewSecret {
  secretId: string;
  kind: SecretKindName;
  description: string;
  rotationPeriodSeconds?: number;
  defaultGracePeriodSeconds: number;
}

export async function insertSecret(tx: TenantTransaction, secret: NewSecret): Promise<SecretRecord> {
  try {
    const [row] = await tx.query<SecretRow>(
      `INSERT INTO secret (tenant_id, secret_id, kind, description, rotation_period_seconds, default_grace_period_seconds)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${SECRET_COLUMNS}`,
      [tx.tenantId, secret.secretId, secret.kind, secret.description, secret.rotationPeriodSeconds ?? null, secret.defaultGracePeriodSeconds],
    );
    return toSecret(row);
  } catch (error) {
    if (sqlState(error) === '23505') throw alreadyExists('SECRET_EXISTS', `secret ${secret.secretId} already exists`, { resource: secretResource(secret.secretId) });
    throw error;
  }
}

/** Reads a secret; `forUpdate` locks its row, which serialises every change to its versions and labels. */
export async function findSecret(tx: TenantTransaction, secretId: string, options: { forUpdate?: boolean } = {}): Promise<SecretRecord> {
  const [row] = await tx.query<SecretRow>(
    `SELECT ${SECRET_COLUMNS} FROM secret WHERE tenant_id = $1 AND secret_id = $2${options.forUpdate ? ' FOR UPDATE' : ''}`,
    [tx.tenantId, secretId],
  );
  if (!row) throw secretNotFound(secretId);
  return toSecret(row);
}

export async function listSecrets(tx: TenantTransaction, after: string, limit: number): Promise<SecretRecord[]> {
  const rows = await tx.query<SecretRow>(
    `SELECT ${SECRET_COLUMNS} FROM secret WHERE tenant_id = $1 AND secret_id > $2 ORDER BY secret_id LIMIT $3`,
    [tx.tenantId, after, limit],
  );
  return rows.map(toSecret);
}

/**
 * ListSecrets's page through Prisma Client (a cold read path, docs/prisma.md): the same rows in
 * the same order as {@link listSecrets}, mapped by the same function.
 */
export async function listSecretsWithPrisma(tx: PrismaTenantTransaction, after: string, limit: number): Promise<SecretRecord[]> {
  const rows = await tx.db.secret.findMany({ where: { tenantId: tx.tenantId, secretId: { gt: after } }, orderBy: { secretId: 'asc' }, take: limit });
  return rows.map((r) =>
    toSecret({
      secret_id: r.secretId,
      kind: r.kind as SecretKindName,
      description: r.description,
      rotation_period_seconds: r.rotationPeriodSeconds === null ? null : r.rotationPeriodSeconds.toString(),
      default_grace_period_seconds: r.defaultGracePeriodSeconds,
      latest_version: r.latestVersion,
      current_version: r.currentVersion,
      previous_version: r.previousVersion,
      pending_version: r.pendingVersion,
      current_since_time: r.currentSinceTime,
      create_time: r.createTime,
    }),
  );
}

/** Writes a secret's label pointers (and, when CURRENT moved, its current_since_time). */
export async function updateLabels(
  tx: TenantTransaction,
  secret: SecretRecord,
  labels: { latest?: number; current?: number; previous?: number; pending?: number },
): Promise<SecretRecord> {
  const [row] = await tx.query<SecretRow>(
    `UPDATE secret SET latest_version = $3, current_version = $4, previous_version = $5, pending_version = $6,
            current_since_time = CASE WHEN current_version <> $4 THEN now() ELSE current_since_time END
      WHERE tenant_id = $1 AND secret_id = $2 RETURNING ${SECRET_COLUMNS}`,
    [
      tx.tenantId,
      secret.secretId,
      labels.latest ?? secret.latestVersion,
      labels.current ?? secret.currentVersion,
      labels.previous ?? secret.previousVersion,
      labels.pending ?? secret.pendingVersion,
    ],
  );
  return toSecret(row);
}
