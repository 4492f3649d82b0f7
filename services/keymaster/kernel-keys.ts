import type { KeyObject } from 'node:crypto';
import type { Envelope } from '../platform/crypto/envelope';
import type { TenantTransaction } from '../platform/database/database';
import { KernelError } from '../platform/kernel-error';
import type { Logger } from '../platform/observability/logger';
import type { Metrics } from '../platform/observability/metrics';
import { insertKey, loadSigningMaterial, RESERVED_ALIAS_PREFIX, signingKeyBinding, type SigningMaterial } from './key-store';
import { generateSigningKeyPair, privateKeyFromDer, signWith } from './signing-algorithms';

/** A signature by a kernel key, and what a verifier needs to know about it. */
export interface KernelSignature {
  signature: Buffer;
  version: number;
  /** The signing version's public key (SubjectPublicKeyInfo DER). */
  publicKey: Buffer;
  /** The key did not exist and was created (version 1) for this signature: the caller records that. */
  created: boolean;
}

/**
 * Keymaster's face to the rest of the kernel: signing with keys the kernel itself holds for a
 * tenant, under reserved aliases (`kernel.…`) that no client may create or sign with — the audit
 * log's checkpoint key. Ed25519 only. The keys are ordinary Keymaster keys (sealed under the
 * master keys, versioned, rotatable by the tenant); whether a version may sign is read in the
 * caller's transaction every time, the decrypted key is cached per node.
 */
export class KernelKeys {
  /** Decrypted private keys by tenant/alias/version (bounded). */
  private readonly keys = new Map<string, KeyObject>();

  constructor(
    private readonly envelope: Envelope,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly maxCachedKeys = 1000,
  ) {}

  /** Signs `message` with the primary version of the transaction's tenant's key `alias`, creating the key on first use. */
  async sign(tx: TenantTransaction, alias: string, message: Buffer): Promise<KernelSignature> {
    if (!alias.startsWith(RESERVED_ALIAS_PREFIX)) throw new Error(`a kernel key's alias starts with ${RESERVED_ALIAS_PREFIX}`);
    let [material] = await loadSigningMaterial(tx, [{ alias, version: 0 }]);
    let created = false;
    if (material instanceof KernelError && material.reason === 'KEY_NOT_FOUND') {
      material = await this.create(tx, alias);
      created = true;
    }
    if (material instanceof KernelError) throw material;
    if (material.state !== 'ENABLED' || !material.sealed || material.algorithm !== 'ED25519') {
      throw new Error(`the kernel key ${alias} of tenant ${tx.tenantId} (version ${material.version}) cannot sign: ${material.state} ${material.algorithm}`);
    }
    const signature = signWith('ED25519', this.privateKey(tx.tenantId, alias, material), { kind: 'message', bytes: message });
    return { signature, version: material.version, publicKey: material.publicKey, created };
  }

  /** The public keys (SubjectPublicKeyInfo DER) of every version of the tenant's key `alias`, by version. */
  async publicKeys(tx: TenantTransaction, alias: string): Promise<Map<number, Buffer>> {
    const rows = await tx.query<{ version: number; public_key: Buffer }>(
      'SELECT v.version, v.public_key FROM keymaster_key_version v WHERE v.tenant_id = $1 AND v.alias = $2 ORDER BY v.version',
      [tx.tenantId, alias],
    );
    return new Map(rows.map((r) => [r.version, r.public_key]));
  }

  private privateKey(tenantId: string, alias: string, material: SigningMaterial): KeyObject {
    const id = `${tenantId}\u0000${alias}\u0000${material.version}`;
    const cached = this.keys.get(id);
    if (cached) return cached;
    const der = this.envelope.open(material.sealed!, signingKeyBinding(tenantId, alias, material.version), { traceId: '', log: this.log });
    try {
      const key = privateKeyFromDer(der);
      if (this.keys.size >= this.maxCachedKeys) this.keys.delete(this.keys.keys().next().value!);
      this.keys.set(id, key);
      this.metrics.increment('keymaster_kernel_key_decryptions_total');
      return key;
    } finally {
      der.fill(0);
    }
  }

  private async create(tx: TenantTransaction, alias: string): Promise<SigningMaterial> {
    const pair = await generateSigningKeyPair('ED25519');
    try {
      const sealed = this.envelope.seal(pair.privateKeyDer, signingKeyBinding(tx.tenantId, alias, 1));
      await insertKey(tx, alias, 'ED25519', pair.publicKeyDer, sealed);
      return { algorithm: 'ED25519', version: 1, state: 'ENABLED', minSignVersion: 1, minVerifyVersion: 1, publicKey: pair.publicKeyDer, sealed };
    } finally {
      pair.privateKeyDer.fill(0);
    }
  }
}
