import { randomBytes, X509Certificate } from 'node:crypto';
import { Status, type Metadata } from 'nice-grpc-common';
import { closeKernelClient, createKeymasterClient, createSecretClient, readResponseInfo, type SecretClient } from '../../clients/src';
import { ExpiryReason, SecretKind, SecretLabel, SecretVersionState } from '../../gen/proto/axis/kernel/secrets/v1/secret';
import { kernelCli } from '../support/kernel-cli';
import { refusal } from '../support/refusal';
import { createBackendDatabase, startTestKernel, TEST_BACKEND, type TestBackendDatabase, type TestKernel } from '../support/test-kernel';
import { asSuperuser, dumpAllTables, masterKey, masterKeyEnv, opensslCertificate, valueForms } from '../secrets/secret-fixtures';
import { waitFor as pollUntil } from '../support/wait-for';

const LABEL = { CURRENT: { $case: 'label' as const, value: SecretLabel.SECRET_LABEL_CURRENT } };
const label = (value: SecretLabel) => ({ $case: 'label' as const, value });
const version = (value: number) => ({ $case: 'version' as const, value });

describe('EVI047 Secrets & certificate lifecycle (K-V1)', () => {
  let db: TestBackendDatabase;
  let kernel: TestKernel;
  /** Every kernel this file started (their logs are searched for values in [E]). */
  const kernels: TestKernel[] = [];
  const clients: SecretClient[] = [];
  /** Every secret value sent to the kernel in this file: none may appear in a log line or audit row. */
  const usedValues: string[] = [];
  const secretValue = (prefix: string) => {
    const value = `${prefix}-${randomBytes(16).toString('hex')}`;
    usedValues.push(value);
    return Buffer.from(value, 'utf8');
  };
  const keys = { 1: masterKey() };

  beforeAll(async () => {
    db = await createBackendDatabase();
    kernel = await startTestKernel({ databaseUrl: db.url, env: masterKeyEnv(keys) });
    kernels.push(kernel);
  });

  afterAll(async () => {
    clients.forEach(closeKernelClient);
    for (const k of kernels) await k.stop().catch(() => undefined);
    await db?.close();
  });

  const clientFor = async (tenant: string, options: { kernel?: TestKernel; sub?: string; scope?: string } = {}) => {
    const k = options.kernel ?? kernel;
    const client = createSecretClient({ address: k.address, tenantId: tenant, maxAttempts: 1, token: await k.token({ tenants: [tenant], sub: options.sub, scope: options.scope }) });
    clients.push(client);
    return client;
  };
  const opaque = (secretId: string, extra: Record<string, unknown> = {}) => ({ secret: { secretId, kind: SecretKind.SECRET_KIND_OPAQUE, ...extra } });
  const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');

  test('[A] round trip; the database holds only ciphertext; ciphertext copied onto another tenant\'s or secret\'s row fails to decrypt (DATA_LOSS, alarm with the trace id)', async () => {
    const a = await clientFor('tenant-a');
    const b = await clientFor('tenant-b');
    await a.createSecret(opaque('db-password'));
    const valueA = secretValue('alpha');
    const added = await a.addSecretVersion({ secretId: 'db-password', value: valueA, expectedLatestVersion: 0 });
    expect(added.version).toMatchObject({ version: 1, state: SecretVersionState.SECRET_VERSION_STATE_ENABLED, labels: [SecretLabel.SECRET_LABEL_CURRENT], valueSizeBytes: valueA.length });
    expect(added.version).not.toHaveProperty('value');

    const byLabel = await a.accessSecretVersion({ secretId: 'db-password', selector: LABEL.CURRENT });
    const byNumber = await a.accessSecretVersion({ secretId: 'db-password', selector: version(1) });
    expect(text(byLabel.value)).toBe(valueA.toString('utf8'));
    expect(text(byNumber.value)).toBe(valueA.toString('utf8'));
    expect(byNumber.version).toMatchObject({ version: 1, labels: [SecretLabel.SECRET_LABEL_CURRENT] });

    // Tenant B holds a secret of the same name; tenant A a second secret.
    await b.createSecret(opaque('db-password'));
    await b.addSecretVersion({ secretId: 'db-password', value: secretValue('bravo') });
    await a.createSecret(opaque('other'));
    await a.addSecretVersion({ secretId: 'other', value: secretValue('other') });

    await asSuperuser(db.url, async (sql) => {
      // Only ciphertext: no row of any table holds a value in any encoding.
      const dump = await dumpAllTables(sql);
      expect(dump).toContain('secret_version:');
      for (const v of usedValues) for (const form of valueForms(v)) expect(dump).not.toContain(form);
      const { rows } = await sql.query('SELECT ciphertext, wrapped_key, kek_version FROM secret_version');
      expect(rows.length).toBe(3);
      for (const row of rows) {
        expect(row.ciphertext.length).toBeGreaterThan(28);
        expect(row.kek_version).toBe(1);
      }
      if (TEST_BACKEND === 'postgres') {
        // The raw heap pages on disk (and the TOAST relation), after a checkpoint wrote them.
        await sql.query('CHECKPOINT');
        const files = await sql.query<{ path: string }>(
          `SELECT pg_relation_filepath(c.oid) AS path FROM pg_class c WHERE c.oid = 'secret_version'::regclass
           UNION ALL SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c WHERE c.oid = 'secret_version'::regclass AND c.reltoastrelid <> 0`,
        );
        for (const { path } of files.rows) {
          const { rows: [file] } = await sql.query<{ bytes: Buffer }>('SELECT pg_read_binary_file($1) AS bytes', [path]);
          for (const v of usedValues) expect(file.bytes.includes(Buffer.from(v, 'utf8'))).toBe(false);
        }
        expect(files.rows.length).toBeGreaterThan(0);
      }

      // Tenant A's ciphertext and wrapped key copied onto tenant B's row, and onto A's other secret.
      await sql.query(
        `UPDATE secret_version t SET ciphertext = s.ciphertext, wrapped_key = s.wrapped_key, kek_version = s.kek_version
           FROM secret_version s
          WHERE s.tenant_id = 'tenant-a' AND s.secret_id = 'db-password' AND s.version = 1
            AND ((t.tenant_id = 'tenant-b' AND t.secret_id = 'db-password') OR (t.tenant_id = 'tenant-a' AND t.secret_id = 'other'))`,
      );
    });

    for (const [client, secretId] of [[b, 'db-password'], [a, 'other']] as const) {
      const refused = await refusal(client.accessSecretVersion({ secretId, selector: version(1) }));
      expect([refused.code, refused.reason]).toEqual([Status.DATA_LOSS, 'CIPHERTEXT_BINDING_MISMATCH']);
      expect(refused.traceId).toMatch(/^[0-9a-f]{32}$/);
      const alarms = kernel.logs.entries().filter((e) => e.level === 'error' && e.trace_id === refused.traceId && String(e.msg).startsWith('ALARM'));
      expect(alarms.length).toBeGreaterThan(0);
    }
    // The genuine row still reads.
    expect(text((await a.accessSecretVersion({ secretId: 'db-password', selector: LABEL.CURRENT })).value)).toBe(valueA.toString('utf8'));
  });

  test('[B] rotation with overlap: PREVIOUS readable during the grace period and refused after; CAS mismatch refused', async () => {
    const c = await clientFor('tenant-rot');
    await c.createSecret(opaque('api-key'));
    const v1 = secretValue('v1');
    const v2 = secretValue('v2');
    await c.addSecretVersion({ secretId: 'api-key', value: v1 });

    const pending = await c.startRotation({ secretId: 'api-key', value: v2, expectedLatestVersion: 1 });
    expect(pending.version).toMatchObject({ version: 2, labels: [SecretLabel.SECRET_LABEL_PENDING] });
    expect(text((await c.accessSecretVersion({ secretId: 'api-key', selector: label(SecretLabel.SECRET_LABEL_PENDING) })).value)).toBe(v2.toString());
    expect(text((await c.accessSecretVersion({ secretId: 'api-key', selector: LABEL.CURRENT })).value)).toBe(v1.toString());
    const busy = await refusal(c.startRotation({ secretId: 'api-key', value: secretValue('v3') }));
    expect([busy.code, busy.reason]).toEqual([Status.FAILED_PRECONDITION, 'ROTATION_IN_PROGRESS']);

    const promoted = await c.promoteVersion({ secretId: 'api-key', version: 2, gracePeriod: { seconds: 3600, nanos: 0 } });
    expect(promoted.secret).toMatchObject({ currentVersion: 2, previousVersion: 1, pendingVersion: 0, latestVersion: 2 });
    // During the grace period PREVIOUS (and version 1 by number) still reads, next to the new CURRENT.
    expect(text((await c.accessSecretVersion({ secretId: 'api-key', selector: label(SecretLabel.SECRET_LABEL_PREVIOUS) })).value)).toBe(v1.toString());
    expect(text((await c.accessSecretVersion({ secretId: 'api-key', selector: version(1) })).value)).toBe(v1.toString());
    expect(text((await c.accessSecretVersion({ secretId: 'api-key', selector: LABEL.CURRENT })).value)).toBe(v2.toString());
    const { versions } = await c.listSecretVersions({ secretId: 'api-key' });
    expect(versions.map((v) => [v.version, v.labels])).toEqual([
      [2, [SecretLabel.SECRET_LABEL_CURRENT]],
      [1, [SecretLabel.SECRET_LABEL_PREVIOUS]],
    ]);
    // The grace period runs from the promotion (both times come from one transaction's clock).
    expect(versions[1].retireTime!.getTime() - promoted.secret!.currentSinceTime!.getTime()).toBe(3600_000);

    // After the grace period PREVIOUS is refused, by label and by number (a 1-second grace here).
    await c.createSecret(opaque('short-grace'));
    const old = secretValue('old');
    const fresh = secretValue('fresh');
    await c.addSecretVersion({ secretId: 'short-grace', value: old });
    await c.startRotation({ secretId: 'short-grace', value: fresh });
    await c.promoteVersion({ secretId: 'short-grace', version: 2, gracePeriod: { seconds: 1, nanos: 0 } });
    await waitFor(async () => {
      const refused = await refusal(c.accessSecretVersion({ secretId: 'short-grace', selector: label(SecretLabel.SECRET_LABEL_PREVIOUS) })).catch(() => undefined);
      return refused?.reason === 'GRACE_PERIOD_EXPIRED';
    });
    for (const selector of [label(SecretLabel.SECRET_LABEL_PREVIOUS), version(1)]) {
      const refused = await refusal(c.accessSecretVersion({ secretId: 'short-grace', selector }));
      expect([refused.code, refused.reason]).toEqual([Status.FAILED_PRECONDITION, 'GRACE_PERIOD_EXPIRED']);
    }
    expect(text((await c.accessSecretVersion({ secretId: 'short-grace', selector: LABEL.CURRENT })).value)).toBe(fresh.toString());

    // Compare-and-set: a writer that saw latest version 1 is refused; one that saw 2 wins.
    const stale = await refusal(c.addSecretVersion({ secretId: 'api-key', value: secretValue('stale'), expectedLatestVersion: 1 }));
    expect([stale.code, stale.reason]).toEqual([Status.FAILED_PRECONDITION, 'CAS_VERSION_MISMATCH']);
    expect(stale.preconditionViolations.map((v) => v.type)).toEqual(['CAS_VERSION_MISMATCH']);
    expect((await c.getSecret({ secretId: 'api-key' })).secret).toMatchObject({ latestVersion: 2, currentVersion: 2 });
    // Two writers racing with the same expectation: exactly one wins.
    const race = await Promise.allSettled([3, 4].map(() => c.addSecretVersion({ secretId: 'api-key', value: secretValue('race'), expectedLatestVersion: 2 })));
    expect(race.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const loser = race.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(loser.reason.reason).toBe('CAS_VERSION_MISMATCH');
    // A plain add makes the new version CURRENT and the old one PREVIOUS.
    const latest = (await c.getSecret({ secretId: 'api-key' })).secret!;
    expect(latest).toMatchObject({ latestVersion: 3, currentVersion: 3, previousVersion: 2 });
  });

  test('[C] master-key rotation re-wraps every data key without touching ciphertext; the old KEK is retired; every secret still reads', async () => {
    const rotationDb = await createBackendDatabase();
    const k1 = masterKey();
    const k2 = masterKey();
    const expected = new Map<string, string>();
    try {
      const first = await startTestKernel({ databaseUrl: rotationDb.url, env: masterKeyEnv({ 1: k1 }) });
      kernels.push(first);
      const c1 = await clientFor('tenant-kek', { kernel: first });
      for (const id of ['s1', 's2', 's3']) {
        await c1.createSecret(opaque(id));
        const value = secretValue(id);
        await c1.addSecretVersion({ secretId: id, value });
        expected.set(id, value.toString());
      }
      const s3Next = secretValue('s3-next');
      await c1.addSecretVersion({ secretId: 's3', value: s3Next });
      expected.set('s3', s3Next.toString());
      await c1.destroySecretVersion({ secretId: 's3', version: 1 });
      // The tenant's audit-log key (docs/capabilities/audit.md) is sealed under KEK 1 too, once its first checkpoint is signed.
      await pollUntil(async () =>
        asSuperuser(rotationDb.url, async (sql) => (await sql.query(`SELECT 1 FROM keymaster_key_version WHERE tenant_id = 'tenant-kek' AND alias = 'kernel.audit'`)).rows.length === 1),
      );
      await first.stop();

      // Both keys configured, the new one active: new values are wrapped by version 2.
      const second = await startTestKernel({ databaseUrl: rotationDb.url, env: masterKeyEnv({ 1: k1, 2: k2 }, 2) });
      kernels.push(second);
      const c2 = await clientFor('tenant-kek', { kernel: second });
      await c2.createSecret(opaque('s4'));
      const v4 = secretValue('s4');
      await c2.addSecretVersion({ secretId: 's4', value: v4 });
      expected.set('s4', v4.toString());

      const before = await asSuperuser(rotationDb.url, (sql) =>
        sql.query<{ secret_id: string; version: number; ciphertext: Buffer; wrapped_key: Buffer; kek_version: number }>(
          'SELECT secret_id, version, ciphertext, wrapped_key, kek_version FROM secret_version WHERE ciphertext IS NOT NULL ORDER BY secret_id, version',
        ),
      );
      expect(before.rows.map((r) => r.kek_version)).toEqual([1, 1, 1, 2]);

      // Master-key rotation through the kernel: KeymasterService/RewrapDataKeys re-wraps the
      // tenant's data keys in batches (here 2 per call) until none is left on KEK 1.
      const keys = createKeymasterClient({ address: second.address, tenantId: 'tenant-kek', token: await second.token({ tenants: ['tenant-kek'] }) });
      try {
        let progress = await keys.rewrapDataKeys({ limit: 2 });
        expect(progress).toEqual({ rewrapped: 2, remaining: 2, activeKekVersion: 2 });
        progress = await keys.rewrapDataKeys({ limit: 2 });
        expect(progress).toEqual({ rewrapped: 2, remaining: 0, activeKekVersion: 2 });
      } finally {
        closeKernelClient(keys);
      }
      await second.stop();
      // The operator command covers every tenant and the kernel-wide sealed keys; here only the
      // latter were left.
      const operator = await kernelCli(['keys', 'rewrap'], { DATABASE_URL: rotationDb.url, ...masterKeyEnv({ 1: k1, 2: k2 }, 2) });
      expect(operator.stdout).toContain('re-wrapped 1 data key(s) under master key version 2');

      const after = await asSuperuser(rotationDb.url, (sql) =>
        sql.query<{ secret_id: string; version: number; ciphertext: Buffer; wrapped_key: Buffer; kek_version: number | null }>(
          'SELECT secret_id, version, ciphertext, wrapped_key, kek_version FROM secret_version ORDER BY secret_id, version',
        ),
      );
      const sealed = after.rows.filter((r) => r.ciphertext !== null);
      expect(sealed.map((r) => r.kek_version)).toEqual([2, 2, 2, 2]);
      sealed.forEach((row, i) => {
        expect(row.ciphertext.equals(before.rows[i].ciphertext)).toBe(true); // values untouched
        if (before.rows[i].kek_version === 1) expect(row.wrapped_key.equals(before.rows[i].wrapped_key)).toBe(false);
      });
      expect(after.rows.find((r) => r.secret_id === 's3' && r.version === 1)).toMatchObject({ ciphertext: null, wrapped_key: null, kek_version: null });

      // Retire KEK 1: only version 2 configured. Every secret still reads.
      const third = await startTestKernel({ databaseUrl: rotationDb.url, env: masterKeyEnv({ 2: k2 }) });
      kernels.push(third);
      const c3 = await clientFor('tenant-kek', { kernel: third });
      for (const [id, value] of expected) {
        expect(text((await c3.accessSecretVersion({ secretId: id, selector: LABEL.CURRENT })).value)).toBe(value);
      }
      const destroyed = await refusal(c3.accessSecretVersion({ secretId: 's3', selector: version(1) }));
      expect([destroyed.code, destroyed.reason]).toEqual([Status.FAILED_PRECONDITION, 'VERSION_DESTROYED']);
      await third.stop();
    } finally {
      await rotationDb.close();
    }
  });

  test('[D] a PEM certificate expiring in 10 days appears in ListExpiring(30d); malformed PEM is INVALID_ARGUMENT', async () => {
    const c = await clientFor('tenant-certs');
    const soon = opensslCertificate(10, 'soon.example');
    const later = opensslCertificate(90, 'later.example');
    usedValues.push(soon.privateKey, later.privateKey);
    for (const [id, pem] of [['tls-soon', soon], ['tls-later', later]] as const) {
      await c.createSecret({ secret: { secretId: id, kind: SecretKind.SECRET_KIND_CERTIFICATE } });
      const added = await c.addSecretVersion({ secretId: id, value: Buffer.from(`${pem.certificate}${pem.privateKey}`) });
      expect(added.version!.certificate).toMatchObject({ subject: `CN=${id === 'tls-soon' ? 'soon' : 'later'}.example` });
    }
    // A credential due for rotation within the window is listed too (rotation period 1 hour).
    await c.createSecret({ secret: { secretId: 'svc-cred', kind: SecretKind.SECRET_KIND_CREDENTIAL, rotationPeriod: { seconds: 3600, nanos: 0 } } });
    await c.addSecretVersion({ secretId: 'svc-cred', value: secretValue('cred') });

    const { secrets } = await c.listExpiring({ within: { seconds: 30 * 86400, nanos: 0 } });
    const notAfter = new Date(new X509Certificate(soon.certificate).validTo);
    expect(secrets).toEqual([
      expect.objectContaining({ secretId: 'svc-cred', reason: ExpiryReason.EXPIRY_REASON_ROTATION_DUE, version: 1, overdue: false }),
      { secretId: 'tls-soon', kind: SecretKind.SECRET_KIND_CERTIFICATE, reason: ExpiryReason.EXPIRY_REASON_CERTIFICATE_NOT_AFTER, version: 1, dueTime: notAfter, overdue: false },
    ]);
    // A narrower window, and paging one at a time, see the same order.
    expect((await c.listExpiring({ within: { seconds: 60, nanos: 0 } })).secrets).toEqual([]);
    const page1 = await c.listExpiring({ within: { seconds: 30 * 86400, nanos: 0 }, pageSize: 1 });
    const page2 = await c.listExpiring({ within: { seconds: 30 * 86400, nanos: 0 }, pageSize: 1, pageToken: page1.nextPageToken });
    expect([...page1.secrets, ...page2.secrets].map((s) => s.secretId)).toEqual(['svc-cred', 'tls-soon']);
    expect(page2.nextPageToken).toBe('');
    // Another tenant sees none of it.
    expect((await (await clientFor('tenant-certs-other')).listExpiring({ within: { seconds: 30 * 86400, nanos: 0 } })).secrets).toEqual([]);

    const der = new X509Certificate(soon.certificate).raw;
    const body = soon.certificate.split('\n').slice(1, -2).join('\n');
    for (const malformed of [
      Buffer.from('not a certificate'),
      Buffer.from(`-----BEGIN CERTIFICATE-----\n${body.slice(0, 40)}garbage\n-----END CERTIFICATE-----\n`),
      Buffer.from(`-----BEGIN CERTIFICATE-----\n${body}\n`),
      Buffer.from(soon.privateKey),
      der,
      Buffer.from(`junk before\n${soon.certificate}`),
    ]) {
      const refused = await refusal(c.addSecretVersion({ secretId: 'tls-soon', value: malformed }));
      expect([refused.code, refused.reason]).toEqual([Status.INVALID_ARGUMENT, 'CERTIFICATE_INVALID']);
    }
    expect((await c.getSecret({ secretId: 'tls-soon' })).secret).toMatchObject({ latestVersion: 1 });
  });

  test('[E] every access is audited (who, which version, trace id) and no value appears in any log line or audit row; tenant isolation', async () => {
    const owner = await clientFor('tenant-e', { sub: 'alice' });
    await owner.createSecret(opaque('signing-seed'));
    await owner.addSecretVersion({ secretId: 'signing-seed', value: secretValue('e1') });
    await owner.addSecretVersion({ secretId: 'signing-seed', value: secretValue('e2') });

    const reader = await clientFor('tenant-e', { sub: 'bob', scope: 'secrets:access' });
    const traces: Array<{ traceId: string; version: number; label: string | null }> = [];
    for (const [selector, expectedVersion, labelName] of [
      [LABEL.CURRENT, 2, 'CURRENT'],
      [label(SecretLabel.SECRET_LABEL_PREVIOUS), 1, 'PREVIOUS'],
      [version(2), 2, null],
    ] as const) {
      let trailer: Metadata | undefined;
      const response = await reader.accessSecretVersion({ secretId: 'signing-seed', selector }, { onTrailer: (t) => (trailer = t) });
      expect(response.version!.version).toBe(expectedVersion);
      traces.push({ traceId: readResponseInfo(trailer!).traceId!, version: expectedVersion, label: labelName });
    }

    // Scopes: metadata reads need secrets:read, values secrets:access.
    const metadataOnly = await clientFor('tenant-e', { sub: 'carol', scope: 'secrets:read' });
    expect((await metadataOnly.getSecret({ secretId: 'signing-seed' })).secret!.latestVersion).toBe(2);
    const denied = await refusal(metadataOnly.accessSecretVersion({ secretId: 'signing-seed', selector: LABEL.CURRENT }));
    expect([denied.code, denied.reason]).toEqual([Status.PERMISSION_DENIED, 'SCOPE_MISSING']);

    // A refused access is audited too (DENIED, with the reason), in its own transaction.
    const missing = await refusal(reader.accessSecretVersion({ secretId: 'signing-seed', selector: version(9) }));
    expect([missing.code, missing.reason]).toEqual([Status.NOT_FOUND, 'SECRET_VERSION_NOT_FOUND']);

    // Tenant isolation: another tenant's calls on the same name answer NOT_FOUND.
    const intruder = await clientFor('tenant-e-intruder');
    for (const call of [
      () => intruder.getSecret({ secretId: 'signing-seed' }),
      () => intruder.accessSecretVersion({ secretId: 'signing-seed', selector: LABEL.CURRENT }),
      () => intruder.accessSecretVersion({ secretId: 'signing-seed', selector: version(1) }),
      () => intruder.listSecretVersions({ secretId: 'signing-seed' }),
      () => intruder.addSecretVersion({ secretId: 'signing-seed', value: secretValue('intruder') }),
      () => intruder.startRotation({ secretId: 'signing-seed', value: secretValue('intruder') }),
      () => intruder.promoteVersion({ secretId: 'signing-seed', version: 1 }),
      () => intruder.disableSecretVersion({ secretId: 'signing-seed', version: 1 }),
      () => intruder.destroySecretVersion({ secretId: 'signing-seed', version: 1 }),
    ]) {
      const refused = await refusal(call());
      expect([refused.code, refused.reason]).toEqual([Status.NOT_FOUND, 'SECRET_NOT_FOUND']);
    }
    expect((await intruder.listSecrets({})).secrets).toEqual([]);

    await asSuperuser(db.url, async (sql) => {
      const { rows } = await sql.query<{ principal: string; resource: string; trace_id: string; detail: Record<string, unknown>; outcome: string }>(
        `SELECT principal, resource, trace_id, detail, outcome FROM kernel_audit_event
          WHERE tenant_id = 'tenant-e' AND action = 'axis.kernel.secrets.v1.SecretService/AccessSecretVersion' ORDER BY event_id`,
      );
      expect(rows.filter((r) => r.outcome === 'OK')).toEqual(
        traces.map((t) => ({
          principal: 'bob',
          resource: `secrets/signing-seed/versions/${t.version}`,
          trace_id: t.traceId,
          detail: { version: t.version, requested_label: t.label },
          outcome: 'OK',
        })),
      );
      expect(rows.filter((r) => r.outcome === 'DENIED').map((r) => [r.principal, r.detail.reason])).toEqual([
        ['carol', 'SCOPE_MISSING'],
        ['bob', 'SECRET_VERSION_NOT_FOUND'],
      ]);

      // No value, in any encoding, in any audit row, idempotency record or log line of any kernel of this file.
      const audit = (await sql.query<{ line: string }>('SELECT t::text AS line FROM kernel_audit_event t')).rows.map((r) => r.line).join('\n');
      const records = (await sql.query<{ line: string }>('SELECT t::text AS line FROM kernel_idempotency_record t')).rows.map((r) => r.line).join('\n');
      const logs = kernels.map((k) => k.logs.text()).join('\n');
      expect(audit).toContain('AccessSecretVersion');
      expect(logs).toContain('AccessSecretVersion');
      expect(usedValues.length).toBeGreaterThan(15);
      for (const value of usedValues) {
        for (const form of valueForms(value)) {
          expect(audit.includes(form)).toBe(false);
          expect(records.includes(form)).toBe(false);
          expect(logs.includes(form)).toBe(false);
        }
      }
    });
  });
});

/** This file's polling: up to 30 s, every 250 ms. */
const waitFor = (condition: () => Promise<boolean>, timeoutMs = 30_000) => pollUntil(condition, timeoutMs, 250);
