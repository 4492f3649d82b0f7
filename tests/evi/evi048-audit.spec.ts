import { createHash, createPublicKey, generateKeyPairSync, randomBytes, randomUUID, sign as signBytes, verify as verifySignature, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Status, Metadata } from 'nice-grpc-common';
import { Client } from 'pg';
import { closeKernelClient, createKernelClient, createKeymasterClient, createSequenceClient, type KernelClient } from '../../clients/src';
import { AuditOutcome, ProblemKind } from '../../gen/proto/axis/kernel/audit/v1/audit';
import { AuditServiceDefinition } from '../../gen/proto/axis/kernel/audit/v1/audit_service';
import { Algorithm } from '../../gen/proto/axis/kernel/keymaster/v1/key';
import { ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { kernelCli } from '../support/kernel-cli';
import { refusal } from '../support/refusal';
import { createBackendDatabase, startTestKernel, TEST_BACKEND, type TestBackendDatabase, type TestKernel } from '../support/test-kernel';
import { waitFor } from '../support/wait-for';

/*
 * EVI048 — audit immutability (docs/capabilities/audit.md). Everything that checks a proof or a signature here is
 * written in this file from RFC 6962 / RFC 9162 and c2sp.org/signed-note, and shares no code
 * with the kernel's tree (services/audit): leaf and node hashes, the Merkle tree head, the
 * inclusion and consistency verification, and the checkpoint note's Ed25519 signature, checked
 * with the public key the Keymaster publishes.
 */

// ---- the independent verifier ------------------------------------------------------------
const sha256 = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
const leafHashOf = (data: Buffer) => sha256(Buffer.from([0x00]), data);
const nodeHashOf = (l: Buffer, r: Buffer) => sha256(Buffer.from([0x01]), l, r);
const largestPowerOfTwoBelow = (n: number) => 2 ** Math.floor(Math.log2(n - 1));

/** RFC 6962 §2.1 MTH(D[n]) over leaf hashes. */
function treeHead(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0];
  const k = largestPowerOfTwoBelow(leaves.length);
  return nodeHashOf(treeHead(leaves.slice(0, k)), treeHead(leaves.slice(k)));
}

/** RFC 9162 §2.1.3.2: verify an inclusion proof. */
function inclusionVerifies(index: number, size: number, leaf: Buffer, path: Buffer[], root: Buffer): boolean {
  if (index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHashOf(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      r = nodeHashOf(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 §2.1.4.2: verify a consistency proof. */
function consistencyVerifies(first: number, second: number, firstRoot: Buffer, secondRoot: Buffer, proof: Buffer[]): boolean {
  if (first === second) return proof.length === 0 && firstRoot.equals(secondRoot);
  if (proof.length === 0 || first > second) return false;
  const path = Number.isInteger(Math.log2(first)) ? [firstRoot, ...proof] : [...proof];
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn >>= 1;
    sn >>= 1;
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHashOf(c, fr);
      sr = nodeHashOf(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      sr = nodeHashOf(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn === 0 && fr.equals(firstRoot) && sr.equals(secondRoot);
}

/** c2sp.org/signed-note: an Ed25519 key's raw 32 bytes, and its key id (SHA-256(name || "\n" || 0x01 || key)[:4]). */
const rawEd25519 = (key: string | KeyObject) =>
  Buffer.from((typeof key === 'string' ? createPublicKey(key) : key).export({ format: 'jwk' }).x!, 'base64url');
const noteKeyId = (name: string, pem: string | KeyObject) => sha256(Buffer.from(`${name}\n`), Buffer.from([0x01]), rawEd25519(pem)).subarray(0, 4);
/** The golang.org/x/mod/sumdb/note verifier key `<name>+<hex key id>+<base64(0x01 || key)>` of a PEM public key. */
const noteVerifierKey = (name: string, pem: string) =>
  `${name}+${noteKeyId(name, pem).toString('hex')}+${Buffer.concat([Buffer.from([0x01]), rawEd25519(pem)]).toString('base64')}`;
/** A signed note over `body` by a key of the caller's own (an attacker's, in the proofs below). */
function signedNote(body: string, name: string, privateKey: KeyObject): string {
  const signature = signBytes(null, Buffer.from(body), privateKey);
  return `${body}\n\u2014 ${name} ${Buffer.concat([noteKeyId(name, createPublicKey(privateKey)), signature]).toString('base64')}\n`;
}

/** c2sp.org/signed-note + tlog-checkpoint, Ed25519: returns the checkpoint if the signature by `pem` holds. */
function openCheckpoint(note: string, name: string, pem: string): { origin: string; size: number; root: Buffer } | undefined {
  const split = note.lastIndexOf('\n\n');
  const body = note.slice(0, split + 1);
  const keyId = noteKeyId(name, pem);
  for (const line of note.slice(split + 2).split('\n').filter(Boolean)) {
    const [dash, signer, b64] = line.split(' ');
    const bytes = Buffer.from(b64 ?? '', 'base64');
    if (dash !== '\u2014' || signer !== name || !bytes.subarray(0, 4).equals(keyId)) continue;
    if (!verifySignature(null, Buffer.from(body), createPublicKey(pem), bytes.subarray(4))) return undefined;
    const [origin, size, root] = body.split('\n');
    return { origin, size: Number(size), root: Buffer.from(root, 'base64') };
  }
  return undefined;
}
// -----------------------------------------------------------------------------------------------

type AuditClient = KernelClient<typeof AuditServiceDefinition>;

describe('EVI048 Audit immutability (K-W1)', () => {
  let db: TestBackendDatabase;
  let kernel: TestKernel;
  let su: Client;
  const clients: Array<{ close?: () => void } & object> = [];

  beforeAll(async () => {
    db = await createBackendDatabase();
    kernel = await startTestKernel({ databaseUrl: db.url, env: { KERNEL_AUDIT_MIN_RETENTION_SECONDS: '1' } });
    su = new Client({ connectionString: db.url });
    await su.connect();
  });

  afterAll(async () => {
    clients.forEach((c) => closeKernelClient(c as never));
    await su?.end();
    await kernel?.stop();
    await db?.close();
  });

  const auditClient = async (tenant: string, scope?: string): Promise<AuditClient> => {
    const client = createKernelClient(AuditServiceDefinition, { address: kernel.address, tenantId: tenant, maxAttempts: 1, token: await kernel.token({ tenants: [tenant], scope }) });
    clients.push(client);
    return client;
  };
  const publicKeyPem = async (tenant: string, version: number) => {
    const keys = createKeymasterClient({ address: kernel.address, tenantId: tenant, maxAttempts: 1, token: await kernel.token({ tenants: [tenant] }) });
    clients.push(keys);
    return (await keys.getPublicKey({ keyId: 'kernel.audit', version })).publicKey!.pem;
  };
  const origin = (tenant: string) => `kernel.axis/audit/${tenant}`;

  /** Waits until every committed event of the tenant is in its log and covered by a signed checkpoint; returns the log size. */
  const settled = async (tenant: string): Promise<number> => {
    let size = 0;
    await waitFor(async () => {
      const { rows } = await su.query(
        `SELECT (SELECT count(*) FROM kernel_audit_event e WHERE e.tenant_id = $1
                   AND NOT EXISTS (SELECT 1 FROM kernel_audit_sequence s WHERE s.tenant_id = e.tenant_id AND s.event_id = e.event_id))::int AS pending,
                (SELECT coalesce(max(seq), 0) FROM kernel_audit_sequence WHERE tenant_id = $1)::int AS size,
                (SELECT coalesce(max(tree_size), 0) FROM kernel_audit_checkpoint WHERE tenant_id = $1)::int AS signed`,
        [tenant],
      );
      size = rows[0].size;
      return rows[0].pending === 0 && size > 0 && rows[0].signed === size;
    }, 60_000);
    return size;
  };

  /** Every leaf hash of the tenant's log, recomputed here from the entries' leaf data (ListEvents). */
  const leavesOf = async (client: AuditClient): Promise<Buffer[]> => {
    const leaves: Buffer[] = [];
    let pageToken = '';
    do {
      const page = await client.listEvents({ pageSize: 500, pageToken });
      for (const e of page.events) {
        expect(e.seq).toBe(leaves.length + 1); // gap-free, in order
        leaves.push(leafHashOf(Buffer.from(e.leafData, 'utf8')));
        expect(leaves[leaves.length - 1].equals(Buffer.from(e.leafHash))).toBe(true);
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    return leaves;
  };

  const events = (n: number, prefix = 'e') =>
    Array.from({ length: n }, (_, i) => ({ action: 'ledger.JournalPosted', resource: `journals/${prefix}-${i}`, outcome: AuditOutcome.AUDIT_OUTCOME_OK, detail: { amount_minor: i, currency: 'EUR' } }));

  test('[A] 10,000 appends verify end to end: gap-free seqs, recomputed leaves and tree head equal the signed checkpoint, VerifyLog agrees', async () => {
    const client = await auditClient('tenant-a');
    const ids: string[] = [];
    for (let call = 0; call < 20; call++) ids.push(...(await client.appendEvents({ events: events(500, `c${call}`) })).eventIds);
    expect(new Set(ids).size).toBe(10_000);
    const size = await settled('tenant-a');
    expect(size).toBeGreaterThanOrEqual(10_000);

    const { checkpoint } = await client.getCheckpoint({});
    expect(checkpoint!.treeSize).toBe(size);
    const pem = await publicKeyPem('tenant-a', checkpoint!.keyVersion);
    const opened = openCheckpoint(checkpoint!.note, origin('tenant-a'), pem);
    expect(opened).toEqual({ origin: origin('tenant-a'), size, root: Buffer.from(checkpoint!.rootHash) });

    const leaves = await leavesOf(client);
    expect(leaves).toHaveLength(size);
    expect(treeHead(leaves).equals(opened!.root)).toBe(true);

    // Each appended event is in the log once, with the call's principal and idempotency key.
    const sample = await client.getEvent({ selector: { $case: 'eventId', value: ids[7_777] } });
    expect(sample.event).toMatchObject({ action: 'ledger.JournalPosted', resource: 'journals/c15-277', principal: 'tester', detail: { amount_minor: 277, currency: 'EUR' } });
    expect(sample.event!.seq).toBeGreaterThan(0);
    expect(sample.event!.idempotencyKey).not.toBe('');

    const verified = await client.verifyLog({ trustedCheckpoint: checkpoint!.note });
    expect(verified).toMatchObject({ ok: true, verifiedSize: size, purgedEntries: 0 });
    expect(verified.checkpointsVerified).toBeGreaterThan(0);
    expect(Buffer.from(verified.rootHash).equals(opened!.root)).toBe(true);
  });

  /** A tenant with `n` appended entries, all signed; returns its client and latest checkpoint. */
  const seededTenant = async (tenant: string, n: number) => {
    const client = await auditClient(tenant);
    await client.appendEvents({ events: events(n, tenant) });
    const size = await settled(tenant);
    const { checkpoint } = await client.getCheckpoint({});
    return { client, size, checkpoint: checkpoint! };
  };
  /** Runs SQL as the PostgreSQL superuser with triggers disabled (what a malicious DBA would do). */
  const tamper = async (statements: (sql: Client) => Promise<unknown>) => {
    await su.query('BEGIN');
    try {
      await su.query('SET LOCAL session_replication_role = replica');
      await statements(su);
      await su.query('COMMIT');
    } catch (error) {
      await su.query('ROLLBACK');
      throw error;
    }
  };
  const eventIdAt = async (tenant: string, seq: number) =>
    (await su.query('SELECT event_id FROM kernel_audit_sequence WHERE tenant_id = $1 AND seq = $2', [tenant, seq])).rows[0].event_id as string;

  test('[B] WORM: the application role cannot UPDATE, DELETE or TRUNCATE audit tables; triggers refuse even the superuser', async () => {
    await seededTenant('tenant-worm', 5);
    const asApp = async (statement: string) => {
      await su.query('BEGIN');
      try {
        await su.query(`SELECT set_config('role', 'axis_kernel_app', true), set_config('axis.tenant_id', 'tenant-worm', true)`);
        await su.query(statement);
        return 'accepted';
      } catch (error) {
        return (error as { code?: string }).code;
      } finally {
        await su.query('ROLLBACK');
      }
    };
    for (const table of ['kernel_audit_event', 'kernel_audit_sequence', 'kernel_audit_node', 'kernel_audit_checkpoint']) {
      expect(await asApp(`UPDATE ${table} SET tenant_id = tenant_id`)).toBe('42501');
      expect(await asApp(`DELETE FROM ${table}`)).toBe('42501');
      expect(await asApp(`TRUNCATE ${table}`)).toBe('42501');
    }
    // The superuser, triggers on: refused by the WORM triggers.
    for (const statement of [
      `UPDATE kernel_audit_event SET detail = '{}' WHERE tenant_id = 'tenant-worm'`,
      `DELETE FROM kernel_audit_event WHERE tenant_id = 'tenant-worm'`,
      'TRUNCATE kernel_audit_event CASCADE',
      `UPDATE kernel_audit_sequence SET leaf_hash = chain_hash WHERE tenant_id = 'tenant-worm'`,
      `DELETE FROM kernel_audit_checkpoint WHERE tenant_id = 'tenant-worm'`,
      'TRUNCATE kernel_audit_node',
    ]) {
      await expect(su.query(statement)).rejects.toMatchObject({ code: '42501' });
    }
    expect((await (await auditClient('tenant-worm')).verifyLog({})).ok).toBe(true);
  });

  test('[B] tampering as the superuser is detected and VerifyLog names the first bad seq: payload edited, row deleted, rows swapped, tail truncated', async () => {
    const edit = await seededTenant('tamper-edit', 40);
    const del = await seededTenant('tamper-delete', 40);
    const swap = await seededTenant('tamper-swap', 40);
    const tail = await seededTenant('tamper-tail', 40);
    for (const t of [edit, del, swap, tail]) expect((await t.client.verifyLog({})).ok).toBe(true);

    await tamper(async (sql) => {
      await sql.query(`UPDATE kernel_audit_event SET detail = '{"amount_minor": 1000000, "currency": "EUR"}' WHERE tenant_id = 'tamper-edit' AND event_id = $1`, [
        await eventIdAt('tamper-edit', 17),
      ]);
      await sql.query(`DELETE FROM kernel_audit_event WHERE tenant_id = 'tamper-delete' AND event_id = $1`, [await eventIdAt('tamper-delete', 23)]);
      // Two rows change places: seq 30 now points at the entry of seq 31 and the other way round.
      const [at30, at31] = [await eventIdAt('tamper-swap', 30), await eventIdAt('tamper-swap', 31)];
      const point = (seq: number, eventId: string | number) => sql.query(`UPDATE kernel_audit_sequence SET event_id = $2 WHERE tenant_id = 'tamper-swap' AND seq = $1`, [seq, eventId]);
      await point(30, -1);
      await point(31, at30);
      await point(30, at31);
      // The last ten entries go, with every trace of them in the tree and the checkpoints.
      await sql.query(`DELETE FROM kernel_audit_event e USING kernel_audit_sequence s WHERE s.tenant_id = 'tamper-tail' AND e.tenant_id = s.tenant_id AND e.event_id = s.event_id AND s.seq > $1`, [tail.size - 10]);
      await sql.query(`DELETE FROM kernel_audit_sequence WHERE tenant_id = 'tamper-tail' AND seq > $1`, [tail.size - 10]);
      await sql.query(`DELETE FROM kernel_audit_checkpoint WHERE tenant_id = 'tamper-tail' AND tree_size > $1`, [tail.size - 10]);
    });

    const problem = async (t: { client: AuditClient }, trusted = '') => (await t.client.verifyLog({ trustedCheckpoint: trusted })).problem;
    expect(await problem(edit)).toMatchObject({ seq: 17, kind: ProblemKind.PROBLEM_KIND_PAYLOAD_CHANGED });
    expect(await problem(del)).toMatchObject({ seq: 23, kind: ProblemKind.PROBLEM_KIND_ENTRY_MISSING });
    expect(await problem(swap)).toMatchObject({ seq: 30, kind: ProblemKind.PROBLEM_KIND_ORDER_CHANGED });
    // The truncated log is consistent in itself: the checkpoint its auditor kept gives it away.
    expect((await tail.client.verifyLog({})).ok).toBe(true);
    expect(await problem(tail, tail.checkpoint.note)).toMatchObject({ seq: tail.size - 9, kind: ProblemKind.PROBLEM_KIND_ENTRY_MISSING });

    // A deleted position (the sequence row itself) and rewritten stored hashes are named too.
    const gap = await seededTenant('tamper-gap', 20);
    const chain = await seededTenant('tamper-chain', 20);
    await tamper(async (sql) => {
      await sql.query(`DELETE FROM kernel_audit_sequence WHERE tenant_id = 'tamper-gap' AND seq = 8`);
      await sql.query(`UPDATE kernel_audit_sequence SET chain_hash = $1 WHERE tenant_id = 'tamper-chain' AND seq = 12`, [randomBytes(32)]);
    });
    expect(await problem(gap)).toMatchObject({ seq: 8, kind: ProblemKind.PROBLEM_KIND_ENTRY_MISSING });
    expect(await problem(chain)).toMatchObject({ seq: 12, kind: ProblemKind.PROBLEM_KIND_CHAIN_BROKEN });
  });

  test('[B] every field of an entry is in its leaf: any one of them changed as the superuser is named at its seq as PAYLOAD_CHANGED, the tenant too', async () => {
    const { client, size } = await seededTenant('tamper-fields', 12);
    expect((await client.verifyLog({})).ok).toBe(true);
    // One field per entry, from the end of the log backwards: each change is then the first bad
    // seq, so every verdict says which field it caught (a leaf that left a field out lets that
    // change through and names a later seq, or none).
    const changes: Array<[field: string, assignment: string]> = [
      ['principal', `principal = principal || '-forged'`],
      ['action', `action = action || 'Forged'`],
      ['resource', `resource = resource || '/forged'`],
      ['outcome', `outcome = CASE outcome WHEN 'OK' THEN 'FAILED' ELSE 'OK' END`],
      ['trace_id', `trace_id = md5(trace_id)`],
      ['idempotency_key', `idempotency_key = md5(coalesce(idempotency_key, 'none'))`],
      ['request_digest', `request_digest = md5(coalesce(request_digest, 'none'))`],
      ['event_time', `event_time = event_time + interval '1 microsecond'`],
      ['detail', `detail = detail || '{"amount_minor": -1}'`],
    ];
    let seq = size;
    for (const [field, assignment] of changes) {
      const eventId = await eventIdAt('tamper-fields', seq);
      await tamper((sql) => sql.query(`UPDATE kernel_audit_event SET ${assignment} WHERE tenant_id = 'tamper-fields' AND event_id = $1`, [eventId]));
      const { ok, problem } = await client.verifyLog({});
      expect({ field, ok, seq: problem?.seq, kind: problem?.kind }).toEqual({ field, ok: false, seq, kind: ProblemKind.PROBLEM_KIND_PAYLOAD_CHANGED });
      seq -= 1;
    }

    // The tenant: a whole log relabelled as another tenant's (every audit row moved, hashes and
    // checkpoints included) no longer matches its first leaf.
    const moved = await seededTenant('tamper-tenant', 3);
    await tamper(async (sql) => {
      const { rows } = await sql.query(
        `SELECT DISTINCT table_name AS t FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'tenant_id' AND table_name LIKE 'kernel_audit%'`,
      );
      for (const { t } of rows) await sql.query(`UPDATE ${t} SET tenant_id = 'tamper-tenant-moved' WHERE tenant_id = 'tamper-tenant'`);
    });
    expect((await moved.client.verifyLog({})).verifiedSize).toBe(0);
    const relabelled = await auditClient('tamper-tenant-moved');
    const { ok, problem } = await relabelled.verifyLog({});
    expect({ ok, seq: problem?.seq, kind: problem?.kind }).toEqual({ ok: false, seq: 1, kind: ProblemKind.PROBLEM_KIND_PAYLOAD_CHANGED });
  });

  test('[B] retention and legal hold are policies: only the retention role purges, only past retention, never under hold; the purge is recorded and the log still verifies', async () => {
    const { client } = await seededTenant('tenant-retention', 30);
    // Changing retention or hold, and purging, take audit:admin: read and write are not enough.
    const writer = await auditClient('tenant-retention', 'audit:read audit:write');
    for (const call of [
      () => writer.setRetentionPolicy({ retention: { seconds: 3600, nanos: 0 } }),
      () => writer.setLegalHold({ hold: true, reason: 'not mine to set' }),
      () => writer.purgeExpired({}),
    ]) {
      const refused = await refusal(call());
      expect([refused.code, refused.reason]).toEqual([Status.PERMISSION_DENIED, 'SCOPE_MISSING']);
    }
    const admin = await auditClient('tenant-retention', 'audit:read audit:write audit:admin');
    expect(await refusal(admin.purgeExpired({}))).toMatchObject({ code: Status.FAILED_PRECONDITION, reason: 'NO_RETENTION_POLICY' });
    // The retention role itself may not delete what is within retention or not yet sequenced.
    await admin.setRetentionPolicy({ retention: { seconds: 3600, nanos: 0 } });
    await su.query('BEGIN');
    await su.query(`SELECT set_config('role', 'axis_kernel_audit_retention', true), set_config('axis.tenant_id', 'tenant-retention', true)`);
    await expect(su.query(`DELETE FROM kernel_audit_event WHERE tenant_id = 'tenant-retention'`)).rejects.toMatchObject({ code: '42501' });
    await su.query('ROLLBACK');
    expect(await admin.purgeExpired({})).toMatchObject({ purgedEntries: 0 });

    await admin.setRetentionPolicy({ retention: { seconds: 1, nanos: 0 } });
    await admin.setLegalHold({ hold: true, reason: 'case 2026-17' });
    await new Promise((r) => setTimeout(r, 1100));
    expect(await refusal(admin.purgeExpired({}))).toMatchObject({ code: Status.FAILED_PRECONDITION, reason: 'LEGAL_HOLD_ACTIVE' });
    await admin.setLegalHold({ hold: false, reason: '' });

    const before = await settled('tenant-retention');
    const purged = await admin.purgeExpired({ maxEntries: 20 });
    expect(purged).toEqual({ purgedEntries: 20, purgedThroughSeq: 20 });
    await settled('tenant-retention');
    await waitFor(async () => ((await client.getCheckpoint({})).checkpoint?.treeSize ?? 0) > before);

    const record = await client.listEvents({ action: 'axis.kernel.audit.v1.AuditService/PurgeExpired' });
    expect(record.events.map((e) => e.detail)).toEqual([
      { reason: 'SCOPE_MISSING' }, // the refused call above, a denied security event
      { purged: 0, through_seq: 0 },
      { purged: 20, through_seq: 20 },
    ]);
    const gone = await client.getEvent({ selector: { $case: 'seq', value: 5 } });
    expect(gone.event).toMatchObject({ seq: 5, purged: true, action: '' });
    const verified = await client.verifyLog({});
    expect(verified).toMatchObject({ ok: true, purgedEntries: 20 });
    // Hashes stay: a proof for a purged position still verifies against the signed root.
    const { checkpoint } = await client.getCheckpoint({});
    const proof = (await client.getInclusionProof({ leafIndex: 4, treeSize: checkpoint!.treeSize })).inclusionProof!;
    expect(inclusionVerifies(4, checkpoint!.treeSize, Buffer.from(gone.event!.leafHash), proof.hashes.map((h) => Buffer.from(h)), Buffer.from(checkpoint!.rootHash))).toBe(true);
  });

  test('[C] an inclusion proof verifies against a signed checkpoint with the RFC 9162 algorithm and the Keymaster public key only', async () => {
    const { client, size, checkpoint } = await seededTenant('tenant-c', 300);
    const pem = await publicKeyPem('tenant-c', checkpoint.keyVersion);
    const signed = openCheckpoint(checkpoint.note, origin('tenant-c'), pem);
    expect(signed).toBeDefined();
    expect(signed!.size).toBe(size);
    const leaves = await leavesOf(client);
    expect(treeHead(leaves).equals(signed!.root)).toBe(true);

    for (const index of [0, 1, 127, 128, 255, size - 2, size - 1]) {
      const proof = (await client.getInclusionProof({ leafIndex: index, treeSize: size })).inclusionProof!;
      const path = proof.hashes.map((h) => Buffer.from(h));
      expect(Buffer.from(proof.leafHash).equals(leaves[index])).toBe(true);
      expect(inclusionVerifies(index, size, leaves[index], path, signed!.root)).toBe(true);
      // A wrong leaf, a wrong position or a flipped bit fails.
      expect(inclusionVerifies(index, size, leaves[(index + 1) % size], path, signed!.root)).toBe(false);
      expect(inclusionVerifies(index ^ 1, size, leaves[index], path, signed!.root)).toBe(false);
      if (path.length > 0) {
        const flipped = path.map((p) => Buffer.from(p));
        flipped[0][0] ^= 1;
        expect(inclusionVerifies(index, size, leaves[index], flipped, signed!.root)).toBe(false);
      }
    }
    // Any tree size, not only checkpointed ones: checked against the head computed here.
    for (const treeSize of [1, 2, 3, 7, 64, 65, 199]) {
      for (const index of [0, Math.floor(treeSize / 2), treeSize - 1]) {
        const proof = (await client.getInclusionProof({ leafIndex: index, treeSize })).inclusionProof!;
        expect(inclusionVerifies(index, treeSize, leaves[index], proof.hashes.map((h) => Buffer.from(h)), treeHead(leaves.slice(0, treeSize)))).toBe(true);
      }
    }
    // A checkpoint signed by another tenant's key, or altered, does not open.
    const other = await seededTenant('tenant-c2', 3);
    expect(openCheckpoint(other.checkpoint.note, origin('tenant-c'), pem)).toBeUndefined();
    expect(openCheckpoint(checkpoint.note.replace(`\n${size}\n`, `\n${size + 1}\n`), origin('tenant-c'), pem)).toBeUndefined();

    // A note with no signature by a known key — the log's own name, but signed by a key of the
    // forger's — is refused by the verifier here, by VerifyLog and by `kernel audit verify`,
    // whether its body is the genuine one or a forged one.
    const forger = generateKeyPairSync('ed25519').privateKey;
    const body = checkpoint.note.slice(0, checkpoint.note.lastIndexOf('\n\n') + 1);
    const forgedBody = body.replace(`\n${size}\n${Buffer.from(checkpoint.rootHash).toString('base64')}\n`, `\n${size + 5}\n${randomBytes(32).toString('base64')}\n`);
    expect(forgedBody).not.toBe(body);
    const unknownSigner = [signedNote(body, origin('tenant-c'), forger), signedNote(forgedBody, origin('tenant-c'), forger)];
    for (const note of unknownSigner) {
      expect(openCheckpoint(note, origin('tenant-c'), pem)).toBeUndefined();
      const refused = await refusal(client.verifyLog({ trustedCheckpoint: note }));
      expect([refused.code, refused.reason]).toEqual([Status.INVALID_ARGUMENT, 'CHECKPOINT_INVALID']);
    }
    const dir = mkdtempSync(path.join(tmpdir(), 'evi048-'));
    try {
      const exported = path.join(dir, 'log.jsonl');
      const token = await kernel.token({ tenants: ['tenant-c'], scope: 'audit:read' });
      await kernelCli(['audit', 'export', '--tenant', 'tenant-c', '--address', kernel.address, '--token', token, '--out', exported], {});
      const key = noteVerifierKey(origin('tenant-c'), pem);
      const verifyFile = async (lines: string[]) => {
        const file = path.join(dir, `${randomUUID()}.jsonl`);
        writeFileSync(file, `${lines.join('\n')}\n`);
        return kernelCli(['audit', 'verify', file, '--key', key], {}).then(
          ({ stdout }) => ({ code: 0, stdout }),
          (error: { code: number; stdout: string }) => ({ code: error.code, stdout: error.stdout }),
        );
      };
      const lines = readFileSync(exported, 'utf8').trimEnd().split('\n');
      expect(await verifyFile(lines)).toEqual({ code: 0, stdout: expect.stringMatching(/^OK /) });
      // The last checkpoint's note swapped for the genuine body signed by the forger's key.
      const at = lines.map((l) => 'checkpoint' in JSON.parse(l)).lastIndexOf(true);
      const record = JSON.parse(lines[at]) as { checkpoint: { tree_size: number; note: string } };
      const forgedNoteLines = [...lines];
      forgedNoteLines[at] = JSON.stringify({ checkpoint: { ...record.checkpoint, note: signedNote(record.checkpoint.note.slice(0, record.checkpoint.note.lastIndexOf('\n\n') + 1), origin('tenant-c'), forger) } });
      expect(await verifyFile(forgedNoteLines)).toEqual({ code: 1, stdout: expect.stringMatching(new RegExp(`^FAILED at seq ${record.checkpoint.tree_size}: CHECKPOINT_INVALID`)) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('[D] a consistency proof between two signed checkpoints verifies; a rewritten history fails', async () => {
    const first = await seededTenant('tenant-d', 100);
    const pem = await publicKeyPem('tenant-d', first.checkpoint.keyVersion);
    const old = openCheckpoint(first.checkpoint.note, origin('tenant-d'), pem)!;
    await first.client.appendEvents({ events: events(157, 'more') });
    const size = await settled('tenant-d');
    const now = openCheckpoint((await first.client.getCheckpoint({})).checkpoint!.note, origin('tenant-d'), pem)!;
    expect(now.size).toBe(size);

    const proof = (await first.client.getConsistencyProof({ firstSize: old.size, secondSize: now.size })).consistencyProof!.hashes.map((h) => Buffer.from(h));
    expect(consistencyVerifies(old.size, now.size, old.root, now.root, proof)).toBe(true);
    // Every stored checkpoint is consistent with the latest one.
    const leaves = await leavesOf(first.client);
    for (const m of [1, 2, 5, 64, 99, 100, 101, 128]) {
      const p = (await first.client.getConsistencyProof({ firstSize: m, secondSize: now.size })).consistencyProof!.hashes.map((h) => Buffer.from(h));
      expect(consistencyVerifies(m, now.size, treeHead(leaves.slice(0, m)), now.root, p)).toBe(true);
    }

    // History rewritten in the database: entry 3 edited and every stored hash above it
    // recomputed, so the stored tree is self-consistent again. The kernel's proof from the old
    // checkpoint no longer verifies, and VerifyLog finds the rewrite against the signed heads.
    const original = (await first.client.getEvent({ selector: { $case: 'seq', value: 3 } })).event!;
    expect(original.resource).toBe('journals/tenant-d-2');
    const forgedLeaf = leafHashOf(Buffer.from(original.leafData.replace('"journals/tenant-d-2"', '"journals/forged"')));
    await tamper(async (sql) => {
      await sql.query(`UPDATE kernel_audit_event SET resource = 'journals/forged' WHERE tenant_id = 'tenant-d' AND event_id = $1`, [await eventIdAt('tenant-d', 3)]);
      let chain = (await sql.query(`SELECT chain_hash FROM kernel_audit_sequence WHERE tenant_id = 'tenant-d' AND seq = 2`)).rows[0].chain_hash as Buffer;
      const { rows } = await sql.query(`SELECT seq, leaf_hash FROM kernel_audit_sequence WHERE tenant_id = 'tenant-d' AND seq >= 3 ORDER BY seq`);
      for (const row of rows) {
        const leaf = Number(row.seq) === 3 ? forgedLeaf : (row.leaf_hash as Buffer);
        chain = sha256(Buffer.from([0x02]), chain, leaf);
        await sql.query(`UPDATE kernel_audit_sequence SET leaf_hash = $2, chain_hash = $3 WHERE tenant_id = 'tenant-d' AND seq = $1`, [row.seq, leaf, chain]);
      }
      for (let level = 1, index = 2 >> 1; 2 ** level <= leaves.length; level++, index >>= 1) {
        const child = async (l: number, i: number): Promise<Buffer | undefined> =>
          l === 0
            ? (await sql.query(`SELECT leaf_hash AS h FROM kernel_audit_sequence WHERE tenant_id = 'tenant-d' AND seq = $1`, [i + 1])).rows[0]?.h
            : (await sql.query(`SELECT hash AS h FROM kernel_audit_node WHERE tenant_id = 'tenant-d' AND level = $1 AND idx = $2`, [l, i])).rows[0]?.h;
        const [l, r] = [await child(level - 1, 2 * index), await child(level - 1, 2 * index + 1)];
        if (l && r) await sql.query(`UPDATE kernel_audit_node SET hash = $3 WHERE tenant_id = 'tenant-d' AND level = $1 AND idx = $2`, [level, index, nodeHashOf(l, r)]);
      }
    });
    const rewritten = (await first.client.getConsistencyProof({ firstSize: old.size, secondSize: now.size })).consistencyProof!.hashes.map((h) => Buffer.from(h));
    expect(consistencyVerifies(old.size, now.size, old.root, now.root, rewritten)).toBe(false);
    const verdict = await first.client.verifyLog({ trustedCheckpoint: first.checkpoint.note });
    expect(verdict.ok).toBe(false);
    expect(verdict.problem!.seq).toBeLessThanOrEqual(3);
    expect([ProblemKind.PROBLEM_KIND_CHECKPOINT_MISMATCH, ProblemKind.PROBLEM_KIND_PAYLOAD_CHANGED]).toContain(verdict.problem!.kind);
  });

  test('[E] every mutating RPC leaves exactly one entry, committed with its change and carrying its trace id; a rolled-back change leaves none; tenants read only their own log', async () => {
    const tenant = 'tenant-e';
    const token = await kernel.token({ tenants: [tenant] });
    const withTrace = () => {
      const traceId = randomBytes(16).toString('hex');
      return { traceId, options: { metadata: Metadata({ traceparent: `00-${traceId}-${'2'.repeat(16)}-01` }) } };
    };
    const sequences = createSequenceClient({ address: kernel.address, tenantId: tenant, maxAttempts: 1, token });
    const keys = createKeymasterClient({ address: kernel.address, tenantId: tenant, maxAttempts: 1, token });
    const audit = await auditClient(tenant);
    clients.push(sequences, keys);

    const calls: Array<[string, (options: object) => Promise<unknown>]> = [
      ['axis.kernel.sequences.v1.SequenceService/CreateSeries', (o) => sequences.createSeries({ series: { seriesId: 'inv', pattern: 'INV-{SEQ:4}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } }, o)],
      ['axis.kernel.sequences.v1.SequenceService/IssueNumber', (o) => sequences.issueNumber({ seriesId: 'inv', subjectRef: 'doc-1' }, o)],
      ['axis.kernel.keymaster.v1.KeymasterService/CreateKey', (o) => keys.createKey({ key: { keyId: 'signer', algorithm: Algorithm.ALGORITHM_ED25519 } }, o)],
      ['axis.kernel.keymaster.v1.KeymasterService/Sign', (o) => keys.sign({ keyId: 'signer', input: { $case: 'message', value: Buffer.from('x') } }, o)],
      ['ledger.JournalPosted', (o) => audit.appendEvents({ events: events(1, 'e') }, o)],
    ];
    const traces: Array<[string, string]> = [];
    for (const [action, call] of calls) {
      const { traceId, options } = withTrace();
      await call(options);
      traces.push([action, traceId]);
    }
    // Refused inside its transaction: rolled back, no entry.
    const failed = withTrace();
    expect(await refusal(sequences.issueNumber({ seriesId: 'missing', subjectRef: 'x' }, failed.options))).toMatchObject({ code: Status.NOT_FOUND });
    await settled(tenant);

    for (const [action, traceId] of traces) {
      const found = await audit.listEvents({ traceId });
      expect(found.events.map((e) => [e.action, e.outcome, e.traceId])).toEqual([[action, AuditOutcome.AUDIT_OUTCOME_OK, traceId]]);
      expect(found.events[0].seq).toBeGreaterThan(0);
    }
    expect((await audit.listEvents({ traceId: failed.traceId })).events).toEqual([]);

    // In the business transaction: an entry appended by a transaction that rolls back is never logged.
    await su.query('BEGIN');
    await su.query(`SELECT set_config('role', 'axis_kernel_app', true), set_config('axis.tenant_id', $1, true)`, [tenant]);
    await su.query(`INSERT INTO kernel_audit_event (tenant_id, principal, action, resource, outcome, trace_id) VALUES ($1, 'p', 'rolled.Back', '', 'OK', 'rolled-back')`, [tenant]);
    await su.query('ROLLBACK');
    await settled(tenant);
    expect((await audit.listEvents({ action: 'rolled.Back' })).events).toEqual([]);

    // Tenants read only their own log: another tenant's entries are invisible, by id and by proof.
    const other = await seededTenant('tenant-e-other', 3);
    const mine = await audit.listEvents({});
    expect(mine.events.every((e) => JSON.parse(e.leafData).tenant === tenant)).toBe(true);
    const otherId = (await other.client.listEvents({})).events[0].eventId;
    expect(await refusal(audit.getEvent({ selector: { $case: 'eventId', value: otherId } }))).toMatchObject({ code: Status.NOT_FOUND, reason: 'EVENT_NOT_FOUND' });
    // A cross-tenant attempt and an authentication failure are security events in the target tenant's log.
    const crossing = withTrace();
    const intruder = createKernelClient(AuditServiceDefinition, { address: kernel.address, tenantId: 'tenant-e-other', maxAttempts: 1, token });
    clients.push(intruder);
    expect(await refusal(intruder.listEvents({}, crossing.options))).toMatchObject({ code: Status.PERMISSION_DENIED, reason: 'TENANT_NOT_ALLOWED' });
    const forged = withTrace();
    const anonymous = createKernelClient(AuditServiceDefinition, { address: kernel.address, tenantId: 'tenant-e-other', maxAttempts: 1, token: `${token.slice(0, -4)}AAAA` });
    clients.push(anonymous);
    expect(await refusal(anonymous.listEvents({}, forged.options))).toMatchObject({ code: Status.UNAUTHENTICATED, reason: 'TOKEN_INVALID' });
    await settled('tenant-e-other');
    const denials = (await other.client.listEvents({ outcome: AuditOutcome.AUDIT_OUTCOME_DENIED })).events;
    expect(denials.map((e) => [e.traceId, e.principal, e.detail])).toEqual([
      [crossing.traceId, 'tester', { reason: 'TENANT_NOT_ALLOWED' }],
      [forged.traceId, 'anonymous', { reason: 'TOKEN_INVALID' }],
    ]);
  });

  // The embedded database runs one transaction at a time: transactions cannot overlap there.
  (TEST_BACKEND === 'embedded' ? test.skip : test)('entries take their positions in commit order: a writer waits for the one before it, a rollback leaves no gap, an open transaction holds nothing back', async () => {
    const { client, size: before, checkpoint } = await seededTenant('tenant-order', 5);
    const clients = [0, 1, 2].map(() => new Client({ connectionString: db.url }));
    await Promise.all(clients.map((c) => c.connect()));
    const [early, first, second] = clients;
    const asApp = (c: Client) => c.query(`SELECT set_config('role', 'axis_kernel_app', true), set_config('axis.tenant_id', 'tenant-order', true)`);
    const append = (c: Client, label: string) =>
      c.query(`INSERT INTO kernel_audit_event (tenant_id, principal, action, resource, outcome, trace_id) VALUES ('tenant-order', 'p', 'order.Test', $1, 'OK', $1)`, [label]);
    const settledOrTimeout = (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => 'settled'), new Promise((r) => setTimeout(() => r('waiting'), ms))]);
    try {
      // An older transaction of the same tenant stays open throughout (it has its xid already).
      await early.query('BEGIN');
      await asApp(early);
      const earlyXid = (await early.query('SELECT pg_current_xact_id()::text AS x')).rows[0].x as string;

      // A writer holds the tenant's audit head until it ends; the next writer waits for it.
      await first.query('BEGIN');
      await asApp(first);
      await append(first, 'rolled-back');
      await second.query('BEGIN');
      await asApp(second);
      const secondAppend = append(second, 'late-txid');
      expect(await settledOrTimeout(secondAppend, 300)).toBe('waiting');
      await first.query('ROLLBACK'); // its position is released: no gap
      await secondAppend;
      const lateXid = (await second.query('SELECT pg_current_xact_id()::text AS x')).rows[0].x as string;
      expect(BigInt(earlyXid)).toBeLessThan(BigInt(lateXid));
      await second.query('COMMIT'); // the later transaction commits first ...

      // ... and is integrated while the earlier one is still open: nothing waits for it.
      expect(await settled('tenant-order')).toBe(before + 1);
      await append(early, 'early-txid');
      await early.query('COMMIT');
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    const after = await settled('tenant-order');
    const logged = (await client.listEvents({ action: 'order.Test' })).events.map((e) => [e.resource, e.seq]);
    expect(logged).toEqual([
      ['late-txid', before + 1],
      ['early-txid', before + 2],
    ]);
    const old = openCheckpoint(checkpoint.note, origin('tenant-order'), await publicKeyPem('tenant-order', checkpoint.keyVersion))!;
    const now = (await client.getCheckpoint({})).checkpoint!;
    const proof = (await client.getConsistencyProof({ firstSize: old.size, secondSize: after })).consistencyProof!.hashes.map((h) => Buffer.from(h));
    expect(consistencyVerifies(old.size, after, old.root, Buffer.from(now.rootHash), proof)).toBe(true);
  });

  test('bad input: sizes beyond the tree, index ≥ size, zero and negative sizes, an unknown tenant, reserved names — clear errors', async () => {
    const { client, size } = await seededTenant('tenant-bad', 4);
    const reasonOf = async (call: Promise<unknown>) => {
      const e = await refusal(call);
      return [e.code, e.reason];
    };
    expect(await reasonOf(client.getInclusionProof({ leafIndex: 0, treeSize: size + 1 }))).toEqual([Status.OUT_OF_RANGE, 'TREE_SIZE_BEYOND_LOG']);
    expect((await refusal(client.getInclusionProof({ leafIndex: 0, treeSize: size + 1 }))).metadata?.log_size).toBe(String(size));
    expect(await reasonOf(client.getInclusionProof({ leafIndex: size, treeSize: size }))).toEqual([Status.INVALID_ARGUMENT, 'LEAF_INDEX_INVALID']);
    expect(await reasonOf(client.getInclusionProof({ leafIndex: -1, treeSize: size }))).toEqual([Status.INVALID_ARGUMENT, 'LEAF_INDEX_INVALID']);
    expect(await reasonOf(client.getInclusionProof({ leafIndex: 0, treeSize: 0 }))).toEqual([Status.INVALID_ARGUMENT, 'TREE_SIZE_INVALID']);
    expect(await reasonOf(client.getInclusionProof({ leafIndex: 0, treeSize: -5 }))).toEqual([Status.INVALID_ARGUMENT, 'TREE_SIZE_INVALID']);
    expect(await reasonOf(client.getConsistencyProof({ firstSize: 0, secondSize: size }))).toEqual([Status.INVALID_ARGUMENT, 'TREE_SIZE_INVALID']);
    expect(await reasonOf(client.getConsistencyProof({ firstSize: size, secondSize: size - 1 }))).toEqual([Status.INVALID_ARGUMENT, 'TREE_SIZE_INVALID']);
    expect(await reasonOf(client.getConsistencyProof({ firstSize: 1, secondSize: size + 10 }))).toEqual([Status.OUT_OF_RANGE, 'TREE_SIZE_BEYOND_LOG']);
    expect(await reasonOf(client.getCheckpoint({ treeSize: -1 }))).toEqual([Status.INVALID_ARGUMENT, 'TREE_SIZE_INVALID']);
    expect(await reasonOf(client.getEvent({ selector: undefined }))).toEqual([Status.INVALID_ARGUMENT, 'SELECTOR_REQUIRED']);
    expect(await reasonOf(client.verifyLog({ trustedCheckpoint: 'not a note' }))).toEqual([Status.INVALID_ARGUMENT, 'CHECKPOINT_INVALID']);
    // Retention: below the kernel's minimum, or beyond 100 years (an unbounded value once answered INTERNAL).
    expect(await reasonOf(client.setRetentionPolicy({ retention: { seconds: 0, nanos: 0 } }))).toEqual([Status.INVALID_ARGUMENT, 'RETENTION_TOO_SHORT']);
    expect(await reasonOf(client.setRetentionPolicy({ retention: { seconds: Number.MAX_SAFE_INTEGER, nanos: 6 } }))).toEqual([Status.INVALID_ARGUMENT, 'FIELD_INVALID']);
    // A tenant that never logged anything has an empty log: its latest checkpoint is the
    // unsigned size-0 checkpoint (RFC 6962 empty-tree root SHA-256("")), never NOT_FOUND; a
    // checkpoint at a size that was never signed stays NOT_FOUND.
    const unknownTenant = `unknown-${randomUUID().slice(0, 8)}`;
    const unknown = await auditClient(unknownTenant);
    expect((await unknown.getCheckpoint({})).checkpoint).toEqual({
      treeSize: 0,
      rootHash: sha256(),
      chainHash: Buffer.alloc(32),
      createTime: undefined,
      keyVersion: 0,
      note: '',
      verifierKey: '',
      origin: origin(unknownTenant),
    });
    expect(sha256().toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(treeHead([]).equals(sha256())).toBe(true);
    expect(await reasonOf(unknown.getCheckpoint({ treeSize: 1 }))).toEqual([Status.NOT_FOUND, 'CHECKPOINT_NOT_FOUND']);
    expect(await reasonOf(unknown.getInclusionProof({ leafIndex: 0, treeSize: 1 }))).toEqual([Status.OUT_OF_RANGE, 'TREE_SIZE_BEYOND_LOG']);
    expect(await reasonOf(unknown.getConsistencyProof({ firstSize: 1, secondSize: 1 }))).toEqual([Status.OUT_OF_RANGE, 'TREE_SIZE_BEYOND_LOG']);
    expect(await unknown.verifyLog({})).toMatchObject({ ok: true, verifiedSize: 0 });
    // AppendEvents: kernel names are reserved; limits hold.
    expect(await reasonOf(client.appendEvents({ events: [] }))).toEqual([Status.INVALID_ARGUMENT, 'EVENTS_REQUIRED']);
    expect(await reasonOf(client.appendEvents({ events: events(501) }))).toEqual([Status.INVALID_ARGUMENT, 'TOO_MANY_EVENTS']);
    expect(await reasonOf(client.appendEvents({ events: [{ action: 'axis.kernel.sequences.v1.SequenceService/IssueNumber', resource: '', outcome: 0, detail: {} }] }))).toEqual([
      Status.INVALID_ARGUMENT,
      'ACTION_RESERVED',
    ]);
    expect(await reasonOf(client.appendEvents({ events: [{ action: 'bad action', resource: '', outcome: 0, detail: {} }] }))).toEqual([Status.INVALID_ARGUMENT, 'ACTION_INVALID']);
    expect(await reasonOf(client.appendEvents({ events: [{ action: 'a.B', resource: '', outcome: 0, detail: { blob: 'x'.repeat(20_000) } }] }))).toEqual([
      Status.INVALID_ARGUMENT,
      'DETAIL_TOO_LARGE',
    ]);
    // The audit key signs checkpoints only: no client may sign with it or create a kernel key.
    const keys = createKeymasterClient({ address: kernel.address, tenantId: 'tenant-bad', maxAttempts: 1, token: await kernel.token({ tenants: ['tenant-bad'] }) });
    clients.push(keys);
    expect(await reasonOf(keys.sign({ keyId: 'kernel.audit', input: { $case: 'message', value: Buffer.from('forged checkpoint') } }))).toEqual([Status.PERMISSION_DENIED, 'KEY_RESERVED']);
    expect(await reasonOf(keys.createKey({ key: { keyId: 'kernel.other', algorithm: Algorithm.ALGORITHM_ED25519 } }))).toEqual([Status.INVALID_ARGUMENT, 'KEY_ID_RESERVED']);
    expect((await client.verifyLog({})).ok).toBe(true);
  });
});
