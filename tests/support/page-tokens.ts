import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { loadConfig } from '../../services/platform/config';
import { openEnvelope } from '../../services/platform/crypto/master-key-registry';
import { createLogger } from '../../services/platform/observability/logger';
import { derivePageTokenKey, PageTokenCodec, type PagedRequest } from '../../services/platform/page-token';
import { TEST_MASTER_KEYS } from './test-master-keys';

/**
 * Page tokens for tests of what the kernel does with them.
 *
 * Forged ones are what anyone can make: the unsigned format the kernel issued before tokens were
 * MAC'd, or any other string. Minted ones carry a valid MAC under the kernel's own key — read the
 * way the kernel reads it (the sealed request-digest key, opened with the test master keys) — so
 * that a hostile position gets past the MAC and reaches the call site's schema, as it would if
 * the kernel's own encoder had a bug or its key leaked.
 */

/** The pre-MAC token format: base64url JSON bound to its query by a plain SHA-256 anyone can compute. */
export function forgeUnsignedPageToken(position: unknown, query: unknown): string {
  const fingerprint = createHash('sha256').update(JSON.stringify(query)).digest('base64url').slice(0, 12);
  return Buffer.from(JSON.stringify({ p: position, q: fingerprint })).toString('base64url');
}

/** Mints page tokens exactly as the kernel on `databaseUrl` (started with the test master keys) does. */
export interface PageTokenMinter {
  /** A token for `position` continuing `request` (a decoded request of `method`) in `tenantId`. */
  mint(method: { path: string; requestType: { encode(message: unknown): { finish(): Uint8Array } } }, tenantId: string, request: PagedRequest, position: unknown): string;
}

export async function kernelPageTokenMinter(databaseUrl: string): Promise<PageTokenMinter> {
  const config = loadConfig({ DATABASE_URL: databaseUrl, KERNEL_MASTER_KEYS: TEST_MASTER_KEYS, KERNEL_DATA_DIR: tmpdir(), LOG_LEVEL: 'silent' });
  const { requestDigestKey } = await openEnvelope(config, databaseUrl, createLogger('silent'));
  const codec = new PageTokenCodec(derivePageTokenKey(requestDigestKey));
  return {
    mint: (method, tenantId, request, position) => codec.encode({ pageTokens: codec, tenantId, method }, request, position),
  };
}
