import { spawn } from 'node:child_process';
import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { closeKernelClient, createKernelClient, createKeymasterClient, type KernelClient } from '../../clients/src';
import { AuditOutcome } from '../../gen/proto/axis/kernel/audit/v1/audit';
import { AuditServiceDefinition } from '../../gen/proto/axis/kernel/audit/v1/audit_service';
import { auditCommand } from '../../services/audit/audit-command';
import { auditVerifierKey } from '../../services/audit/audit-key';
import { startTestKernel, type TestKernel } from '../support/test-kernel';
import { waitFor } from '../support/wait-for';

/*
 * `kernel audit export` / `kernel audit verify`: an export of a real kernel's log verifies
 * offline with only the public key (obtained independently, from the Keymaster), and every
 * kind of tampering, a wrong key and malformed input are told apart by exit code and message.
 */

const ROOT = path.resolve(__dirname, '../..');
type Run = { code: number | null; stdout: string; stderr: string };

/** Runs the kernel CLI as its own process, stdout and stderr pipes (not terminals). */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'services/kernel/cli.ts'), ...args], {
      cwd: ROOT,
      env: { ...process.env, AXIS_TOKEN: '', LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * The command in this process — what `kernel audit …` dispatches to — with its output captured:
 * most cases run here (a Node process per case costs seconds); the CLI runs below show the
 * process itself behaves the same. The configuration getter throws: only an export without a
 * token may need the configuration (for a development token), and verify never does.
 */
async function inProcess(args: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await auditCommand(
    args,
    () => {
      throw new Error('the configuration was loaded');
    },
    { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) } },
  );
  return { code, stdout, stderr };
}

/** Runs `tasks` with at most `limit` at a time. */
async function pool<T>(tasks: Array<() => Promise<T>>, limit = 2): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, tasks.length) }, async () => {
      while (next < tasks.length) {
        const i = next++;
        results[i] = await tasks[i]();
      }
    }),
  );
  return results;
}

/**
 * The signed-note verifier key of a PEM Ed25519 public key, written here from c2sp.org/signed-note
 * (not with services/audit): `<name>+<hex key hash>+<base64(0x01 || key)>`, the key hash the first
 * 4 bytes of SHA-256(name || "\n" || 0x01 || key).
 */
function verifierKeyFromPem(name: string, pem: string): string {
  const raw = Buffer.from(createPublicKey(pem).export({ format: 'jwk' }).x!, 'base64url');
  expect(raw.length).toBe(32);
  const typed = Buffer.concat([Buffer.from([0x01]), raw]);
  const hash = createHash('sha256').update(name).update('\n').update(typed).digest().subarray(0, 4);
  return `${name}+${hash.toString('hex')}+${typed.toString('base64')}`;
}

/** A fresh Ed25519 verifier key under `name` whose base64 holds a '+' (half of all keys do). */
function localVerifierKeyWithPlus(name: string): string {
  for (;;) {
    const { publicKey } = generateKeyPairSync('ed25519');
    const key = verifierKeyFromPem(name, publicKey.export({ format: 'pem', type: 'spki' }).toString());
    if (key.split('+').length > 3) return key;
  }
}

type Line = Record<string, Record<string, unknown>>;

/**
 * The exported tenant's log: 1 event (checkpoint 1), the audit key's creation (checkpoint 2), then
 * one batch up to LOG_SIZE. Past 99 on purpose: sizes must order as numbers, not as text ("99" > "150").
 */
const LOG_SIZE = 150;
const STACK = /\n\s+at .+\(.*:\d+:\d+\)/;

describe('kernel audit export / verify', () => {
  let kernel: TestKernel;
  let dir: string;
  let tenant: string;
  let token: string;
  let key: string;
  /** Verifier keys of other tenants (wrong keys for this tenant's export). */
  const otherKeys: string[] = [];
  let exportFile: string;
  let lines: string[];

  const clients: object[] = [];
  const auditClient = (t: string, tok: string) => {
    const c = createKernelClient(AuditServiceDefinition, { address: kernel.address, tenantId: t, token: tok });
    clients.push(c);
    return c;
  };
  /** The latest checkpoint's size (0 before the first one is signed: the size-0 checkpoint). */
  const checkpointSize = async (audit: KernelClient<typeof AuditServiceDefinition>) => (await audit.getCheckpoint({})).checkpoint!.treeSize;
  /** Appends events and waits until a signed checkpoint covers the last of them. */
  const appendAndWait = async (audit: KernelClient<typeof AuditServiceDefinition>, from: number, count: number) => {
    const { eventIds } = await audit.appendEvents({
      events: Array.from({ length: count }, (_, i) => ({
        action: 'test.audit-cli/record',
        resource: `doc/${from + i}`,
        outcome: AuditOutcome.AUDIT_OUTCOME_OK,
        detail: { n: from + i, note: 'ünïcödé ✓' },
      })),
    });
    const last = eventIds[eventIds.length - 1];
    let seq = 0;
    await waitFor(async () => {
      seq = seq || (await audit.getEvent({ selector: { $case: 'eventId', value: last } })).event!.seq;
      return seq > 0 && (await checkpointSize(audit)) >= seq;
    });
  };
  /** A tenant with one checkpointed entry, and its audit key's verifier key from the Keymaster's GetPublicKey. */
  const tenantWithKey = async (t: string) => {
    const tok = await kernel.token({ tenants: [t], scope: 'audit:read audit:write keymaster:read' });
    const audit = auditClient(t, tok);
    await appendAndWait(audit, 0, 1);
    const keymaster = createKeymasterClient({ address: kernel.address, tenantId: t, token: tok });
    clients.push(keymaster);
    const publicKey = (await keymaster.getPublicKey({ keyId: 'kernel.audit', version: 0 })).publicKey!;
    const vkey = verifierKeyFromPem(`kernel.axis/audit/${t}`, publicKey.pem);
    // The kernel's own derivation and the checkpoints' (informational) key agree with it.
    expect(vkey).toBe(auditVerifierKey(t, createPublicKey(publicKey.pem).export({ format: 'der', type: 'spki' })));
    expect((await audit.getCheckpoint({})).checkpoint!.verifierKey).toBe(vkey);
    return { token: tok, audit, vkey };
  };

  const write = (name: string, content: string | Buffer) => {
    const file = path.join(dir, name);
    writeFileSync(file, content);
    return file;
  };
  const verifyArgs = (file: string, keyArgs: string[]) => ['verify', file, ...(keyArgs.length ? keyArgs : ['--key', key])];
  const verify = (file: string, ...keyArgs: string[]) => inProcess(verifyArgs(file, keyArgs));
  const verifyCli = (file: string, ...keyArgs: string[]) =>
    // Offline: no database and no kernel to reach (verify must not need them).
    cli(['audit', ...verifyArgs(file, keyArgs)], { DATABASE_URL: '', KERNEL_GRPC_ADDR: '127.0.0.1:9' });
  const parsed = (text: string) => JSON.parse(text) as Line;
  const entryIndex = (seq: number) => lines.findIndex((l) => parsed(l).entry?.seq === seq);
  const joined = (ls: string[]) => `${ls.join('\n')}\n`;
  const checkpoints = () => lines.map(parsed).filter((l) => l.checkpoint).map((l) => l.checkpoint);

  beforeAll(async () => {
    kernel = await startTestKernel();
    dir = mkdtempSync(path.join(tmpdir(), 'audit-cli-'));
    // The exported tenant is one whose verifier key's base64 holds a '+' (about half of all keys):
    // the key's fields are split at the first two '+' only. The others serve as wrong keys below.
    for (let i = 1; !tenant; i++) {
      if (i > 16) throw new Error('no tenant with a "+" in its verifier key in 16 tries');
      const t = `audit-cli-${i}`;
      const made = await tenantWithKey(t);
      if (made.vkey.split('+').length > 3) {
        tenant = t;
        token = made.token;
        key = made.vkey;
        // The key's creation is the second entry (its own batch); then one batch to LOG_SIZE.
        await waitFor(async () => (await checkpointSize(made.audit)) >= 2);
        await appendAndWait(made.audit, 1, LOG_SIZE - (await checkpointSize(made.audit)));
      } else {
        otherKeys.push(made.vkey);
      }
    }
    if (otherKeys.length === 0) otherKeys.push((await tenantWithKey('audit-cli-other')).vkey);

    exportFile = path.join(dir, 'export.jsonl');
    const run = await cli(['audit', 'export', '--tenant', tenant, '--address', kernel.address, '--token', token, '--out', exportFile]);
    expect(run.stderr).not.toContain('kernel audit export:');
    expect(run.code).toBe(0);
    lines = readFileSync(exportFile, 'utf8').trimEnd().split('\n');
  });

  afterAll(async () => {
    for (const c of clients) closeKernelClient(c);
    await kernel?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the export is JSON Lines: a header, entries 1…end in order, checkpoints after their entries, consistency proofs between them', () => {
    const records = lines.map(parsed);
    const header = records[0].header;
    expect(header).toMatchObject({ format: 'axis-audit-export/1', tenant_id: tenant, origin: `kernel.axis/audit/${tenant}`, start_size: 0, start_frontier: [], purged_through_seq: 0 });
    expect(header.verifier_keys).toEqual([key]);
    const end = header.end_size as number;
    expect(end).toBe(LOG_SIZE);
    const entries = records.filter((r) => r.entry).map((r) => r.entry);
    expect(entries.map((e) => e.seq)).toEqual(Array.from({ length: end }, (_, i) => i + 1));
    for (const e of entries) {
      expect(Object.keys(e).sort()).toEqual(['chain_hash', 'leaf_data', 'leaf_hash', 'purged', 'seq']);
      expect(Buffer.from(e.leaf_hash as string, 'base64').equals(createHash('sha256').update(Buffer.from([0])).update(e.leaf_data as string).digest())).toBe(true);
      expect(JSON.parse(e.leaf_data as string)).toMatchObject({ v: 1, tenant });
    }
    const cps = checkpoints();
    expect(cps.map((c) => c.tree_size)).toEqual([1, 2, LOG_SIZE]);
    expect(records.filter((r) => r.consistency).length).toBe(cps.length - 1);
    // Each checkpoint follows the entry at its size; each proof follows the later of its checkpoints.
    records.forEach((r, i) => {
      if (r.checkpoint) expect(records[i - 1].entry?.seq).toBe(r.checkpoint.tree_size);
      if (r.consistency) expect(records[i - 1].checkpoint?.tree_size).toBe(r.consistency.second_size);
    });
  });

  test('a good export verifies offline with the key alone (exit 0); progress goes to stderr, stdout is the one summary line', async () => {
    const keyFile = write('keys.txt', `# the tenant's audit key\n\n${otherKeys[0]}\n${key}\n`);
    const [withKey, withKeyFile] = await Promise.all([verifyCli(exportFile), verify(exportFile, '--key-file', keyFile)]);
    const end = parsed(lines[0]).header.end_size as number;
    const cps = checkpoints();
    const root = cps[cps.length - 1].root_hash as string;
    for (const run of [withKey, withKeyFile]) {
      expect(run.code).toBe(0);
      expect(run.stdout).toBe(`OK kernel.axis/audit/${tenant}: ${end} entries (seq 1–${end}) verified, 0 purged, ${cps.length} checkpoints; root at size ${end}: ${root}\n`);
      // The bar (plain lines: stderr is a pipe) ends at 100 %; none of it reaches stdout.
      expect(run.stderr).toMatch(new RegExp(`^verify 100\\.0% ${end.toLocaleString('en-US')}/${end.toLocaleString('en-US')}$`, 'm'));
      expect(run.stderr).not.toMatch(/[\r\x1b]/);
    }
  });

  test('export: stdout is one summary line, the progress bar is on stderr; partial exports (--from-seq, AXIS_TOKEN, KERNEL_GRPC_ADDR) verify too', async () => {
    const partial = path.join(dir, 'partial.jsonl');
    const run = await cli(['audit', 'export', '--tenant', tenant, '--from-seq', '51', '--out', partial], { AXIS_TOKEN: token, KERNEL_GRPC_ADDR: kernel.address });
    expect(run.code).toBe(0);
    const header = parsed(readFileSync(partial, 'utf8').split('\n')[0]).header;
    const end = header.end_size as number;
    expect(header.start_size).toBe(50);
    expect((header.start_frontier as string[]).length).toBe(3); // 50 leaves: complete subtrees of 32, 16 and 2
    expect(run.stdout).toMatch(new RegExp(`^exported ${end - 50} entries \\(seq 51–${end}\\) and 1 checkpoints of kernel\\.axis/audit/${tenant} to .*partial\\.jsonl\\n$`));
    expect(run.stderr).toMatch(/^export 100\.0% /m);
    expect(existsSync(`${partial}.partial`)).toBe(false);

    const verified = await verify(partial);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(new RegExp(`^OK kernel\\.axis/audit/${tenant}: ${end - 50} entries \\(seq 51–${end}\\) verified, 0 purged, 1 checkpoints; root at size ${end}: `));
  });

  test('export problems: a token for another tenant exits 1 naming the reason and leaves no file; bad arguments exit 2', async () => {
    const out = path.join(dir, 'refused.jsonl');
    const otherToken = await kernel.token({ tenants: ['somebody-else'], scope: 'audit:read' });
    const [refused, badSeq, noOut, noTenant] = await Promise.all([
      inProcess(['export', '--tenant', tenant, '--address', kernel.address, '--token', otherToken, '--out', out]),
      inProcess(['export', '--tenant', tenant, '--from-seq', '-3', '--out', out]),
      inProcess(['export', '--tenant', tenant]),
      inProcess(['export', '--out', out]),
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^kernel audit export: PERMISSION_DENIED TENANT_NOT_ALLOWED: /m);
    expect(existsSync(out) || existsSync(`${out}.partial`)).toBe(false);
    for (const run of [badSeq, noOut, noTenant]) {
      expect(run.code).toBe(2);
      expect(run.stderr).toContain('usage:');
    }
  });

  test('tampering fails with exit 1, naming the first bad seq and what is wrong', async () => {
    const cps = checkpoints();
    const end = parsed(lines[0]).header.end_size as number;

    // An entry's content edited.
    const editedAt = lines.findIndex((l) => (parsed(l).entry?.leaf_data as string | undefined)?.includes('"resource":"doc/42"'));
    const editedSeq = parsed(lines[editedAt]).entry.seq as number;
    const edited = [...lines];
    const e = parsed(edited[editedAt]);
    e.entry.leaf_data = (e.entry.leaf_data as string).replace('"resource":"doc/42"', '"resource":"doc/4200"');
    edited[editedAt] = JSON.stringify(e);

    // An entry deleted.
    const deleted = lines.filter((_, i) => i !== entryIndex(40));

    // Two neighbouring entries swapped (whole lines, seq included).
    let swapSeq = 60;
    while (!parsed(lines[entryIndex(swapSeq) + 1]).entry) swapSeq++;
    const swapped = [...lines];
    const at = entryIndex(swapSeq);
    [swapped[at], swapped[at + 1]] = [swapped[at + 1], swapped[at]];

    // The tail cut off (at a line end).
    const truncated = lines.slice(0, entryIndex(80) + 1);

    // A checkpoint rewritten to another root (note and record alike).
    const cpAt = lines.findIndex((l) => parsed(l).checkpoint?.tree_size === cps[1].tree_size);
    const rewritten = [...lines];
    const cp = parsed(rewritten[cpAt]);
    const fakeRoot = Buffer.alloc(32, 0x11).toString('base64');
    const noteLines = (cp.checkpoint.note as string).split('\n');
    noteLines[2] = fakeRoot;
    cp.checkpoint.note = noteLines.join('\n');
    cp.checkpoint.root_hash = fakeRoot;
    rewritten[cpAt] = JSON.stringify(cp);

    // A chain hash rewritten.
    const chained = [...lines];
    const ch = parsed(chained[entryIndex(77)]);
    ch.entry.chain_hash = Buffer.alloc(32, 0x22).toString('base64');
    chained[entryIndex(77)] = JSON.stringify(ch);

    // The header claims more than the file holds.
    const longer = [...lines];
    const h = parsed(longer[0]);
    h.header.end_size = end + 5;
    longer[0] = JSON.stringify(h);

    // A consistency proof's hash altered, and a proof removed.
    const proofAt = lines.findIndex((l) => parsed(l).consistency?.second_size === LOG_SIZE);
    const badProof = [...lines];
    const proof = parsed(badProof[proofAt]);
    (proof.consistency.hashes as string[])[0] = Buffer.alloc(32, 0x33).toString('base64');
    badProof[proofAt] = JSON.stringify(proof);
    const noProof = lines.filter((l) => parsed(l).consistency?.second_size !== 2);

    // A payload removed as a retention purge would, past the purge the header records.
    const purgedEntry = (copy: string[], seq: number) => {
      const p = parsed(copy[entryIndex(seq)]);
      p.entry.leaf_data = '';
      p.entry.purged = true;
      copy[entryIndex(seq)] = JSON.stringify(p);
      return copy;
    };
    const unpurged = purgedEntry([...lines], 30);

    const cases: Array<[string, string[], RegExp]> = [
      ['bad-proof', badProof, new RegExp(`^FAILED at seq 3: CONSISTENCY_INVALID — the proof that the checkpoint at size ${LOG_SIZE} extends the one at size 2 does not verify`)],
      ['no-proof', noProof, /^FAILED at seq 2: CONSISTENCY_INVALID — the consistency proof from the checkpoint at size 1 to the one at size 2 is missing/],
      ['purged-beyond', unpurged, /^FAILED at seq 30: ENTRY_MISSING — the entry at seq 30 is gone and no retention purge covers it/],
      ['edited', edited, new RegExp(`^FAILED at seq ${editedSeq}: PAYLOAD_CHANGED — `)],
      ['deleted', deleted, /^FAILED at seq 40: ENTRY_MISSING — /],
      ['swapped', swapped, new RegExp(`^FAILED at seq ${swapSeq}: ORDER_CHANGED — `)],
      ['truncated', truncated, new RegExp(`^FAILED at seq 81: ENTRY_MISSING — .*promises entries through seq ${end}, the file ends after seq 80`)],
      ['rewritten', rewritten, new RegExp(`^FAILED at seq ${cps[1].tree_size}: CHECKPOINT_INVALID — .*does not verify`)],
      ['chained', chained, /^FAILED at seq 77: CHAIN_BROKEN — /],
      ['longer', longer, new RegExp(`^FAILED at seq ${end + 1}: ENTRY_MISSING — `)],
    ];
    const files = cases.map(([name, content]) => write(`${name}.jsonl`, joined(content)));
    const runs = await pool(files.map((file) => () => verify(file)));
    const viaCli = await verifyCli(files[cases.findIndex(([name]) => name === 'swapped')]);
    expect(viaCli).toEqual({ ...runs[cases.findIndex(([name]) => name === 'swapped')], stderr: expect.any(String) });
    runs.forEach((run, i) => {
      const [name, , expected] = cases[i];
      expect({ name, code: run.code, stdout: run.stdout }).toEqual({ name, code: 1, stdout: expect.stringMatching(expected) });
      expect(run.stdout.split('\n')).toHaveLength(2); // one line
      expect(run.stdout + run.stderr).not.toMatch(STACK);
    });
  });

  test('purged entries (no payload, the stored leaf hash) verify when the header covers them with purged_through_seq', async () => {
    const copy = [...lines];
    for (const seq of [1, 2, 3]) {
      const p = parsed(copy[entryIndex(seq)]);
      p.entry.leaf_data = '';
      p.entry.purged = true;
      copy[entryIndex(seq)] = JSON.stringify(p);
    }
    const h = parsed(copy[0]);
    h.header.purged_through_seq = 3;
    copy[0] = JSON.stringify(h);
    const run = await verify(write('purged.jsonl', joined(copy)));
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^OK kernel\\.axis/audit/${tenant}: ${LOG_SIZE} entries \\(seq 1–${LOG_SIZE}\\) verified, 3 purged, 3 checkpoints; `));
  });

  test('entries after the last checkpoint are unverified: an export up to a size between checkpoints fails', async () => {
    const cps = checkpoints();
    const size = (cps[1].tree_size as number) + 3;
    expect(size).toBeLessThan(cps[2].tree_size as number);
    const out = path.join(dir, 'between.jsonl');
    const run = await inProcess(['export', '--tenant', tenant, '--address', kernel.address, '--token', token, '--to-size', String(size), '--out', out]);
    expect(run.code).toBe(0);
    const verified = await verify(out);
    expect(verified.code).toBe(1);
    expect(verified.stdout).toMatch(new RegExp(`^FAILED at seq ${(cps[1].tree_size as number) + 1}: UNVERIFIED_ENTRIES — entries ${(cps[1].tree_size as number) + 1}–${size} `));
  });

  test("another tenant's key (or any other key) does not verify the export: exit 1 at the first checkpoint", async () => {
    const first = checkpoints()[0].tree_size as number;
    const localKey = localVerifierKeyWithPlus(`kernel.axis/audit/${tenant}`);
    const runs = await pool([...otherKeys.map((k) => () => verify(exportFile, '--key', k)), () => verify(exportFile, '--key', localKey)]);
    for (const run of runs) {
      expect(run.code).toBe(1);
      expect(run.stdout).toMatch(new RegExp(`^FAILED at seq ${first}: CHECKPOINT_INVALID — .*no signature by a known key\\n$`));
    }
  });

  test('malformed input exits 2 with one clear line (naming the line) and no stack trace', async () => {
    const entryLine = entryIndex(5); // 0-based index; the file's line number is one more
    const n = entryLine + 1;
    const withEntry = (change: (entry: Record<string, unknown>) => void) => {
      const copy = [...lines];
      const record = parsed(copy[entryLine]);
      change(record.entry);
      copy[entryLine] = JSON.stringify(record);
      return joined(copy);
    };
    const replaced = (text: string) => {
      const copy = [...lines];
      copy[entryLine] = text;
      return joined(copy);
    };
    const garbage = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131 + 0x87) % 256));
    const editedEarlier = [...lines];
    const early = parsed(editedEarlier[entryIndex(3)]);
    early.entry.leaf_data = (early.entry.leaf_data as string).replace('"v":1', '"v":1 ');

    const cases: Array<[string, string | Buffer, RegExp]> = [
      ['not-json', replaced(lines[entryLine].slice(0, 30)), new RegExp(`line ${n}: not JSON`)],
      ['missing-field', withEntry((e) => delete e.chain_hash), new RegExp(`line ${n}: entry\\.chain_hash is missing$`)],
      ['string-seq', withEntry((e) => (e.seq = '5')), new RegExp(`line ${n}: entry\\.seq must be a number, not the string "5"$`)],
      ['bool-type', withEntry((e) => (e.purged = 'no')), new RegExp(`line ${n}: entry\\.purged must be true or false`)],
      ['short-hash', withEntry((e) => (e.leaf_hash = 'AAAA')), new RegExp(`line ${n}: entry\\.leaf_hash must be 32 bytes, not 3$`)],
      ['unknown-field', withEntry((e) => (e.extra = 1)), new RegExp(`line ${n}: entry has an unknown field "extra"$`)],
      ['huge-number', replaced(lines[entryLine].replace('"seq":5,', '"seq":123456789012345678901234567890,')), new RegExp(`line ${n}: entry\\.seq must be a whole number from 1 to 9007199254740991`)],
      ['overflow', replaced(lines[entryLine].replace('"seq":5,', '"seq":1e400,')), new RegExp(`line ${n}: entry\\.seq must be a whole number from 1 to 9007199254740991 \\(got Infinity\\)`)],
      ['two-records', replaced(`{"entry":${JSON.stringify(parsed(lines[entryLine]).entry)},"header":{}}`), new RegExp(`line ${n}: a record has exactly one key`)],
      ['array', replaced('[1,2,3]'), new RegExp(`line ${n}: a record is a JSON object, not an array`)],
      ['blank-line', replaced(''), new RegExp(`line ${n}: empty line`)],
      ['empty', '', /: the file is empty/],
      ['no-header', joined(lines.slice(1)), /line 1: the first record must be the header, not an entry$/],
      ['second-header', replaced(lines[0]), new RegExp(`line ${n}: a second header`)],
      ['bad-header', joined([JSON.stringify({ header: { ...parsed(lines[0]).header, start_size: -1 } }), ...lines.slice(1)]), /line 1: header\.start_size must be a whole number from 0/],
      ['bad-origin', joined([JSON.stringify({ header: { ...parsed(lines[0]).header, origin: 'kernel.axis/audit/x' } }), ...lines.slice(1)]), /line 1: header\.origin must be/],
      ['cut-mid-line', joined(lines).slice(0, -25), new RegExp(`line ${lines.length}: ends without a line end`)],
      ['garbage', garbage, /line 1: (is not valid UTF-8 text|not JSON)/],
      // A log problem earlier in the file does not hide a malformed line after it.
      ['malformed-after-problem', `${joined(editedEarlier)}{"entry":\n`, new RegExp(`line ${lines.length + 1}: not JSON`)],
    ];
    const runs = await pool([
      ...cases.map(([name, content]) => () => verify(write(`${name}.jsonl`, content))),
      () => verify(path.join(dir, 'does-not-exist.jsonl')),
      () => verify(dir),
      () => verify(exportFile, '--key', 'not-a-key'),
      () => verify(exportFile, '--key', key.replace(/\+[0-9a-f]{8}\+/, '+00000000+')),
      () => verify(exportFile, '--key-file', path.join(dir, 'no-keys.txt')),
    ]);
    const expected = [
      ...cases.map(([name, , message]) => [name, message] as const),
      ['missing file', /^ERROR cannot read .*does-not-exist\.jsonl: ENOENT/] as const,
      ['directory', /^ERROR cannot read .*: EISDIR/] as const,
      ['bad key', /^ERROR bad verifier key \(--key #1\): /] as const,
      ['bad key hash', /^ERROR bad verifier key \(--key #1\): the verifier key hash does not match/] as const,
      ['missing key file', /^ERROR cannot read key file /] as const,
    ];
    // The same through the CLI process: exit 2, one line, no stack trace.
    const garbageViaCli = await verifyCli(path.join(dir, 'garbage.jsonl'));
    expect(garbageViaCli).toEqual({ ...runs[cases.findIndex(([name]) => name === 'garbage')], stderr: expect.any(String) });
    expect(garbageViaCli.stdout + garbageViaCli.stderr).not.toMatch(STACK);
    runs.forEach((run, i) => {
      const [name, message] = expected[i];
      const oneLine = run.stdout.replace(/\n$/, '');
      expect({ name, code: run.code, lines: run.stdout.split('\n').length, error: oneLine.startsWith('ERROR ') }).toEqual({ name, code: 2, lines: 2, error: true });
      expect({ name, stdout: oneLine }).toEqual({ name, stdout: expect.stringMatching(message) });
      expect(run.stdout + run.stderr).not.toMatch(STACK);
    });
  });

  test('bad usage exits 2 with the usage on stderr', async () => {
    const runs = await Promise.all([
      cli(['audit', 'verify', exportFile]),
      inProcess([]),
      inProcess(['bogus']),
      inProcess(['verify', '--key', key]),
      inProcess(['verify', exportFile, 'second-file', '--key', key]),
      inProcess(['verify', exportFile, '--key', key, '--bogus']),
    ]);
    for (const run of runs) {
      expect(run.code).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toContain('kernel audit verify FILE --key');
    }
  });
});
