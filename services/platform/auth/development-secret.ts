import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The HS256 secret of a development kernel with no KERNEL_AUTH_SECRET: generated once into the
 * data directory (mode 0600) so that minted tokens survive restarts. Never used in production.
 */
export function loadOrCreateDevelopmentSecret(dataDir: string): { secret: string; created: boolean } {
  const file = path.join(dataDir, 'dev-auth-secret');
  try {
    return { secret: readFileSync(file, 'utf8').trim(), created: false };
  } catch {
    mkdirSync(dataDir, { recursive: true });
    const secret = randomBytes(32).toString('base64url');
    try {
      writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    } catch {
      // Another process created it first: use theirs.
      return { secret: readFileSync(file, 'utf8').trim(), created: false };
    }
    return { secret, created: true };
  }
}
