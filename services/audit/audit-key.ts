import { randomBytes, type KeyObject } from 'node:crypto';
import { SYSTEM_PRINCIPAL, type AuditLog } from '../platform/audit/audit-log';
import type { Envelope } from '../platform/crypto/envelope';
import type { TenantTransaction } from '../platform/database/database';
import { KernelError } from '../platform/kernel-error';
import type { Logger } from '../platform/observability/logger';
import type { Metrics } from '../platform/observability/metrics';
import { insertKey, loadSigningMaterial, RESERVED_ALIAS_PREFIX, type SigningMaterial } from '../keymaster/key-store';
import { signingKeyBinding } from '../keymaster/keymaster-service';
import { generateSigningKeyPair, privateKeyFromDer } from '../keymaster/signing-algorithms';
import { checkpointBody, ed25519RawPublicKey, logOrigin, signNote, verifierKey, type Checkpoint } from './signed-note';

/**
 * The tenant's audit key: an Ed25519 key held by the Keymaster (K-M4) under a reserved alias,
 * created on the tenant's first checkpoint. Tenants may rotate it (new checkpoints are signed
 * with the new primary version, older ones stay verifiable with the older public key); no
 * client may create a key under the reserved prefix or Sign with one (it could forge checkpoints).
 */
export const AUDIT_KEY_ALIAS = `${RESERVED_ALIAS_PREFIX}audit`;

export interface SignedCheckpoint {
  note: string;
  keyVersion: number;
  time: Date;
}

/** The verifier key (c2sp.org/signed-note form) of an audit key version's SPKI public key. */
export const auditVerifierKey = (tenantId: string, publicKeySpki: Buffer) => verifierKey(logOrigin(tenantId), ed25519RawPublicKey(publicKeySpki));

export class AuditSigner {
  /** Decrypted private keys by tenant/version (bounded; the material is re-read every batch, so state changes apply at once). */
  private readonly keys = new Map<string, KeyObject>();

  constructor(
    private readonly envelope: Envelope,
    private readonly audit: AuditLog,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly maxCachedKeys = 1000,
  ) {}

  /**
   * Signs a checkpoint of the transaction's tenant's log, creating the audit key first if the
   * tenant has none — that creation is itself an audit entry, recorded only once the signature
   * exists (the caller runs this behind a savepoint and rolls the key back if signing fails).
   */
  async sign(tx: TenantTransaction, checkpoint: Omit<Checkpoint, 'extensions' | 'origin' | 'time'>): Promise<SignedCheckpoint> {
    const tenantId = tx.tenantId;
    let [material] = await loadSigningMaterial(tx, [{ alias: AUDIT_KEY_ALIAS, version: 0 }]);
    let created = false;
    if (material instanceof KernelError && material.reason === 'KEY_NOT_FOUND') {
      material = await this.createKey(tx);
      created = true;
    }
    if (material instanceof KernelError) throw material;
    if (material.state !== 'ENABLED' || !material.sealed || material.algorithm !== 'ED25519') {
      throw new Error(`the audit key of tenant ${tenantId} (version ${material.version}) cannot sign: ${material.state} ${material.algorithm}`);
    }
    const time = new Date();
    const origin = logOrigin(tenantId);
    const body = checkpointBody({ origin, size: checkpoint.size, root: checkpoint.root, time: time.toISOString() });
    const note = signNote(body, origin, this.privateKey(tenantId, material), ed25519RawPublicKey(material.publicKey));
    if (created) {
      this.audit.append(tx, {
        tenantId,
        principal: SYSTEM_PRINCIPAL,
        action: 'kernel.audit/CreateAuditKey',
        resource: `keys/${AUDIT_KEY_ALIAS}`,
        outcome: 'OK',
        traceId: randomBytes(16).toString('hex'),
        detail: { algorithm: 'ED25519', version: 1 },
      });
      this.log.info({ tenant: tenantId }, 'audit key created for the tenant\'s first checkpoint');
    }
    return { note, keyVersion: material.version, time };
  }

  private privateKey(tenantId: string, material: SigningMaterial): KeyObject {
    const id = `${tenantId}/${material.version}`;
    const cached = this.keys.get(id);
    if (cached) return cached;
    const der = this.envelope.open(material.sealed!, signingKeyBinding(tenantId, AUDIT_KEY_ALIAS, material.version), { traceId: '', log: this.log });
    try {
      const key = privateKeyFromDer(der);
      if (this.keys.size >= this.maxCachedKeys) this.keys.delete(this.keys.keys().next().value!);
      this.keys.set(id, key);
      this.metrics.increment('audit_signing_key_decryptions_total');
      return key;
    } finally {
      der.fill(0);
    }
  }

  private async createKey(tx: TenantTransaction): Promise<SigningMaterial> {
    const pair = await generateSigningKeyPair('ED25519');
    try {
      const sealed = this.envelope.seal(pair.privateKeyDer, signingKeyBinding(tx.tenantId, AUDIT_KEY_ALIAS, 1));
      await insertKey(tx, AUDIT_KEY_ALIAS, 'ED25519', pair.publicKeyDer, sealed);
      return { algorithm: 'ED25519', version: 1, state: 'ENABLED', minSignVersion: 1, minVerifyVersion: 1, publicKey: pair.publicKeyDer, sealed };
    } finally {
      pair.privateKeyDer.fill(0);
    }
  }
}
