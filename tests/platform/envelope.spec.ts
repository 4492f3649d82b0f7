import { createHash, randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { closeKernelClient, createSequenceClient } from '../../clients/src';
import { ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { CreateSeriesRequest } from '../../gen/proto/axis/kernel/sequences/v1/sequence_service';
import { Status } from 'nice-grpc-common';
import { ConfigError, loadConfig } from '../../services/platform/config';
import { Envelope, type EnvelopeBinding } from '../../services/platform/crypto/envelope';
import { MasterKeyError, masterKeyRing, type MasterKey } from '../../services/platform/crypto/master-keys';
import { KernelError } from '../../services/platform/kernel-error';
import { createLogger } from '../../services/platform/observability/logger';
import { LogCapture, startTestKernel } from '../support/test-kernel';

const key = (version: number): MasterKey => ({ version, key: randomBytes(32) });
const ring = (...keys: MasterKey[]) => masterKeyRing(new Map(keys.map((k) => [k.version, k])));
const binding: EnvelopeBinding = { tenantId: 'tenant-1', purpose: 'secret', resource: 'secrets/db-password', version: 3 };

function refusedWith(fn: () => unknown): KernelError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(KernelError);
    return error as KernelError;
  }
  throw new Error('expected a refusal');
}

describe('envelope encryption', () => {
  const logs = new LogCapture();
  const alarm = { traceId: 'a'.repeat(32), log: createLogger('info', logs) };
  const v1 = key(1);
  const v2 = key(2);

  it('round-trips with a fresh data key per value; the ciphertext reveals nothing of the plaintext', () => {
    const envelope = new Envelope(ring(v1));
    const plaintext = Buffer.from('correct horse battery staple');
    const a = envelope.seal(plaintext, binding);
    const b = envelope.seal(plaintext, binding);
    expect(a.kekVersion).toBe(1);
    expect(a.ciphertext.equals(b.ciphertext)).toBe(false);
    expect(a.wrappedKey.equals(b.wrappedKey)).toBe(false);
    expect(a.ciphertext.includes(plaintext)).toBe(false);
    expect(envelope.open(a, binding, alarm)).toEqual(plaintext);
  });

  it.each([
    ['tenant', { tenantId: 'tenant-2' }],
    ['purpose', { purpose: 'signing-key' as const }],
    ['resource', { resource: 'secrets/other' }],
    ['version', { version: 4 }],
  ])('refuses a value opened under another %s with DATA_LOSS and an alarm naming the trace', (_name, change) => {
    const envelope = new Envelope(ring(v1));
    const sealed = envelope.seal(Buffer.from('value'), binding);
    const before = logs.lines.length;
    const error = refusedWith(() => envelope.open(sealed, { ...binding, ...change }, alarm));
    expect([error.code, error.reason]).toEqual([Status.DATA_LOSS, 'CIPHERTEXT_BINDING_MISMATCH']);
    const alarms = logs.entries().slice(before);
    expect(alarms).toEqual([expect.objectContaining({ level: 'error', trace_id: alarm.traceId })]);
  });

  it('refuses altered bytes and a data key swapped in from another row', () => {
    const envelope = new Envelope(ring(v1));
    const sealed = envelope.seal(Buffer.from('value'), binding);
    const other = envelope.seal(Buffer.from('value'), { ...binding, resource: 'secrets/other' });
    const flipped = Buffer.from(sealed.ciphertext);
    flipped[flipped.length - 1] ^= 1;
    for (const bad of [{ ...sealed, ciphertext: flipped }, { ...sealed, wrappedKey: other.wrappedKey }, { ...sealed, ciphertext: Buffer.alloc(3) }]) {
      expect(refusedWith(() => envelope.open(bad, binding, alarm)).reason).toBe('CIPHERTEXT_BINDING_MISMATCH');
    }
  });

  it('re-wraps a data key under the active master key without touching the value; the old key can then be retired', () => {
    const old = new Envelope(ring(v1));
    const sealed = old.seal(Buffer.from('value'), binding);
    const rotating = new Envelope(masterKeyRing(new Map([[1, v1], [2, v2]]), 2));
    const next = rotating.rewrap(sealed, binding, alarm)!;
    expect(next.kekVersion).toBe(2);
    expect(rotating.rewrap({ ...sealed, ...next }, binding, alarm)).toBeUndefined();
    const retired = new Envelope(ring(v2));
    expect(retired.open({ ciphertext: sealed.ciphertext, ...next }, binding, alarm)).toEqual(Buffer.from('value'));
    const missing = refusedWith(() => retired.open(sealed, binding, alarm));
    expect([missing.code, missing.reason]).toEqual([Status.FAILED_PRECONDITION, 'MASTER_KEY_UNAVAILABLE']);
  });

  it('reads KERNEL_MASTER_KEYS strictly and demands it in production', () => {
    const good = JSON.stringify({ 1: v1.key.toString('base64'), 7: v2.key.toString('base64') });
    const config = loadConfig({ KERNEL_MASTER_KEYS: good, KERNEL_MASTER_KEY_ACTIVE: '7' });
    expect([...config.KERNEL_MASTER_KEYS!.keys()]).toEqual([1, 7]);
    expect(masterKeyRing(config.KERNEL_MASTER_KEYS!).active.version).toBe(7);
    for (const env of [
      { KERNEL_MASTER_KEYS: 'not json' },
      { KERNEL_MASTER_KEYS: JSON.stringify({ 1: randomBytes(16).toString('base64') }) },
      { KERNEL_MASTER_KEYS: JSON.stringify({ zero: v1.key.toString('base64') }) },
      { KERNEL_MASTER_KEYS: '{}' },
      { KERNEL_MASTER_KEYS: good, KERNEL_MASTER_KEY_ACTIVE: '3' },
      { KERNEL_ENV: 'production', KERNEL_AUTH_SECRET: 'x'.repeat(32) },
    ]) {
      expect(() => loadConfig(env)).toThrow(ConfigError);
    }
    expect(() => loadConfig({ KERNEL_ENV: 'production', KERNEL_AUTH_SECRET: 'x'.repeat(32) })).toThrow(/KERNEL_MASTER_KEYS/);
  });

  it('keys request digests with one sealed kernel-wide key: the same on every node, no plain hash of the request', async () => {
    const first = await startTestKernel();
    const second = await startTestKernel({ databaseUrl: first.databaseUrl });
    try {
      const request = { seriesId: 'dg', pattern: 'D{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' };
      const key = 'same-key-on-both-nodes';
      const onFirst = createSequenceClient({ address: first.address, tenantId: 'digests', token: await first.token({ tenants: ['digests'] }) });
      const onSecond = createSequenceClient({ address: second.address, tenantId: 'digests', token: await second.token({ tenants: ['digests'] }) });
      let replayed = '';
      await onFirst.createSeries({ series: request }, { idempotencyKey: key });
      // The other node computes the same keyed hash: the retry is a replay, not IDEMPOTENCY_KEY_REUSED.
      await onSecond.createSeries({ series: request }, { idempotencyKey: key, onTrailer: (t) => (replayed = t.get('idempotent-replayed') ?? '') });
      expect(replayed).toBe('true');
      closeKernelClient(onFirst);
      closeKernelClient(onSecond);

      const sql = new Client({ connectionString: first.databaseUrl });
      await sql.connect();
      const { rows } = await sql.query(`SELECT request_digest FROM kernel_audit_event WHERE tenant_id = 'digests' AND principal <> 'system:kernel'`);
      const sealed = await sql.query(`SELECT ciphertext FROM kernel_sealed_key WHERE name = 'request-digest'`);
      await sql.end();
      const path = '/axis.kernel.sequences.v1.SequenceService/CreateSeries';
      const bytes = CreateSeriesRequest.encode(CreateSeriesRequest.fromPartial({ series: request })).finish();
      const plain = createHash('sha256').update(path).update('\0').update(bytes).digest('hex');
      expect(rows).toEqual([{ request_digest: expect.stringMatching(/^[0-9a-f]{64}$/) }]);
      expect(rows[0].request_digest).not.toBe(plain);
      expect(sealed.rows).toHaveLength(1);
    } finally {
      await second.stop();
      await first.stop();
    }
  });

  it('refuses to start a node whose master key differs from the one the database knows under that version', async () => {
    const first = await startTestKernel({ env: { KERNEL_MASTER_KEYS: JSON.stringify({ 1: v1.key.toString('base64') }) } });
    try {
      await expect(
        startTestKernel({ databaseUrl: first.databaseUrl, env: { KERNEL_MASTER_KEYS: JSON.stringify({ 1: v2.key.toString('base64') }) } }),
      ).rejects.toThrow(MasterKeyError);
      // A new version beside the known one is fine.
      const second = await startTestKernel({
        databaseUrl: first.databaseUrl,
        env: { KERNEL_MASTER_KEYS: JSON.stringify({ 1: v1.key.toString('base64'), 2: v2.key.toString('base64') }) },
      });
      await second.stop();
    } finally {
      await first.stop();
    }
  });
});
