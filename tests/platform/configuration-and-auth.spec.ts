import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { importPKCS8, SignJWT } from 'jose';
import { Status } from 'nice-grpc-common';
import { closeKernelClient, createSequenceClient, isKernelError } from '../../clients/src';
import { ConfigError, loadConfig } from '../../services/platform/config';
import { spawnKernel } from '../support/kernel-process';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

describe('configuration', () => {
  test.each([
    ['KERNEL_GRPC_ADDR', 'not an address'],
    ['DATABASE_URL', 'mysql://x'],
    ['KERNEL_AUTH_SECRET', 'too-short'],
    ['KERNEL_DB_POOL_SIZE', '0'],
    ['KERNEL_RPC_BUDGETS_MS', '{"*": "fast"}'],
    ['LOG_LEVEL', 'loud'],
    ['KERNEL_EMBEDDED_STORAGE', 'tape'],
  ])('a bad %s stops start-up with a message naming it', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(name);
  });

  test('production refuses to start without a token verifier', () => {
    expect(() => loadConfig({ KERNEL_ENV: 'production' })).toThrow('KERNEL_JWKS_FILE');
  });

  test('defaults are the documented ones', () => {
    expect(loadConfig({})).toMatchObject({ KERNEL_GRPC_ADDR: '127.0.0.1:50051', KERNEL_IDEMPOTENCY_RETENTION_HOURS: 24, KERNEL_EMBEDDED_STORAGE: 'disk' });
  });
});

describe('production authentication: EdDSA and ES256 tokens verified against a JWKS file', () => {
  let kernel: TestKernel;
  const ed = generateKeyPairSync('ed25519');
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });

  beforeAll(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'axis-jwks-'));
    const jwksFile = path.join(dir, 'jwks.json');
    writeFileSync(
      jwksFile,
      JSON.stringify({
        keys: [
          { ...ed.publicKey.export({ format: 'jwk' }), kid: 'ed-1', alg: 'EdDSA', use: 'sig' },
          { ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1', alg: 'ES256', use: 'sig' },
        ],
      }),
    );
    // The JWKS verifier is what production uses; the kernel runs in development mode here only
    // because production also insists on a least-privilege database login
    // (tests/platform/least-privilege.spec.ts).
    kernel = await startTestKernel({ env: { KERNEL_JWKS_FILE: jwksFile, KERNEL_AUTH_SECRET: '' } });
  });
  afterAll(() => kernel?.stop());

  const sign = async (alg: 'EdDSA' | 'ES256', kid: string, pem: string, claims: Record<string, unknown> = {}) =>
    new SignJWT({ tenants: ['prod'], scope: 'sequences:read', ...claims })
      .setProtectedHeader({ alg, kid })
      .setSubject('svc-ledger')
      .setExpirationTime('5m')
      .sign(await importPKCS8(pem, alg));

  const listWith = async (token: string) => {
    const client = createSequenceClient({ address: kernel.address, tenantId: 'prod', token, maxAttempts: 1 });
    try {
      return await client.listSeries({});
    } finally {
      closeKernelClient(client);
    }
  };

  test('EdDSA and ES256 tokens from the JWKS are accepted', async () => {
    await expect(listWith(await sign('EdDSA', 'ed-1', ed.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string))).resolves.toEqual({ series: [], nextPageToken: '' });
    await expect(listWith(await sign('ES256', 'ec-1', ec.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string))).resolves.toBeDefined();
  });

  test('an HS256 token, or one signed by a key outside the JWKS, is UNAUTHENTICATED', async () => {
    const stranger = generateKeyPairSync('ed25519');
    for (const token of [
      await kernel.token({ tenants: ['prod'] }),
      await sign('EdDSA', 'ed-1', stranger.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string),
    ]) {
      const error = await listWith(token).catch((e: unknown) => e);
      expect(isKernelError(error) && [error.code, error.reason]).toEqual([Status.UNAUTHENTICATED, 'TOKEN_INVALID']);
    }
  });
});

describe('kernel process', () => {
  test('SIGTERM drains, stops background work, closes the pool and exits 0', async () => {
    const kernel = await startTestKernel();
    const node = await spawnKernel({ DATABASE_URL: kernel.databaseUrl, KERNEL_AUTH_SECRET: kernel.secret });
    try {
      const client = createSequenceClient({ address: node.address, tenantId: 'proc', token: await kernel.token({ tenants: ['proc'] }) });
      await client.createSeries({ series: { seriesId: 's', pattern: '{SEQ}', resetPolicy: 1, timeZone: 'UTC' } }, { idempotencyKey: randomUUID() });
      const inFlight = Promise.all(Array.from({ length: 20 }, () => client.issueNumber({ seriesId: 's' })));
      const exitCode = node.stop();
      // Calls already accepted finish; the process then exits cleanly.
      const settled = await inFlight.then(
        (r) => r.length,
        (e: unknown) => (isKernelError(e) ? e.code : e),
      );
      expect([20, Status.UNAVAILABLE, Status.CANCELLED]).toContain(settled);
      expect(await exitCode).toBe(0);
      expect(node.output.some((line) => line.includes('shutting down: draining in-flight calls'))).toBe(true);
      closeKernelClient(client);
      // Whatever was cut off, nothing half-wrote: every number handed out is accounted for.
      const survivor = createSequenceClient({ address: kernel.address, tenantId: 'proc', token: await kernel.token({ tenants: ['proc'] }) });
      expect((await survivor.getGapReport({ seriesId: 's' })).gapReport!.complete).toBe(true);
      closeKernelClient(survivor);
    } finally {
      await kernel.stop();
    }
  });
});
