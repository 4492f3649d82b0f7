import { z } from 'zod';
import {
  ExpiryReason,
  SecretKind,
  SecretLabel,
  SecretVersionState,
  type ExpiringSecret,
  type Secret,
  type SecretVersion,
} from '../../gen/proto/axis/kernel/secrets/v1/secret';
import type { SecretServiceImplementation } from '../../gen/proto/axis/kernel/secrets/v1/secret_service';
import type { KernelCallContext } from '../platform/call-context';
import { coldRead } from '../platform/cold-read';
import type { PrismaTenantReads } from '../platform/database/prisma-tenant-client';
import type { Envelope } from '../platform/crypto/envelope';
import { paginate } from '../platform/page-token';
import { protoEnum } from '../platform/proto-enum';
import { parseRequest } from '../platform/request-validation';
import { listExpiring, type ExpiryReasonName } from './secret-expiry';
import { findSecret, insertSecret, listSecrets, listSecretsWithPrisma, secretResource, type SecretLabelName, type SecretRecord } from './secret-store';
import {
  accessVersion,
  addVersion,
  destroyVersion,
  disableVersion,
  listVersions,
  promoteVersion,
  versionResource,
  type VersionRecord,
  type VersionStateName,
} from './secret-versions';
import { checkValueSize, type SecretKindName } from './secret-value';

const HOUR = 3600;
const DAY = 24 * HOUR;
const YEAR = 365 * DAY;

const secretKinds = protoEnum<SecretKindName, SecretKind>({
  OPAQUE: SecretKind.SECRET_KIND_OPAQUE,
  CERTIFICATE: SecretKind.SECRET_KIND_CERTIFICATE,
  CREDENTIAL: SecretKind.SECRET_KIND_CREDENTIAL,
});
const secretLabels = protoEnum<SecretLabelName, SecretLabel>({
  CURRENT: SecretLabel.SECRET_LABEL_CURRENT,
  PREVIOUS: SecretLabel.SECRET_LABEL_PREVIOUS,
  PENDING: SecretLabel.SECRET_LABEL_PENDING,
});
const versionStates = protoEnum<VersionStateName, SecretVersionState>({
  ENABLED: SecretVersionState.SECRET_VERSION_STATE_ENABLED,
  DISABLED: SecretVersionState.SECRET_VERSION_STATE_DISABLED,
  DESTROYED: SecretVersionState.SECRET_VERSION_STATE_DESTROYED,
});
const expiryReasons = protoEnum<ExpiryReasonName, ExpiryReason>({
  CERTIFICATE_NOT_AFTER: ExpiryReason.EXPIRY_REASON_CERTIFICATE_NOT_AFTER,
  ROTATION_DUE: ExpiryReason.EXPIRY_REASON_ROTATION_DUE,
});

const secretId = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be 1–63 characters of [a-z0-9._-], starting with a letter or digit');
const versionNumber = z.number().int().min(1, 'must be ≥ 1').max(2_147_483_647, 'too large');
/** A Duration in whole seconds within [min, max]. */
const duration = (min: number, max: number, describe: string) =>
  z
    .object({ seconds: z.number(), nanos: z.number() })
    .transform((d) => d.seconds + d.nanos / 1e9)
    .pipe(z.number().min(min, describe).max(max, describe))
    .transform(Math.ceil);
const value = z.instanceof(Uint8Array).transform((bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
const expectedLatestVersion = z.number().int().min(0, 'must be ≥ 0').max(2_147_483_647, 'too large').optional();

const createSecretSchema = z.object({
  secret: z
    .object({
      secretId,
      kind: secretKinds.required(),
      description: z.string().max(500, 'at most 500 characters'),
      rotationPeriod: duration(HOUR, 10 * YEAR, 'must be 1 hour to 10 years').optional(),
      defaultGracePeriod: duration(0, 30 * DAY, 'must be 0 to 30 days').optional(),
    })
    .optional()
    .refine((s) => s !== undefined, 'required')
    .transform((s) => s!),
});
const secretRefSchema = z.object({ secretId });
const addSchema = z.object({ secretId, value, expectedLatestVersion });
const accessSchema = z.object({
  secretId,
  selector: z
    .discriminatedUnion('$case', [
      z.object({ $case: z.literal('version'), value: versionNumber }),
      z.object({ $case: z.literal('label'), value: secretLabels.required() }),
    ])
    .optional()
    .refine((s) => s !== undefined, { message: 'set version or label', params: { reason: 'VERSION_SELECTOR_REQUIRED' } }),
});
const versionRefSchema = z.object({ secretId, version: versionNumber });
const promoteSchema = versionRefSchema.extend({ gracePeriod: duration(0, 30 * DAY, 'must be 0 to 30 days').optional() });
const listVersionsSchema = z.object({ secretId, pageSize: z.number(), pageToken: z.string().max(1000) });
const listExpiringSchema = z.object({
  within: duration(0, 10 * YEAR, 'must be 0 to 10 years').optional().refine((w) => w !== undefined, 'required'),
  pageSize: z.number(),
  pageToken: z.string().max(1000),
});
/** Due times are timestamps of the protobuf range (0001-01-01..9999-12-31), in epoch microseconds. */
const MIN_DUE_MICROS = -62_135_596_800_000_000n;
const MAX_DUE_MICROS = 253_402_300_799_999_999n;
/**
 * A ListExpiring page token's position. dueMicros travels as a decimal string (a bigint column;
 * JSON numbers lose precision beyond 2^53) and must lie within the due times the kernel can
 * produce — so within int64 and the timestamp column too, never a value PostgreSQL refuses.
 */
const expiryCursorSchema = z.strictObject({
  dueMicros: z
    .string()
    .regex(/^(0|-?[1-9]\d{0,17})$/)
    .refine((micros) => BigInt(micros) >= MIN_DUE_MICROS && BigInt(micros) <= MAX_DUE_MICROS),
  secretId,
  reason: z.enum(['CERTIFICATE_NOT_AFTER', 'ROTATION_DUE']),
});

const durationOf = (seconds: number | undefined) => (seconds === undefined ? undefined : { seconds, nanos: 0 });

function secretMessage(s: SecretRecord): Secret {
  return {
    secretId: s.secretId,
    kind: secretKinds.toProto(s.kind),
    description: s.description,
    rotationPeriod: durationOf(s.rotationPeriodSeconds),
    defaultGracePeriod: durationOf(s.defaultGracePeriodSeconds),
    latestVersion: s.latestVersion,
    currentVersion: s.currentVersion,
    previousVersion: s.previousVersion,
    pendingVersion: s.pendingVersion,
    createTime: s.createTime,
    currentSinceTime: s.currentSinceTime,
    rotationDueTime: s.rotationDueTime,
  };
}

function versionMessage(v: VersionRecord): SecretVersion {
  return {
    secretId: v.secretId,
    version: v.version,
    state: versionStates.toProto(v.state),
    labels: v.labels.map(secretLabels.toProto),
    valueSizeBytes: v.valueSizeBytes,
    createTime: v.createTime,
    retireTime: v.retireTime,
    disableTime: v.disableTime,
    destroyTime: v.destroyTime,
    certificate: v.certificate && {
      subject: v.certificate.subject,
      issuer: v.certificate.issuer,
      serialNumber: v.certificate.serialNumber,
      sha256Fingerprint: v.certificate.fingerprint,
      notBeforeTime: v.certificate.notBefore,
      notAfterTime: v.certificate.notAfter,
    },
  };
}

/**
 * Secrets (docs/capabilities/secrets.md) over gRPC. Values cross this adapter in two places only: into `addVersion` (sealed
 * before anything is written) and out of AccessSecretVersion's response. Audit details name
 * versions and labels, never values; errors describe values, never quote them.
 */
export function secretService(envelope: Envelope, prismaReads?: PrismaTenantReads): SecretServiceImplementation<KernelCallContext> {
  return {
    async createSecret(request, ctx) {
      const s = parseRequest(createSecretSchema, request).secret;
      const created = await ctx.unitOfWork.run((tx) =>
        insertSecret(tx, {
          secretId: s.secretId,
          kind: s.kind,
          description: s.description,
          rotationPeriodSeconds: s.rotationPeriod,
          defaultGracePeriodSeconds: s.defaultGracePeriod ?? DAY,
        }),
      );
      ctx.unitOfWork.describeChange(secretResource(created.secretId), { kind: created.kind, rotation_period_seconds: created.rotationPeriodSeconds ?? null });
      return { secret: secretMessage(created) };
    },

    async getSecret(request, ctx) {
      const input = parseRequest(secretRefSchema, request);
      return { secret: secretMessage(await ctx.unitOfWork.run((tx) => findSecret(tx, input.secretId))) };
    },

    async listSecrets(request, ctx) {
      const { items, nextPageToken } = await paginate(ctx, request, {
        position: secretId,
        fetch: (after, limit) =>
          coldRead(ctx, prismaReads, {
            operation: 'SELECT secret',
            prisma: (tx) => listSecretsWithPrisma(tx, after ?? '', limit),
            pg: (tx) => listSecrets(tx, after ?? '', limit),
          }),
        positionOf: (secret) => secret.secretId,
      });
      return { secrets: items.map(secretMessage), nextPageToken };
    },

    async addSecretVersion(request, ctx) {
      const input = parseRequest(addSchema, request);
      // Size first, before the database: only the kind-specific check needs the secret.
      checkValueSize(input.value);
      const { version } = await ctx.unitOfWork.run((tx) =>
        addVersion(tx, envelope, { ...input, pending: false, traceId: ctx.trace.traceId }),
      );
      ctx.unitOfWork.describeChange(versionResource(version.secretId, version.version), { version: version.version, labels: version.labels });
      return { version: versionMessage(version) };
    },

    async startRotation(request, ctx) {
      const input = parseRequest(addSchema, request);
      // Size first, before the database: only the kind-specific check needs the secret.
      checkValueSize(input.value);
      const { version } = await ctx.unitOfWork.run((tx) =>
        addVersion(tx, envelope, { ...input, pending: true, traceId: ctx.trace.traceId }),
      );
      ctx.unitOfWork.describeChange(versionResource(version.secretId, version.version), { version: version.version, labels: version.labels });
      return { version: versionMessage(version) };
    },

    async accessSecretVersion(request, ctx) {
      const input = parseRequest(accessSchema, request);
      const selector = input.selector!;
      const { version, value } = await ctx.unitOfWork.run((tx) =>
        accessVersion(tx, envelope, input.secretId, selector, { traceId: ctx.trace.traceId, log: ctx.log }),
      );
      // The audit entry says which version was read and how it was asked for — never the value.
      ctx.unitOfWork.describeChange(versionResource(version.secretId, version.version), {
        version: version.version,
        requested_label: selector.$case === 'label' ? selector.value : null,
      });
      return { version: versionMessage(version), value };
    },

    async listSecretVersions(request, ctx) {
      const input = parseRequest(listVersionsSchema, request);
      // Newest first: the position is the last version listed, and the next page holds older ones.
      const { items, nextPageToken } = await paginate(ctx, request, {
        position: versionNumber,
        fetch: (before, limit) => ctx.unitOfWork.run((tx) => listVersions(tx, input.secretId, before, limit)),
        positionOf: (version) => version.version,
      });
      return { versions: items.map(versionMessage), nextPageToken };
    },

    async promoteVersion(request, ctx) {
      const input = parseRequest(promoteSchema, request);
      const secret = await ctx.unitOfWork.run((tx) => promoteVersion(tx, input.secretId, input.version, input.gracePeriod));
      ctx.unitOfWork.describeChange(versionResource(input.secretId, input.version), {
        version: input.version,
        previous_version: secret.previousVersion,
        grace_period_seconds: input.gracePeriod ?? secret.defaultGracePeriodSeconds,
      });
      return { secret: secretMessage(secret) };
    },

    async disableSecretVersion(request, ctx) {
      const input = parseRequest(versionRefSchema, request);
      const version = await ctx.unitOfWork.run((tx) => disableVersion(tx, input.secretId, input.version));
      ctx.unitOfWork.describeChange(versionResource(input.secretId, input.version), { version: input.version, state: version.state });
      return { version: versionMessage(version) };
    },

    async destroySecretVersion(request, ctx) {
      const input = parseRequest(versionRefSchema, request);
      const version = await ctx.unitOfWork.run((tx) => destroyVersion(tx, input.secretId, input.version));
      ctx.unitOfWork.describeChange(versionResource(input.secretId, input.version), { version: input.version, state: version.state });
      return { version: versionMessage(version) };
    },

    async listExpiring(request, ctx) {
      const input = parseRequest(listExpiringSchema, request);
      const { items, nextPageToken } = await paginate(ctx, request, {
        position: expiryCursorSchema,
        fetch: (after, limit) => ctx.unitOfWork.run((tx) => listExpiring(tx, input.within!, after, limit)),
        positionOf: (entry) => entry.cursor,
      });
      return {
        secrets: items.map(
          (e): ExpiringSecret => ({
            secretId: e.secretId,
            kind: secretKinds.toProto(e.kind),
            reason: expiryReasons.toProto(e.reason),
            version: e.version,
            dueTime: e.dueTime,
            overdue: e.overdue,
          }),
        ),
        nextPageToken,
      };
    },
  };
}
