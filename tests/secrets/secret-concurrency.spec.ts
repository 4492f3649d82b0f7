import { Status } from 'nice-grpc-common';
import { closeKernelClient, createSecretClient, type SecretClient } from '../../clients/src';
import { SecretKind, SecretLabel } from '../../gen/proto/axis/kernel/secrets/v1/secret';
import { createBackendDatabase, startTestKernel, type TestBackendDatabase, type TestKernel } from '../support/test-kernel';
import { masterKey, masterKeyEnv } from './secret-fixtures';

/**
 * Two kernels on one database (separate pools and sessions on PostgreSQL; the embedded database
 * serialises them): concurrent writers of one secret never get the same version, compare-and-set
 * lets exactly one writer per expected version win, and the labels stay consistent.
 */
describe('SecretService under concurrent writers on two kernels', () => {
  let db: TestBackendDatabase;
  const kernels: TestKernel[] = [];
  const clients: SecretClient[] = [];

  beforeAll(async () => {
    db = await createBackendDatabase();
    const env = masterKeyEnv({ 1: masterKey() });
    kernels.push(await startTestKernel({ databaseUrl: db.url, env }));
    kernels.push(await startTestKernel({ databaseUrl: db.url, env }));
    for (const k of kernels) {
      clients.push(createSecretClient({ address: k.address, tenantId: 'conc', maxAttempts: 1, token: await k.token({ tenants: ['conc'] }) }));
    }
    await clients[0].createSecret({ secret: { secretId: 'shared', kind: SecretKind.SECRET_KIND_OPAQUE } });
  });
  afterAll(async () => {
    clients.forEach(closeKernelClient);
    for (const k of kernels) await k.stop();
    await db?.close();
  });

  test('40 concurrent adds get versions 1..40 exactly once; CURRENT is the latest and PREVIOUS the one before', async () => {
    const added = await Promise.all(
      Array.from({ length: 40 }, (_, i) => clients[i % 2].addSecretVersion({ secretId: 'shared', value: Buffer.from(`value-${i}`) })),
    );
    expect(added.map((a) => a.version!.version).sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    const { secret } = await clients[1].getSecret({ secretId: 'shared' });
    expect(secret).toMatchObject({ latestVersion: 40, currentVersion: 40, previousVersion: 39, pendingVersion: 0 });
    const current = await clients[0].accessSecretVersion({ secretId: 'shared', selector: { $case: 'label', value: SecretLabel.SECRET_LABEL_CURRENT } });
    const expected = added.find((a) => a.version!.version === 40)!;
    expect(current.version!.version).toBe(expected.version!.version);
  });

  test('compare-and-set: of 10 writers expecting the same latest version, exactly one wins', async () => {
    const { secret } = await clients[0].getSecret({ secretId: 'shared' });
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        clients[i % 2].addSecretVersion({ secretId: 'shared', value: Buffer.from(`cas-${i}`), expectedLatestVersion: secret!.latestVersion }),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')) {
      expect([r.reason.code, r.reason.reason]).toEqual([Status.FAILED_PRECONDITION, 'CAS_VERSION_MISMATCH']);
    }
    expect((await clients[1].getSecret({ secretId: 'shared' })).secret!.latestVersion).toBe(secret!.latestVersion + 1);
  });

  test('concurrent StartRotation calls: one PENDING version, the others ROTATION_IN_PROGRESS', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => clients[i % 2].startRotation({ secretId: 'shared', value: Buffer.from(`pending-${i}`) })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')) expect(r.reason.reason).toBe('ROTATION_IN_PROGRESS');
  });
});
