import { createHash, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { Algorithm, KeyVersionState, type Key } from '../../gen/proto/axis/kernel/keymaster/v1/key';
import type { KeymasterServiceImplementation } from '../../gen/proto/axis/kernel/keymaster/v1/keymaster_service';
import type { KernelCallContext } from '../platform/call-context';
import type { Envelope } from '../platform/crypto/envelope';
import { ENVELOPE_TABLES } from '../platform/crypto/envelope-tables';
import { countStaleDataKeys, rewrapTableBatch } from '../platform/crypto/rewrap';
import type { TenantTransaction } from '../platform/database/database';
import { Status } from 'nice-grpc-common';
import { failedPrecondition, invalidArgument, KernelError } from '../platform/kernel-error';
import type { Logger } from '../platform/observability/logger';
import type { Metrics } from '../platform/observability/metrics';
import { paginate } from '../platform/page-token';
import { protoEnum } from '../platform/proto-enum';
import { parseRequest } from '../platform/request-validation';
import { KeyObjectCache } from './key-cache';
import {
  addVersion,
  findKey,
  insertKey,
  keyResource,
  listKeys,
  MAX_VERSIONS,
  RESERVED_ALIAS_PREFIX,
  requireEnabled,
  setVersionState,
  SIGNING_MATERIAL,
  signingKeyBinding,
  updatePolicy,
  versionOf,
  versionResource,
  type KeyRecord,
  type KeyVersionStateName,
  type SigningMaterial,
} from './key-store';
import {
  DIGEST_BYTES,
  generateSigningKeyPair,
  privateKeyFromDer,
  publicKeyFromDer,
  publicKeyJwk,
  publicKeyPem,
  signWith,
  supportsDigest,
  verifyWith,
  type AlgorithmName,
  type SigningInput,
} from './signing-algorithms';

/** Channel on which nodes tell each other to drop a cached private key (payload: JSON [tenant, alias, version]). */
export const KEY_CACHE_CHANNEL = 'kernel_keymaster_cache';

const MAX_MESSAGE_BYTES = 64 * 1024;
const MAX_SIGNATURE_BYTES = 1024;
const DEFAULT_RESTORE_WINDOW_SECONDS = 24 * 3600;
const MAX_RESTORE_WINDOW_SECONDS = 90 * 24 * 3600;

const algorithms = protoEnum<AlgorithmName, Algorithm>({
  ED25519: Algorithm.ALGORITHM_ED25519,
  ECDSA_P256_SHA256: Algorithm.ALGORITHM_ECDSA_P256_SHA256,
  RSA_PSS_3072_SHA256: Algorithm.ALGORITHM_RSA_PSS_3072_SHA256,
});
const versionStates = protoEnum<KeyVersionStateName, KeyVersionState>({
  ENABLED: KeyVersionState.KEY_VERSION_STATE_ENABLED,
  DISABLED: KeyVersionState.KEY_VERSION_STATE_DISABLED,
  DESTRUCTION_SCHEDULED: KeyVersionState.KEY_VERSION_STATE_DESTRUCTION_SCHEDULED,
  DESTROYED: KeyVersionState.KEY_VERSION_STATE_DESTROYED,
});

/** The API's key_id; the database keeps it in the column `alias` (key-store.ts). */
const keyId = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be 1–63 characters of [a-z0-9._-], starting with a letter or digit');
const version = z.number().int().min(0, 'must be ≥ 0').max(MAX_VERSIONS, `must be ≤ ${MAX_VERSIONS}`);
const explicitVersion = z.number().int().min(1, 'must be ≥ 1').max(MAX_VERSIONS, `must be ≤ ${MAX_VERSIONS}`);
const signingInput = z
  .union([z.object({ $case: z.literal('message'), value: z.instanceof(Buffer) }), z.object({ $case: z.literal('digest'), value: z.instanceof(Buffer) })])
  .optional()
  .superRefine((input, ctx) => {
    if (!input) ctx.addIssue({ code: 'custom', message: 'message or digest is required', params: { reason: 'INPUT_MISSING' } });
    else if (input.$case === 'message' && input.value.length > MAX_MESSAGE_BYTES) {
      ctx.addIssue({ code: 'custom', path: ['message'], message: `at most ${MAX_MESSAGE_BYTES} bytes; sign its SHA-256 digest instead`, params: { reason: 'MESSAGE_TOO_LARGE' } });
    } else if (input.$case === 'digest' && input.value.length !== DIGEST_BYTES) {
      ctx.addIssue({ code: 'custom', path: ['digest'], message: `a SHA-256 digest is ${DIGEST_BYTES} bytes`, params: { reason: 'DIGEST_LENGTH_INVALID' } });
    }
  })
  .transform((input): SigningInput => ({ kind: input!.$case, bytes: input!.value }));

/** CreateKey: key_id and algorithm are settable; the key's other fields are output only and ignored. */
const createKeySchema = z.object({
  key: z
    .object({ keyId, algorithm: algorithms.required() })
    .optional()
    .refine((k) => k !== undefined, 'required')
    .transform((k) => k!),
});
const keyRefSchema = z.object({ keyId });
const versionSchema = z.object({ keyId, version });
const explicitVersionSchema = z.object({ keyId, version: explicitVersion });
const signSchema = z.object({ keyId, version, input: signingInput });
const verifySchema = signSchema.extend({
  signature: z.instanceof(Buffer).refine((s) => s.length <= MAX_SIGNATURE_BYTES, { message: `at most ${MAX_SIGNATURE_BYTES} bytes`, params: { reason: 'SIGNATURE_TOO_LARGE' } }),
});
const policySchema = z.object({ keyId, minSignVersion: explicitVersion, minVerifyVersion: explicitVersion });
const rewrapSchema = z.object({ limit: z.number().int().min(0).max(10_000, 'must be ≤ 10000') });

export interface KeymasterOptions {
  envelope: Envelope;
  log: Logger;
  metrics: Metrics;
  privateKeys: KeyObjectCache;
  /** Shortest restore window a scheduled destruction may have. */
  minRestoreWindowSeconds: number;
}

function keyMessage(key: KeyRecord): Key {
  return {
    keyId: key.alias,
    algorithm: algorithms.toProto(key.algorithm),
    primaryVersion: key.primaryVersion,
    minSignVersion: key.minSignVersion,
    minVerifyVersion: key.minVerifyVersion,
    versions: key.versions.map((v) => ({
      version: v.version,
      state: versionStates.toProto(v.state),
      createTime: v.createTime,
      destroyTime: v.destroyTime ?? undefined,
    })),
    createTime: key.createTime,
    updateTime: key.updateTime,
  };
}

/**
 * Keymaster (docs/capabilities/keymaster.md) over gRPC. Private keys are generated here, sealed with the envelope at once and only
 * ever decrypted into this node's memory for signing (cached, see KeyObjectCache). Whether a
 * version may sign or verify is read from the database in the call's own transaction, so a
 * disabled or destroyed version is refused on every node from the moment its change commits.
 */
export function keymasterService(options: KeymasterOptions): KeymasterServiceImplementation<KernelCallContext> {
  const { envelope, privateKeys } = options;
  const publicKeys = new KeyObjectCache(10_000, 3600_000); // public keys never change

  const privateKeyFor = (ctx: KernelCallContext, keyAlias: string, material: SigningMaterial): KeyObject => {
    const id = KeyObjectCache.id(ctx.tenantId, keyAlias, material.version);
    const cached = privateKeys.get(id);
    if (cached) return cached;
    const der = envelope.open(material.sealed!, signingKeyBinding(ctx.tenantId, keyAlias, material.version), { traceId: ctx.trace.traceId, log: ctx.log });
    options.metrics.increment('keymaster_private_key_decryptions_total');
    try {
      const key = privateKeyFromDer(der);
      privateKeys.set(id, key);
      return key;
    } finally {
      der.fill(0);
    }
  };

  const publicKeyFor = (tenantId: string, keyAlias: string, keyVersion: number, der: Buffer): KeyObject => {
    const id = KeyObjectCache.id(tenantId, keyAlias, keyVersion);
    const cached = publicKeys.get(id);
    if (cached) return cached;
    const key = publicKeyFromDer(der);
    publicKeys.set(id, key);
    return key;
  };

  /** Drops a version's private key on this node at commit and, through NOTIFY, on every other node. */
  const forgetPrivateKey = async (tx: TenantTransaction, keyAlias: string, keyVersion: number) => {
    await tx.query('SELECT pg_notify($1, $2)', [KEY_CACHE_CHANNEL, JSON.stringify([tx.tenantId, keyAlias, keyVersion])]);
    tx.onCommit(() => {
      privateKeys.drop(KeyObjectCache.id(tx.tenantId, keyAlias, keyVersion));
      options.metrics.increment('keymaster_private_key_cache_drops_total', { source: 'local' });
    });
  };

  const newSealedPair = async (tenantId: string, keyAlias: string, algorithm: AlgorithmName, keyVersion: number) => {
    const pair = await generateSigningKeyPair(algorithm);
    try {
      return { publicKey: pair.publicKeyDer, sealed: envelope.seal(pair.privateKeyDer, signingKeyBinding(tenantId, keyAlias, keyVersion)) };
    } finally {
      pair.privateKeyDer.fill(0);
    }
  };

  /** Locks the key, checks the version transition, applies it, answers with the key. */
  const changeVersion = async (
    ctx: KernelCallContext,
    request: { keyId: string; version: number },
    decide: (key: KeyRecord, current: KeyVersionStateName, restoreState: 'ENABLED' | 'DISABLED' | null) => Parameters<typeof setVersionState>[3],
    detail: (key: KeyRecord) => Record<string, unknown>,
  ) => {
    const input = parseRequest(explicitVersionSchema, request);
    const key = await ctx.unitOfWork.run(async (tx) => {
      const locked = await findKey(tx, input.keyId, { forUpdate: true });
      const target = versionOf(locked, input.version);
      const change = decide(locked, target.state, target.restoreState);
      await setVersionState(tx, input.keyId, input.version, change);
      if (change.state !== 'ENABLED') await forgetPrivateKey(tx, input.keyId, input.version);
      return findKey(tx, input.keyId);
    });
    ctx.unitOfWork.describeChange(versionResource(input.keyId, input.version), detail(key));
    return { key: keyMessage(key) };
  };

  const refuseIfPrimary = (key: KeyRecord, v: number) => {
    if (key.primaryVersion === v) {
      throw failedPrecondition('KEY_VERSION_IS_PRIMARY', `version ${v} is the primary version of "${key.alias}"; rotate first`, { resource: versionResource(key.alias, v) });
    }
  };
  const refuseIfGone = (key: KeyRecord, v: number, state: KeyVersionStateName) => {
    if (state === 'DESTROYED') throw failedPrecondition('KEY_VERSION_DESTROYED', `version ${v} of "${key.alias}" is destroyed`, { resource: versionResource(key.alias, v) });
  };

  return {
    async createKey(request, ctx) {
      const { key: input } = parseRequest(createKeySchema, request);
      if (input.keyId.startsWith(RESERVED_ALIAS_PREFIX)) {
        throw invalidArgument('KEY_ID_RESERVED', `key ids under "${RESERVED_ALIAS_PREFIX}" belong to the kernel`, [
          { field: 'key.key_id', description: `must not start with "${RESERVED_ALIAS_PREFIX}"` },
        ]);
      }
      const algorithm = input.algorithm;
      const pair = await newSealedPair(ctx.tenantId, input.keyId, algorithm, 1);
      const key = await ctx.unitOfWork.run(async (tx) => {
        await insertKey(tx, input.keyId, algorithm, pair.publicKey, pair.sealed);
        return findKey(tx, input.keyId);
      });
      ctx.unitOfWork.describeChange(keyResource(key.alias), { algorithm, version: 1 });
      return { key: keyMessage(key) };
    },

    async getKey(request, ctx) {
      const input = parseRequest(keyRefSchema, request);
      return { key: keyMessage(await ctx.unitOfWork.run((tx) => findKey(tx, input.keyId))) };
    },

    async listKeys(request, ctx) {
      const { items, nextPageToken } = await paginate(ctx, request, {
        position: keyId,
        fetch: (after, limit) => ctx.unitOfWork.run((tx) => listKeys(tx, after ?? '', limit)),
        positionOf: (key) => key.alias,
      });
      return { keys: items.map(keyMessage), nextPageToken };
    },

    async getPublicKey(request, ctx) {
      const input = parseRequest(versionSchema, request);
      const key = await ctx.unitOfWork.run((tx) => findKey(tx, input.keyId));
      const v = versionOf(key, input.version);
      refuseIfGone(key, v.version, v.state);
      return {
        publicKey: {
          keyId: key.alias,
          version: v.version,
          algorithm: algorithms.toProto(key.algorithm),
          pem: publicKeyPem(v.publicKey),
          jwk: publicKeyJwk(key.algorithm, v.publicKey, `${key.alias}/${v.version}`),
        },
      };
    },

    async sign(request, ctx) {
      const input = parseRequest(signSchema, request);
      // The kernel's own keys (the audit log's checkpoint key) sign only what the kernel signs:
      // a tenant signing arbitrary bytes with it could forge checkpoints.
      if (input.keyId.startsWith(RESERVED_ALIAS_PREFIX)) {
        throw new KernelError(Status.PERMISSION_DENIED, 'KEY_RESERVED', `keys under "${RESERVED_ALIAS_PREFIX}" sign for the kernel only`, { metadata: { resource: keyResource(input.keyId) } });
      }
      const result = await ctx.unitOfWork.run(async (tx) => {
        const material = await tx.batch(SIGNING_MATERIAL, { alias: input.keyId, version: input.version });
        if (input.input.kind === 'digest' && !supportsDigest(material.algorithm)) {
          throw invalidArgument('DIGEST_UNSUPPORTED', `${material.algorithm} signs messages only`, [{ field: 'digest', description: 'send the message instead' }]);
        }
        requireEnabled(input.keyId, material.version, material.state);
        if (material.version < material.minSignVersion) {
          throw failedPrecondition('BELOW_MIN_SIGN_VERSION', `version ${material.version} is below the minimum sign version ${material.minSignVersion}`, {
            resource: versionResource(input.keyId, material.version),
          });
        }
        return { material, signature: signWith(material.algorithm, privateKeyFor(ctx, input.keyId, material), input.input) };
      });
      ctx.unitOfWork.describeChange(versionResource(input.keyId, result.material.version), {
        algorithm: result.material.algorithm,
        input: input.input.kind,
        input_sha256: createHash('sha256').update(input.input.bytes).digest('hex'),
      });
      return {
        signature: {
          keyId: input.keyId,
          version: result.material.version,
          algorithm: algorithms.toProto(result.material.algorithm),
          value: result.signature,
        },
      };
    },

    async verify(request, ctx) {
      const input = parseRequest(verifySchema, request);
      const key = await ctx.unitOfWork.run((tx) => findKey(tx, input.keyId));
      const v = versionOf(key, input.version);
      if (input.input.kind === 'digest' && !supportsDigest(key.algorithm)) {
        throw invalidArgument('DIGEST_UNSUPPORTED', `${key.algorithm} verifies messages only`, [{ field: 'digest', description: 'send the message instead' }]);
      }
      const refusal =
        v.state !== 'ENABLED' ? `KEY_VERSION_${v.state}` : v.version < key.minVerifyVersion ? 'BELOW_MIN_VERIFY_VERSION' : '';
      if (refusal) return { valid: false, version: v.version, refusal };
      const valid = verifyWith(key.algorithm, publicKeyFor(ctx.tenantId, key.alias, v.version, v.publicKey), input.input, input.signature);
      return { valid, version: v.version, refusal: '' };
    },

    async rotateKey(request, ctx) {
      const input = parseRequest(keyRefSchema, request);
      const key = await ctx.unitOfWork.run(async (tx) => {
        const locked = await findKey(tx, input.keyId, { forUpdate: true });
        const next = Math.max(...locked.versions.map((v) => v.version)) + 1;
        if (next > MAX_VERSIONS) throw failedPrecondition('TOO_MANY_VERSIONS', `a key has at most ${MAX_VERSIONS} versions`, { resource: keyResource(input.keyId) });
        const pair = await newSealedPair(tx.tenantId, input.keyId, locked.algorithm, next);
        await addVersion(tx, locked, next, pair.publicKey, pair.sealed);
        return findKey(tx, input.keyId);
      });
      ctx.unitOfWork.describeChange(keyResource(key.alias), { primary_version: key.primaryVersion });
      return { key: keyMessage(key) };
    },

    async updateKeyPolicy(request, ctx) {
      const input = parseRequest(policySchema, request);
      const key = await ctx.unitOfWork.run(async (tx) => {
        const locked = await findKey(tx, input.keyId, { forUpdate: true });
        if (input.minSignVersion > locked.primaryVersion || input.minVerifyVersion > input.minSignVersion) {
          throw invalidArgument('POLICY_INVALID', 'need min_verify_version ≤ min_sign_version ≤ primary version', [
            { field: 'min_sign_version', description: `at most the primary version ${locked.primaryVersion}` },
            { field: 'min_verify_version', description: 'at most min_sign_version' },
          ]);
        }
        await updatePolicy(tx, input.keyId, input.minSignVersion, input.minVerifyVersion);
        return findKey(tx, input.keyId);
      });
      ctx.unitOfWork.describeChange(keyResource(key.alias), { min_sign_version: key.minSignVersion, min_verify_version: key.minVerifyVersion });
      return { key: keyMessage(key) };
    },

    disableKeyVersion: (request, ctx) =>
      changeVersion(
        ctx,
        request,
        (key, state) => {
          refuseIfPrimary(key, request.version);
          if (state !== 'ENABLED') throw failedPrecondition('KEY_VERSION_NOT_ENABLED', `version ${request.version} is ${state}`, { resource: versionResource(key.alias, request.version) });
          return { state: 'DISABLED' };
        },
        () => ({ state: 'DISABLED' }),
      ),

    enableKeyVersion: (request, ctx) =>
      changeVersion(
        ctx,
        request,
        (key, state) => {
          if (state !== 'DISABLED') throw failedPrecondition('KEY_VERSION_NOT_DISABLED', `version ${request.version} is ${state}`, { resource: versionResource(key.alias, request.version) });
          return { state: 'ENABLED' };
        },
        () => ({ state: 'ENABLED' }),
      ),

    scheduleKeyVersionDestruction(request, ctx) {
      const window = request.restoreWindow;
      const seconds = window ? window.seconds + window.nanos / 1e9 : DEFAULT_RESTORE_WINDOW_SECONDS;
      if (!(seconds >= options.minRestoreWindowSeconds && seconds <= MAX_RESTORE_WINDOW_SECONDS)) {
        throw invalidArgument('RESTORE_WINDOW_INVALID', `restore_window must be ${options.minRestoreWindowSeconds} s to 90 days`, [
          { field: 'restore_window', description: `${options.minRestoreWindowSeconds} s to 90 days` },
        ]);
      }
      return changeVersion(
        ctx,
        request,
        (key, state) => {
          refuseIfPrimary(key, request.version);
          refuseIfGone(key, request.version, state);
          if (state === 'DESTRUCTION_SCHEDULED') {
            throw failedPrecondition('KEY_VERSION_DESTRUCTION_SCHEDULED', `version ${request.version} is already scheduled for destruction`, {
              resource: versionResource(key.alias, request.version),
            });
          }
          return { state: 'DESTRUCTION_SCHEDULED', restoreState: state as 'ENABLED' | 'DISABLED', destroyAfterSeconds: seconds };
        },
        (key) => ({ state: 'DESTRUCTION_SCHEDULED', destroy_time: versionOf(key, request.version).destroyTime?.toISOString() }),
      );
    },

    restoreKeyVersion: (request, ctx) =>
      changeVersion(
        ctx,
        request,
        (key, state, restoreState) => {
          refuseIfGone(key, request.version, state);
          if (state !== 'DESTRUCTION_SCHEDULED' || !restoreState) {
            throw failedPrecondition('KEY_VERSION_NOT_SCHEDULED', `version ${request.version} is not scheduled for destruction`, { resource: versionResource(key.alias, request.version) });
          }
          return { state: restoreState };
        },
        (key) => ({ state: versionOf(key, request.version).state }),
      ),

    async rewrapDataKeys(request, ctx) {
      const input = parseRequest(rewrapSchema, request);
      const limit = input.limit || 1000;
      const result = await ctx.unitOfWork.run(async (tx) => {
        let rewrapped = 0;
        for (const table of ENVELOPE_TABLES) {
          if (table.system) continue; // kernel-wide keys: `kernel keys rewrap` (the owner) re-wraps those
          if (rewrapped >= limit) break;
          rewrapped += (await rewrapTableBatch(tx, table, envelope, ctx.log, limit - rewrapped)).rewrapped;
        }
        return { rewrapped, remaining: await countStaleDataKeys(tx, envelope, { tenantTables: true }) };
      });
      ctx.unitOfWork.describeChange('data-keys', { rewrapped: result.rewrapped, remaining: result.remaining, active_kek_version: envelope.activeKekVersion });
      return { ...result, activeKekVersion: envelope.activeKekVersion };
    },
  };
}
