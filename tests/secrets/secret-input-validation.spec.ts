import { Status } from 'nice-grpc-common';
import { closeKernelClient, createSecretClient, type SecretClient } from '../../clients/src';
import { SecretKind, SecretLabel } from '../../gen/proto/axis/kernel/secrets/v1/secret';
import { refusal } from '../support/refusal';
import { startTestKernel, type TestKernel } from '../support/test-kernel';
import { asSuperuser, opensslCertificate } from './secret-fixtures';

/** Bad input to SecretService: each refusal has its precise reason, and nothing is written. */
describe('SecretService input validation', () => {
  let kernel: TestKernel;
  let client: SecretClient;
  const value = (text = 'v') => Buffer.from(text);

  beforeAll(async () => {
    kernel = await startTestKernel();
    client = createSecretClient({ address: kernel.address, tenantId: 'val', maxAttempts: 1, token: await kernel.token({ tenants: ['val'] }) });
    await client.createSecret({ secret: { secretId: 'ok', kind: SecretKind.SECRET_KIND_OPAQUE } });
    await client.addSecretVersion({ secretId: 'ok', value: value('one') });
  });
  afterAll(async () => {
    closeKernelClient(client);
    await kernel?.stop();
  });

  const base = { secretId: 'new-secret', kind: SecretKind.SECRET_KIND_OPAQUE };

  test.each([
    ['UNSPECIFIED kind', { kind: SecretKind.SECRET_KIND_UNSPECIFIED }, 'ENUM_UNSPECIFIED', 'secret.kind'],
    ['unknown kind number', { kind: 42 }, 'ENUM_UNSPECIFIED', 'secret.kind'],
    ['empty secret id', { secretId: '' }, 'FIELD_INVALID', 'secret.secret_id'],
    ['oversized secret id', { secretId: 'a'.repeat(64) }, 'FIELD_INVALID', 'secret.secret_id'],
    ['secret id with a slash', { secretId: 'a/b' }, 'FIELD_INVALID', 'secret.secret_id'],
    ['upper-case secret id', { secretId: 'Prod' }, 'FIELD_INVALID', 'secret.secret_id'],
    ['oversized description', { description: 'd'.repeat(501) }, 'FIELD_INVALID', 'secret.description'],
    ['rotation period under an hour', { rotationPeriod: { seconds: 59, nanos: 0 } }, 'FIELD_INVALID', 'secret.rotation_period'],
    ['negative grace period', { defaultGracePeriod: { seconds: -1, nanos: 0 } }, 'FIELD_INVALID', 'secret.default_grace_period'],
    ['grace period over 30 days', { defaultGracePeriod: { seconds: 31 * 86400, nanos: 0 } }, 'FIELD_INVALID', 'secret.default_grace_period'],
  ])('CreateSecret refuses %s', async (_name, override, reason, field) => {
    const refused = await refusal(client.createSecret({ secret: { ...base, ...override } }));
    expect([refused.code, refused.reason]).toEqual([Status.INVALID_ARGUMENT, reason]);
    expect(refused.fieldViolations.map((v) => v.field)).toContain(field);
  });

  test('CreateSecret without a secret, and a duplicate secret', async () => {
    expect((await refusal(client.createSecret({}))).code).toBe(Status.INVALID_ARGUMENT);
    const dup = await refusal(client.createSecret({ secret: { ...base, secretId: 'ok' } }));
    expect([dup.code, dup.reason]).toEqual([Status.ALREADY_EXISTS, 'SECRET_EXISTS']);
  });

  test('values: empty, over 64 KiB, exactly 64 KiB', async () => {
    const empty = await refusal(client.addSecretVersion({ secretId: 'ok', value: Buffer.alloc(0) }));
    expect([empty.code, empty.reason]).toEqual([Status.INVALID_ARGUMENT, 'VALUE_REQUIRED']);
    const big = await refusal(client.addSecretVersion({ secretId: 'ok', value: Buffer.alloc(64 * 1024 + 1, 1) }));
    expect([big.code, big.reason]).toEqual([Status.INVALID_ARGUMENT, 'VALUE_TOO_LARGE']);
    const rotation = await refusal(client.startRotation({ secretId: 'ok', value: Buffer.alloc(1024 * 1024, 1) }));
    expect(rotation.reason).toBe('VALUE_TOO_LARGE');
    expect((await client.getSecret({ secretId: 'ok' })).secret).toMatchObject({ latestVersion: 1 });

    await client.createSecret({ secret: { secretId: 'max', kind: SecretKind.SECRET_KIND_CREDENTIAL } });
    const max = await client.addSecretVersion({ secretId: 'max', value: Buffer.alloc(64 * 1024, 7) });
    expect(max.version!.valueSizeBytes).toBe(64 * 1024);
    expect(Buffer.from((await client.accessSecretVersion({ secretId: 'max', selector: { $case: 'version', value: 1 } })).value).equals(Buffer.alloc(64 * 1024, 7))).toBe(true);
  });

  test('unknown secret answers NOT_FOUND SECRET_NOT_FOUND on every RPC', async () => {
    for (const call of [
      () => client.getSecret({ secretId: 'nope' }),
      () => client.addSecretVersion({ secretId: 'nope', value: value() }),
      () => client.startRotation({ secretId: 'nope', value: value() }),
      () => client.accessSecretVersion({ secretId: 'nope', selector: { $case: 'version', value: 1 } }),
      () => client.listSecretVersions({ secretId: 'nope' }),
      () => client.promoteVersion({ secretId: 'nope', version: 1 }),
      () => client.disableSecretVersion({ secretId: 'nope', version: 1 }),
      () => client.destroySecretVersion({ secretId: 'nope', version: 1 }),
    ]) {
      const refused = await refusal(call());
      expect([refused.code, refused.reason]).toEqual([Status.NOT_FOUND, 'SECRET_NOT_FOUND']);
    }
  });

  test('versions and selectors: unknown version, missing selector, UNSPECIFIED label, unassigned label, version 0', async () => {
    for (const call of [
      () => client.accessSecretVersion({ secretId: 'ok', selector: { $case: 'version', value: 99 } }),
      () => client.promoteVersion({ secretId: 'ok', version: 99 }),
      () => client.disableSecretVersion({ secretId: 'ok', version: 99 }),
      () => client.destroySecretVersion({ secretId: 'ok', version: 99 }),
    ]) {
      const refused = await refusal(call());
      expect([refused.code, refused.reason]).toEqual([Status.NOT_FOUND, 'SECRET_VERSION_NOT_FOUND']);
    }
    const none = await refusal(client.accessSecretVersion({ secretId: 'ok' }));
    expect([none.code, none.reason]).toEqual([Status.INVALID_ARGUMENT, 'VERSION_SELECTOR_REQUIRED']);
    const unspecified = await refusal(client.accessSecretVersion({ secretId: 'ok', selector: { $case: 'label', value: SecretLabel.SECRET_LABEL_UNSPECIFIED } }));
    expect([unspecified.code, unspecified.reason]).toEqual([Status.INVALID_ARGUMENT, 'ENUM_UNSPECIFIED']);
    const unassigned = await refusal(client.accessSecretVersion({ secretId: 'ok', selector: { $case: 'label', value: SecretLabel.SECRET_LABEL_PENDING } }));
    expect([unassigned.code, unassigned.reason]).toEqual([Status.NOT_FOUND, 'LABEL_NOT_ASSIGNED']);
    const zero = await refusal(client.accessSecretVersion({ secretId: 'ok', selector: { $case: 'version', value: 0 } }));
    expect([zero.code, zero.reason]).toEqual([Status.INVALID_ARGUMENT, 'FIELD_INVALID']);
    expect((await refusal(client.promoteVersion({ secretId: 'ok', version: 0 }))).reason).toBe('FIELD_INVALID');
    expect((await refusal(client.promoteVersion({ secretId: 'ok', version: 1, gracePeriod: { seconds: 31 * 86400, nanos: 0 } }))).reason).toBe('FIELD_INVALID');
    expect((await refusal(client.addSecretVersion({ secretId: 'ok', value: value(), expectedLatestVersion: -1 }))).reason).toBe('FIELD_INVALID');
  });

  test('label misuse: current version cannot be disabled, destroyed or re-promoted; disabled and destroyed versions are refused precisely', async () => {
    await client.createSecret({ secret: { secretId: 'life', kind: SecretKind.SECRET_KIND_OPAQUE, defaultGracePeriod: { seconds: 3600, nanos: 0 } } });
    await client.addSecretVersion({ secretId: 'life', value: value('a') });
    await client.addSecretVersion({ secretId: 'life', value: value('b') });
    for (const call of [() => client.disableSecretVersion({ secretId: 'life', version: 2 }), () => client.destroySecretVersion({ secretId: 'life', version: 2 })]) {
      const refused = await refusal(call());
      expect([refused.code, refused.reason]).toEqual([Status.FAILED_PRECONDITION, 'VERSION_IS_CURRENT']);
    }
    const again = await refusal(client.promoteVersion({ secretId: 'life', version: 2 }));
    expect([again.code, again.reason]).toEqual([Status.FAILED_PRECONDITION, 'VERSION_ALREADY_CURRENT']);

    // Disable PREVIOUS: it loses its label and every read is refused.
    const disabled = await client.disableSecretVersion({ secretId: 'life', version: 1 });
    expect(disabled.version).toMatchObject({ labels: [] });
    expect((await refusal(client.accessSecretVersion({ secretId: 'life', selector: { $case: 'version', value: 1 } }))).reason).toBe('VERSION_DISABLED');
    expect((await refusal(client.accessSecretVersion({ secretId: 'life', selector: { $case: 'label', value: SecretLabel.SECRET_LABEL_PREVIOUS } }))).reason).toBe('LABEL_NOT_ASSIGNED');
    expect((await refusal(client.disableSecretVersion({ secretId: 'life', version: 1 }))).reason).toBe('VERSION_ALREADY_DISABLED');
    expect((await refusal(client.promoteVersion({ secretId: 'life', version: 1 }))).reason).toBe('VERSION_DISABLED');

    // Destroy it: crypto-erased, metadata kept.
    const destroyed = await client.destroySecretVersion({ secretId: 'life', version: 1 });
    expect(destroyed.version).toMatchObject({ version: 1, valueSizeBytes: 1 });
    expect(destroyed.version!.destroyTime).toBeInstanceOf(Date);
    for (const call of [
      () => client.accessSecretVersion({ secretId: 'life', selector: { $case: 'version', value: 1 } }),
      () => client.destroySecretVersion({ secretId: 'life', version: 1 }),
      () => client.disableSecretVersion({ secretId: 'life', version: 1 }),
      () => client.promoteVersion({ secretId: 'life', version: 1 }),
    ]) {
      const refused = await refusal(call());
      expect([refused.code, refused.reason]).toEqual([Status.FAILED_PRECONDITION, 'VERSION_DESTROYED']);
    }
    const row = await asSuperuser(kernel.databaseUrl, async (sql) =>
      (await sql.query(`SELECT state, ciphertext, wrapped_key, kek_version, value_size_bytes FROM secret_version WHERE tenant_id = 'val' AND secret_id = 'life' AND version = 1`)).rows[0],
    );
    expect(row).toEqual({ state: 'DESTROYED', ciphertext: null, wrapped_key: null, kek_version: null, value_size_bytes: 1 });

    // A rotation is cancelled by disabling its PENDING version; then a new one may start.
    await client.startRotation({ secretId: 'life', value: value('c') });
    const busy = await refusal(client.addSecretVersion({ secretId: 'life', value: value('d') }));
    expect([busy.code, busy.reason]).toEqual([Status.FAILED_PRECONDITION, 'ROTATION_IN_PROGRESS']);
    await client.disableSecretVersion({ secretId: 'life', version: 3 });
    expect((await client.getSecret({ secretId: 'life' })).secret).toMatchObject({ pendingVersion: 0, currentVersion: 2 });
    await client.startRotation({ secretId: 'life', value: value('e') });
    // Rollback: promote the PENDING version, then promote the old CURRENT back.
    await client.promoteVersion({ secretId: 'life', version: 4 });
    const rolledBack = await client.promoteVersion({ secretId: 'life', version: 2 });
    expect(rolledBack.secret).toMatchObject({ currentVersion: 2, previousVersion: 4, pendingVersion: 0 });
    expect(Buffer.from((await client.accessSecretVersion({ secretId: 'life', selector: { $case: 'label', value: SecretLabel.SECRET_LABEL_CURRENT } })).value).toString()).toBe('b');
  });

  test('certificates: malformed PEM is CERTIFICATE_INVALID; a valid one records its public facts', async () => {
    await client.createSecret({ secret: { secretId: 'cert', kind: SecretKind.SECRET_KIND_CERTIFICATE } });
    for (const malformed of ['', 'hello', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n']) {
      const refused = await refusal(client.addSecretVersion({ secretId: 'cert', value: Buffer.from(malformed) }));
      expect(refused.code).toBe(Status.INVALID_ARGUMENT);
      expect(refused.reason).toBe(malformed === '' ? 'VALUE_REQUIRED' : 'CERTIFICATE_INVALID');
    }
    const { certificate } = opensslCertificate(5, 'facts.example');
    const added = await client.addSecretVersion({ secretId: 'cert', value: Buffer.from(certificate) });
    expect(added.version!.certificate).toMatchObject({ subject: 'CN=facts.example', issuer: 'CN=facts.example' });
    expect(added.version!.certificate!.sha256Fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  test('pages: bad page token, oversized page size, paging through versions', async () => {
    await client.createSecret({ secret: { secretId: 'paged', kind: SecretKind.SECRET_KIND_OPAQUE } });
    for (let i = 0; i < 3; i += 1) await client.addSecretVersion({ secretId: 'paged', value: value(`p${i}`) });
    const first = await client.listSecretVersions({ secretId: 'paged', pageSize: 2 });
    const second = await client.listSecretVersions({ secretId: 'paged', pageSize: 2, pageToken: first.nextPageToken });
    expect([...first.versions, ...second.versions].map((v) => v.version)).toEqual([3, 2, 1]);
    expect(second.nextPageToken).toBe('');
    expect((await refusal(client.listSecretVersions({ secretId: 'ok', pageToken: first.nextPageToken }))).reason).toBe('PAGE_TOKEN_INVALID');
    expect((await refusal(client.listSecrets({ pageToken: 'garbage!' }))).reason).toBe('PAGE_TOKEN_INVALID');
    expect((await refusal(client.listExpiring({ within: { seconds: 60, nanos: 0 }, pageToken: 'x' }))).reason).toBe('PAGE_TOKEN_INVALID');
    expect((await refusal(client.listSecrets({ pageSize: 5000 }))).reason).toBe('FIELD_INVALID');
    expect((await refusal(client.listExpiring({}))).reason).toBe('FIELD_INVALID');
    expect((await refusal(client.listExpiring({ within: { seconds: 11 * 365 * 86400, nanos: 0 } }))).reason).toBe('FIELD_INVALID');
  });
});
