import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

/** One key-encryption key (KEK): 32 bytes, identified by its version. */
export interface MasterKey {
  readonly version: number;
  readonly key: Buffer;
}

/** The configured KEKs: every version that may unwrap, and the one that wraps. */
export interface MasterKeyRing {
  readonly keys: ReadonlyMap<number, MasterKey>;
  readonly active: MasterKey;
}

/** Thrown for unusable master-key configuration; the message says what to fix. */
export class MasterKeyError extends Error {
  override readonly name = 'MasterKeyError';
}

const keyVersion = z.coerce.number().int().min(1).max(1_000_000);
const keyBytes = z
  .string()
  .transform((text) => Buffer.from(text, 'base64'))
  .refine((bytes) => bytes.length === 32, 'must be 32 bytes, base64-encoded');

/** `KERNEL_MASTER_KEYS`: a JSON object of version → base64 key, e.g. `{"1":"…","2":"…"}`. */
export const masterKeysSchema = z
  .string()
  .transform((text, ctx) => {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be a JSON object of version -> base64 32-byte key' });
      return z.NEVER;
    }
  })
  .pipe(z.record(z.string(), keyBytes))
  .transform((record, ctx) => {
    const keys = new Map<number, MasterKey>();
    for (const [version, key] of Object.entries(record)) {
      const parsed = keyVersion.safeParse(version);
      if (!parsed.success) {
        ctx.addIssue({ code: 'custom', message: `version "${version}" must be an integer from 1 to 1000000` });
        return z.NEVER;
      }
      keys.set(parsed.data, { version: parsed.data, key });
    }
    if (keys.size === 0) {
      ctx.addIssue({ code: 'custom', message: 'must hold at least one key' });
      return z.NEVER;
    }
    return keys;
  });

/** Builds the ring; the active version defaults to the highest configured one. */
export function masterKeyRing(keys: ReadonlyMap<number, MasterKey>, activeVersion?: number): MasterKeyRing {
  const version = activeVersion ?? Math.max(...keys.keys());
  const active = keys.get(version);
  if (!active) throw new MasterKeyError(`KERNEL_MASTER_KEY_ACTIVE=${version} names a version that KERNEL_MASTER_KEYS does not hold`);
  return { keys, active };
}

/**
 * The development ring of a kernel with no KERNEL_MASTER_KEYS: one key generated once into the
 * data directory (mode 0600) so that encrypted data survives restarts. Never used in production,
 * where a missing KERNEL_MASTER_KEYS stops start-up (see config.ts).
 */
export function loadOrCreateDevelopmentMasterKeys(dataDir: string): { keys: Map<number, MasterKey>; created: boolean; file: string } {
  const file = path.join(dataDir, 'dev-master-keys.json');
  const read = () => masterKeysSchema.parse(readFileSync(file, 'utf8'));
  try {
    return { keys: read(), created: false, file };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new MasterKeyError(`${file} is not a valid master-key file: ${(error as Error).message}`);
  }
  mkdirSync(dataDir, { recursive: true });
  try {
    writeFileSync(file, `${JSON.stringify({ 1: randomBytes(32).toString('base64') })}\n`, { mode: 0o600, flag: 'wx' });
  } catch {
    return { keys: read(), created: false, file }; // another process created it first
  }
  return { keys: read(), created: true, file };
}

/**
 * A KEK's public fingerprint: lets the database remember which key a version was without
 * holding it, so a node configured with a different key under the same version is refused at
 * start-up instead of failing every decryption later.
 */
export const masterKeyFingerprint = (key: MasterKey): Buffer =>
  createHmac('sha256', key.key).update(`axis-kernel/kek-fingerprint/v1/${key.version}`).digest();
