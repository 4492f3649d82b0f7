import { randomBytes } from 'node:crypto';
import type { KernelConfig } from '../config';
import type { Sql } from '../database/transaction';
import { withOwnerConnection } from '../database/owner-connection';
import type { Logger } from '../observability/logger';
import { Envelope } from './envelope';
import { ENVELOPE_TABLES } from './envelope-tables';
import { dataKeyInventory } from './rewrap';
import { loadOrCreateDevelopmentMasterKeys, MasterKeyError, masterKeyFingerprint, masterKeyRing, type MasterKey } from './master-keys';

/**
 * Opens the node's envelope: the configured master keys (or, in development only, the key
 * generated once into the data directory), checked against the database as the owner:
 *  - a version the database knows with another key (by fingerprint) stops start-up, so a
 *    misconfigured node cannot fail every decryption later or, worse, wrap with a wrong key;
 *  - data keys wrapped by a version that is not configured stop start-up with what to do,
 *    so an old master key is only retired after `kernel keys rewrap` has moved everything off it.
 */
export async function openEnvelope(config: KernelConfig, ownerUrl: string, log: Logger): Promise<RootOfTrust> {
  let keys: ReadonlyMap<number, MasterKey>;
  if (config.KERNEL_MASTER_KEYS) {
    keys = config.KERNEL_MASTER_KEYS;
  } else {
    const development = loadOrCreateDevelopmentMasterKeys(config.KERNEL_DATA_DIR);
    keys = development.keys;
    log.warn(
      { file: development.file, created: development.created },
      development.created
        ? '!!! GENERATED A DEVELOPMENT MASTER KEY: signing keys and secrets are protected by a key stored next to the data. Set KERNEL_MASTER_KEYS outside development. !!!'
        : '!!! using the development master key from the data directory; set KERNEL_MASTER_KEYS outside development !!!',
    );
  }
  const ring = masterKeyRing(keys, config.KERNEL_MASTER_KEY_ACTIVE);

  return withOwnerConnection(ownerUrl, 'axis-kernel-master-keys', async (owner) => {
    const versions = [...keys.values()];
    const rows = await owner.query<{ version: number; fingerprint: Buffer }>(
      `WITH configured AS (SELECT * FROM unnest($1::int[], $2::bytea[]) AS c(version, fingerprint))
       , inserted AS (INSERT INTO kernel_master_key (version, fingerprint) SELECT version, fingerprint FROM configured ON CONFLICT (version) DO NOTHING)
       SELECT m.version, m.fingerprint FROM kernel_master_key m JOIN configured c USING (version)`,
      [versions.map((k) => k.version), versions.map(masterKeyFingerprint)],
    );
    for (const row of rows) {
      if (!row.fingerprint.equals(masterKeyFingerprint(keys.get(row.version)!))) {
        throw new MasterKeyError(
          `KERNEL_MASTER_KEYS version ${row.version} is not the key this database knows as version ${row.version} (fingerprint differs); ` +
            'configure the original key under that version and add new keys under new versions',
        );
      }
    }
    // Every tenant's data keys count, which row-level security hides from the owner: the
    // inventory is a system function (it sees every tenant and reveals only counts).
    for (const table of ENVELOPE_TABLES) {
      const inventory = await dataKeyInventory(owner, table);
      const missing = inventory.filter((row) => !keys.has(row.kekVersion)).map((row) => row.kekVersion);
      if (missing.length > 0) {
        throw new MasterKeyError(
          `${table.table} holds data keys wrapped by master key version(s) ${missing.join(', ')}, which KERNEL_MASTER_KEYS lacks: ` +
            'configure them again, run `kernel keys rewrap`, and retire them only when `kernel keys status` shows none left',
        );
      }
    }
    const envelope = new Envelope(ring);
    const requestDigestKey = await kernelKey(owner, envelope, 'request-digest', log);
    log.info({ kek_versions: [...keys.keys()].sort((a, b) => a - b), active_kek_version: ring.active.version }, 'master keys loaded');
    return { envelope, requestDigestKey };
  });
}

/** The node's envelope and the kernel-wide keys it unsealed at start-up. */
export interface RootOfTrust {
  envelope: Envelope;
  /** Keys the request digests of audit entries and idempotency records (HMAC-SHA256). */
  requestDigestKey: Buffer;
}

/**
 * A kernel-wide 256-bit key, created once (the first node to start wins the race) and kept
 * sealed in kernel_sealed_key like every other value, so master-key rotation covers it.
 */
async function kernelKey(sql: Sql, envelope: Envelope, name: string, log: Logger): Promise<Buffer> {
  const binding = { tenantId: '', purpose: 'kernel-key' as const, resource: `kernel-keys/${name}`, version: 1 };
  const fresh = envelope.seal(randomBytes(32), binding);
  await sql.query(
    'INSERT INTO kernel_sealed_key (name, ciphertext, wrapped_key, kek_version) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING',
    [name, fresh.ciphertext, fresh.wrappedKey, fresh.kekVersion],
  );
  const [row] = await sql.query<{ ciphertext: Buffer; wrapped_key: Buffer; kek_version: number }>(
    'SELECT ciphertext, wrapped_key, kek_version FROM kernel_sealed_key WHERE name = $1',
    [name],
  );
  return envelope.open({ ciphertext: row.ciphertext, wrappedKey: row.wrapped_key, kekVersion: row.kek_version }, binding, { traceId: 'start-up', log });
}
