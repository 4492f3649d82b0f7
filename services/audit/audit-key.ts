import { randomBytes } from 'node:crypto';
import { SYSTEM_PRINCIPAL, type AuditLog } from '../platform/audit/audit-log';
import type { TenantTransaction } from '../platform/database/database';
import { RESERVED_ALIAS_PREFIX, type KernelKeys } from '../keymaster';
import { checkpointBody, ed25519RawPublicKey, logOrigin, signedNote, verifierKey, type Checkpoint } from './signed-note';

/**
 * The tenant's audit key: an Ed25519 key held by the Keymaster under a reserved alias, created on
 * the tenant's first checkpoint. Tenants may rotate it (new checkpoints are signed with the new
 * primary version, older ones stay verifiable with the older public key); no client may create a
 * key under the reserved prefix or Sign with one (it could forge checkpoints).
 */
export const AUDIT_KEY_ALIAS = `${RESERVED_ALIAS_PREFIX}audit`;

export interface SignedCheckpoint {
  note: string;
  keyVersion: number;
  time: Date;
}

/** The verifier key (c2sp.org/signed-note form) of an audit key version's SPKI public key. */
export const auditVerifierKey = (tenantId: string, publicKeySpki: Buffer) => verifierKey(logOrigin(tenantId), ed25519RawPublicKey(publicKeySpki));

/** Signs the tenants' checkpoints with their audit keys (through the Keymaster's kernel keys). */
export class AuditSigner {
  constructor(
    private readonly keys: KernelKeys,
    private readonly audit: AuditLog,
  ) {}

  /**
   * Signs a checkpoint of the transaction's tenant's log. The audit key is created on first use;
   * that creation is itself an audit entry (the caller runs this behind a savepoint and rolls the
   * key and the entry back together if anything fails).
   */
  async sign(tx: TenantTransaction, checkpoint: Omit<Checkpoint, 'extensions' | 'origin' | 'time'>): Promise<SignedCheckpoint> {
    const time = new Date();
    const origin = logOrigin(tx.tenantId);
    const body = checkpointBody({ origin, size: checkpoint.size, root: checkpoint.root, time: time.toISOString() });
    const signed = await this.keys.sign(tx, AUDIT_KEY_ALIAS, Buffer.from(body, 'utf8'));
    if (signed.created) {
      this.audit.append(tx, {
        tenantId: tx.tenantId,
        principal: SYSTEM_PRINCIPAL,
        action: 'kernel.audit/CreateAuditKey',
        resource: `keys/${AUDIT_KEY_ALIAS}`,
        outcome: 'OK',
        traceId: randomBytes(16).toString('hex'),
        detail: { algorithm: 'ED25519', version: 1 },
      });
    }
    return { note: signedNote(body, origin, signed.signature, ed25519RawPublicKey(signed.publicKey)), keyVersion: signed.version, time };
  }

  /** Verifier keys of every version of the tenant's audit key (by version). */
  async verifierKeys(tx: TenantTransaction): Promise<Map<number, string>> {
    const keys = await this.keys.publicKeys(tx, AUDIT_KEY_ALIAS);
    return new Map([...keys].map(([version, spki]) => [version, auditVerifierKey(tx.tenantId, spki)]));
  }
}
