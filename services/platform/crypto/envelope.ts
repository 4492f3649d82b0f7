import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Status } from 'nice-grpc-common';
import { KernelError } from '../kernel-error';
import type { CallLog } from '../observability/logger';
import type { MasterKey, MasterKeyRing } from './master-keys';

/**
 * What a ciphertext is bound to. It is the AES-GCM associated data of the value and of its
 * wrapped data key, so bytes moved to another tenant's, resource's or version's row fail to
 * decrypt instead of decrypting as someone else's secret.
 */
export interface EnvelopeBinding {
  tenantId: string;
  purpose: 'secret' | 'signing-key' | 'kernel-key';
  /** Tenant-relative resource name, e.g. `secrets/db-password` or `keys/invoice-signing`. */
  resource: string;
  version: number;
}

/** The stored form: three columns of the row. */
export interface SealedValue {
  /** FORMAT ‖ iv(12) ‖ tag(16) ‖ AES-256-GCM(data key, plaintext). */
  ciphertext: Buffer;
  /** FORMAT ‖ iv(12) ‖ tag(16) ‖ AES-256-GCM(KEK, data key). */
  wrappedKey: Buffer;
  /** Which KEK wrapped the data key. */
  kekVersion: number;
}

const FORMAT_V1 = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + IV_BYTES + TAG_BYTES;

/** Canonical associated data; NUL cannot occur in a tenant id or resource name. */
function associatedData(part: 'value' | 'data-key', binding: EnvelopeBinding, kekVersion?: number): Buffer {
  const fields = ['axis-envelope/v1', part, binding.purpose, binding.tenantId, binding.resource, String(binding.version)];
  if (kekVersion !== undefined) fields.push(`kek/${kekVersion}`);
  return Buffer.from(fields.join('\0'), 'utf8');
}

function encrypt(key: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.of(FORMAT_V1), iv, cipher.getAuthTag(), body]);
}

/** Undefined when the bytes are not authentic under this key and associated data. */
function decrypt(key: Buffer, sealed: Buffer, aad: Buffer): Buffer | undefined {
  if (sealed.length < HEADER_BYTES || sealed[0] !== FORMAT_V1) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(1, 1 + IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(1 + IV_BYTES, HEADER_BYTES));
    return Buffer.concat([decipher.update(sealed.subarray(HEADER_BYTES)), decipher.final()]);
  } catch {
    return undefined;
  }
}

/** What an alarm names: the call's trace, so an operator can find the request. */
export interface AlarmContext {
  traceId: string;
  log: CallLog;
}

/**
 * Envelope encryption, the kernel's root of trust (docs/platform-contract.md#envelope-encryption; shared by keymaster signing keys and
 * secrets). Every value gets a fresh 256-bit data key (AES-256-GCM); the data key is stored
 * wrapped by a versioned master key (KEK) from configuration. Both layers carry the binding as
 * associated data. Rotating the KEK re-wraps data keys only (see rewrap.ts): values are never
 * decrypted for it, and the old KEK can be retired once no row names its version.
 */
export class Envelope {
  constructor(private readonly ring: MasterKeyRing) {}

  get activeKekVersion(): number {
    return this.ring.active.version;
  }

  get kekVersions(): number[] {
    return [...this.ring.keys.keys()].sort((a, b) => a - b);
  }

  seal(plaintext: Buffer, binding: EnvelopeBinding): SealedValue {
    const dataKey = randomBytes(32);
    try {
      const kek = this.ring.active;
      return {
        ciphertext: encrypt(dataKey, plaintext, associatedData('value', binding)),
        wrappedKey: encrypt(kek.key, dataKey, associatedData('data-key', binding, kek.version)),
        kekVersion: kek.version,
      };
    } finally {
      dataKey.fill(0);
    }
  }

  /**
   * Decrypts a sealed value. Bytes that are not authentic for this binding (moved from another
   * row or tenant, or altered) answer DATA_LOSS CIPHERTEXT_BINDING_MISMATCH and raise an alarm
   * (error log with the trace id); a KEK version this node does not hold answers
   * FAILED_PRECONDITION MASTER_KEY_UNAVAILABLE.
   */
  open(sealed: SealedValue, binding: EnvelopeBinding, alarm: AlarmContext): Buffer {
    const dataKey = this.unwrap(sealed, binding, alarm);
    try {
      const plaintext = decrypt(dataKey, sealed.ciphertext, associatedData('value', binding));
      if (!plaintext) throw this.mismatch(binding, sealed.kekVersion, 'value', alarm);
      return plaintext;
    } finally {
      dataKey.fill(0);
    }
  }

  /**
   * Re-wraps a data key under the active KEK without touching (or decrypting) the value.
   * Returns undefined when it is already wrapped by the active KEK.
   */
  rewrap(sealed: Pick<SealedValue, 'wrappedKey' | 'kekVersion'>, binding: EnvelopeBinding, alarm: AlarmContext): Pick<SealedValue, 'wrappedKey' | 'kekVersion'> | undefined {
    const kek = this.ring.active;
    if (sealed.kekVersion === kek.version) return undefined;
    const dataKey = this.unwrap(sealed, binding, alarm);
    try {
      return { wrappedKey: encrypt(kek.key, dataKey, associatedData('data-key', binding, kek.version)), kekVersion: kek.version };
    } finally {
      dataKey.fill(0);
    }
  }

  private unwrap(sealed: Pick<SealedValue, 'wrappedKey' | 'kekVersion'>, binding: EnvelopeBinding, alarm: AlarmContext): Buffer {
    const kek: MasterKey | undefined = this.ring.keys.get(sealed.kekVersion);
    if (!kek) {
      alarm.log.error(
        { trace_id: alarm.traceId, tenant: binding.tenantId, resource: binding.resource, version: binding.version, kek_version: sealed.kekVersion },
        'ALARM: data key is wrapped by a master key version this node does not hold',
      );
      throw new KernelError(Status.FAILED_PRECONDITION, 'MASTER_KEY_UNAVAILABLE', `master key version ${sealed.kekVersion} is not configured on this node`, {
        metadata: { kek_version: String(sealed.kekVersion) },
      });
    }
    const dataKey = decrypt(kek.key, sealed.wrappedKey, associatedData('data-key', binding, sealed.kekVersion));
    if (!dataKey || dataKey.length !== 32) throw this.mismatch(binding, sealed.kekVersion, 'data key', alarm);
    return dataKey;
  }

  private mismatch(binding: EnvelopeBinding, kekVersion: number, layer: string, alarm: AlarmContext): KernelError {
    alarm.log.error(
      { trace_id: alarm.traceId, tenant: binding.tenantId, resource: binding.resource, version: binding.version, kek_version: kekVersion, layer },
      'ALARM: ciphertext failed authentication for its row (moved between rows or tenants, or altered)',
    );
    return new KernelError(Status.DATA_LOSS, 'CIPHERTEXT_BINDING_MISMATCH', 'stored ciphertext does not belong to this resource or was altered', {
      metadata: { resource: binding.resource, version: String(binding.version) },
    });
  }
}
