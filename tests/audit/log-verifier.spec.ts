import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import * as fc from 'fast-check';
import { LogVerifier, verifiableCheckpoint, type ProblemKind, type VerifiableCheckpoint, type VerifiableEntry } from '../../services/audit/log-verifier';
import { CHAIN_START, CompactRange, EMPTY_ROOT } from '../../services/audit/merkle';
import { checkpointBody, ed25519RawPublicKey, parseVerifierKey, signNote, verifierKey } from '../../services/audit/signed-note';

/*
 * The log verifier (what VerifyLog and `kernel audit verify` both run) fed hand-made logs, no
 * database: a good log verifies with the right counts and root; each kind of damage is named
 * at the right seq. Leaf, chain and tree hashes of the good logs are computed here with
 * node:crypto from RFC 6962 (not with the kernel's merkle.ts), so a wrong hash domain in the
 * kernel cannot make both sides agree.
 */

const sha256 = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
const leafOf = (data: Buffer) => sha256(Buffer.from([0]), data);
const chainOf = (previous: Buffer, leaf: Buffer) => sha256(Buffer.from([2]), previous, leaf);
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (2 * k < leaves.length) k *= 2;
  return sha256(Buffer.from([1]), mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

interface Log {
  entries: VerifiableEntry[];
  leaves: Buffer[];
  chains: Buffer[];
}
/** A good log of n entries (seq 1..n), each with its stored leaf and chain hash. */
function goodLog(n: number, salt = ''): Log {
  const entries: VerifiableEntry[] = [];
  const leaves: Buffer[] = [];
  const chains: Buffer[] = [];
  let chain = Buffer.alloc(32);
  for (let seq = 1; seq <= n; seq++) {
    const data = Buffer.from(JSON.stringify({ seq, salt, action: 'test.Event' }));
    const leaf = leafOf(data);
    chain = chainOf(chain, leaf);
    leaves.push(leaf);
    chains.push(chain);
    entries.push({ seq, data, purged: false, storedLeaf: leaf, storedChain: chain });
  }
  return { entries, leaves, chains };
}
const checkpointAt = (log: Log, size: number): VerifiableCheckpoint => ({ size, root: mth(log.leaves.slice(0, size)) });

type Item = { entry: VerifiableEntry } | { checkpoint: VerifiableCheckpoint };
/** Entries in order, each checkpoint right after the entry at its size. */
function feed(entries: VerifiableEntry[], checkpoints: VerifiableCheckpoint[] = []): Item[] {
  const items: Item[] = [];
  for (const c of checkpoints.filter((c) => c.size === 0)) items.push({ checkpoint: c });
  for (const entry of entries) {
    items.push({ entry });
    for (const c of checkpoints.filter((c) => c.size === entry.seq)) items.push({ checkpoint: c });
  }
  return items;
}
function verify(items: Item[], start?: ConstructorParameters<typeof LogVerifier>[0]) {
  const verifier = new LogVerifier(start);
  for (const item of items) {
    if ('entry' in item) verifier.addEntry(item.entry);
    else verifier.addCheckpoint(item.checkpoint);
  }
  return verifier.finish();
}
const problemOf = (items: Item[]) => {
  const { ok, problem } = verify(items);
  return ok ? 'ok' : `${problem!.kind}@${problem!.seq}`;
};
const copy = (e: VerifiableEntry, change: Partial<VerifiableEntry> = {}): VerifiableEntry => ({ ...e, ...change });

describe('LogVerifier', () => {
  test('a good log verifies: counts, root and chain over all entries, every checkpoint checked', () => {
    const log = goodLog(40);
    const result = verify(feed(log.entries, [checkpointAt(log, 1), checkpointAt(log, 17), checkpointAt(log, 40)]));
    expect(result).toEqual({ ok: true, problem: undefined, entries: 40, purged: 0, checkpoints: 3, root: mth(log.leaves), chain: log.chains[39] });
    // The empty log.
    expect(verify([])).toEqual({ ok: true, problem: undefined, entries: 0, purged: 0, checkpoints: 0, root: EMPTY_ROOT, chain: CHAIN_START });
    // Entries without stored hashes (nothing to compare with) still build the root.
    const bare = log.entries.map((e) => copy(e, { storedLeaf: null, storedChain: null }));
    expect(verify(feed(bare, [checkpointAt(log, 40)]))).toMatchObject({ ok: true, entries: 40, root: mth(log.leaves) });
  });

  test('purged entries count as purged and stand in with their stored leaf hash', () => {
    const log = goodLog(10);
    const entries = log.entries.map((e) => (e.seq <= 4 ? copy(e, { data: null, purged: true }) : e));
    expect(verify(feed(entries, [checkpointAt(log, 10)]))).toMatchObject({ ok: true, entries: 10, purged: 4, checkpoints: 1, root: mth(log.leaves) });
    // A purged entry must still have its stored leaf: without it the position cannot be proven.
    const lost = entries.map((e) => (e.seq === 3 ? copy(e, { storedLeaf: null }) : e));
    expect(problemOf(feed(lost))).toBe('ENTRY_MISSING@3');
    // A payload gone without a purge covering it is missing, not purged.
    expect(problemOf(feed(log.entries.map((e) => (e.seq === 6 ? copy(e, { data: null }) : e))))).toBe('ENTRY_MISSING@6');
  });

  test('each kind of damage is named at the first bad seq', () => {
    const log = goodLog(30);
    const at = (seq: number) => log.entries[seq - 1];
    const cps = [checkpointAt(log, 10), checkpointAt(log, 20), checkpointAt(log, 30)];
    const without = (seq: number) => log.entries.filter((e) => e.seq !== seq);
    const replaced = (seq: number, entry: VerifiableEntry) => log.entries.map((e) => (e.seq === seq ? entry : e));
    // An entry slipped in at seq 5: the log's own entries follow it, one seq later, hashes and all.
    const intruderData = Buffer.from('{"intruder":true}');
    const slipped = [
      ...log.entries.slice(0, 4),
      { seq: 5, data: intruderData, purged: false, storedLeaf: leafOf(intruderData), storedChain: Buffer.alloc(32, 5) },
      ...log.entries.slice(4).map((e) => copy(e, { seq: e.seq + 1 })),
    ];
    const cases: Array<[string, Item[], string, string]> = [
      ['payload edited', feed(replaced(12, copy(at(12), { data: Buffer.from('{"forged":true}') })), cps), 'PAYLOAD_CHANGED@12', 'the entry at seq 12 does not hash to its leaf'],
      ['entry deleted', feed(without(7), cps), 'ENTRY_MISSING@7', 'no entry with seq 7 (the next one is 8)'],
      ['first entry deleted', feed(without(1), cps), 'ENTRY_MISSING@1', 'no entry with seq 1 (the next one is 2)'],
      ['tail cut, a checkpoint beyond it kept', [...feed(log.entries.slice(0, 25), cps.slice(0, 2)), { checkpoint: cps[2] }], 'ENTRY_MISSING@26', 'a signed checkpoint covers 30 entries, the log holds 25'],
      // Whole positions swapped (seq numbers travel with them): seq 15 turns up after 16.
      ['positions swapped', feed([...log.entries.slice(0, 14), at(16), at(15), ...log.entries.slice(16)], cps), 'ORDER_CHANGED@15', 'the entry with seq 15 comes after seq 16'],
      // Payloads swapped under fixed positions: the entry at 15 is the one the log holds at 16.
      [
        'payloads swapped',
        feed(replaced(16, copy(at(16), { data: at(15).data })).map((e) => (e.seq === 15 ? copy(e, { data: at(16).data }) : e)), cps),
        'ORDER_CHANGED@15',
        'the entry at seq 15 is the one the log holds at seq 16',
      ],
      ['an entry slipped in', feed(slipped), 'ORDER_CHANGED@5', "the log's entry for seq 5 is stored at seq 6"],
      ['a seq repeated', feed([...log.entries.slice(0, 9), at(9), ...log.entries.slice(9)], cps), 'ORDER_CHANGED@9', 'seq 9 appears again after seq 9'],
      ['chain hash rewritten', feed(replaced(22, copy(at(22), { storedChain: Buffer.alloc(32, 7) })), cps), 'CHAIN_BROKEN@22', 'the chain hash at seq 22 does not follow from seq 21'],
      ['signed root differs from the entries', feed(log.entries, [cps[0], { size: 20, root: Buffer.alloc(32, 9) }, cps[2]]), 'CHECKPOINT_MISMATCH@11', 'entries 11–20 do not produce the root signed at size 20'],
      ['first checkpoint differs', feed(log.entries, [{ size: 10, root: Buffer.alloc(32, 9) }]), 'CHECKPOINT_MISMATCH@1', 'entries 1–10 do not produce the root signed at size 10'],
      ['checkpoint signature invalid', feed(log.entries, [cps[0], { ...cps[1], invalid: 'bad signature' }]), 'CHECKPOINT_INVALID@20', 'the checkpoint at size 20: bad signature'],
      ['checkpoint after a later entry', [...feed(log.entries.slice(0, 12)), { checkpoint: cps[0] }], 'ORDER_CHANGED@10', 'the checkpoint at size 10 comes after entry 12'],
    ];
    expect(cases.map(([name, items]) => [name, problemOf(items), verify(items).problem?.detail])).toEqual(cases.map(([name, , expected, detail]) => [name, expected, detail]));
  });

  test('the result stops at the first problem: counts and root cover the entries before it', () => {
    const log = goodLog(20);
    const broken = log.entries.map((e) => (e.seq === 8 ? copy(e, { storedChain: Buffer.alloc(32) }) : e));
    const result = verify(feed(broken, [checkpointAt(log, 5), checkpointAt(log, 20)]));
    expect(result).toMatchObject({ ok: false, entries: 7, checkpoints: 1, root: mth(log.leaves.slice(0, 7)), chain: log.chains[6] });
    expect(result.problem).toEqual({ seq: 8, kind: 'CHAIN_BROKEN', detail: 'the chain hash at seq 8 does not follow from seq 7' });
  });

  test('a partial log verifies from the verified prefix it starts at (size, right edge, chain)', () => {
    const log = goodLog(50);
    const prefix = new CompactRange();
    for (const leaf of log.leaves.slice(0, 20)) prefix.append(leaf);
    const start = { size: 20, frontier: prefix.frontier(), chain: log.chains[19] };
    const tail = feed(log.entries.slice(20), [checkpointAt(log, 50)]);
    expect(verify(tail, start)).toMatchObject({ ok: true, entries: 30, checkpoints: 1, root: mth(log.leaves) });
    // The wrong chain to start from, or a gap right after the prefix, is found at once.
    expect(verify(tail, { ...start, chain: log.chains[18] }).problem).toMatchObject({ seq: 21, kind: 'CHAIN_BROKEN' });
    expect(verify(feed(log.entries.slice(21)), start).problem).toMatchObject({ seq: 21, kind: 'ENTRY_MISSING' });
    // A checkpoint mismatch in a partial log names the first entry after the prefix.
    expect(verify(feed(log.entries.slice(20), [{ size: 50, root: Buffer.alloc(32) }]), start).problem).toMatchObject({ seq: 21, kind: 'CHECKPOINT_MISMATCH' });
  });

  test('logs far longer than the lookahead window are checked as they stream, with the same verdicts', () => {
    const log = goodLog(1500);
    expect(verify(feed(log.entries, [checkpointAt(log, 700), checkpointAt(log, 1500)]))).toMatchObject({ ok: true, entries: 1500, checkpoints: 2 });
    const swapped = [...log.entries.slice(0, 999), log.entries[1000], log.entries[999], ...log.entries.slice(1001)];
    expect(problemOf(feed(swapped))).toBe('ORDER_CHANGED@1000');
    // An entry moved further away than the window can see is missing where it should be.
    const far = [...log.entries.slice(0, 99), ...log.entries.slice(100, 500), log.entries[99], ...log.entries.slice(500)];
    expect(problemOf(feed(far))).toBe('ENTRY_MISSING@100');
    const verifier = new LogVerifier();
    for (const entry of log.entries.slice(0, 400)) verifier.addEntry(entry.seq === 50 ? copy(entry, { data: Buffer.from('x') }) : entry);
    // Found while streaming (before finish): the window is bounded.
    expect(verifier.failed).toMatchObject({ seq: 50, kind: 'PAYLOAD_CHANGED' });
    expect(verifier.size).toBe(49);
    expect(verifier.finish()).toMatchObject({ ok: false, entries: 49 });
  });

  test('property: one random damage of a random kind at a random seq is named exactly', () => {
    const kinds = ['PAYLOAD_CHANGED', 'ENTRY_MISSING', 'ORDER_CHANGED', 'CHAIN_BROKEN', 'CHECKPOINT_MISMATCH', 'CHECKPOINT_INVALID'] as const;
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 120 }), fc.nat(), fc.constantFrom(...kinds), fc.string(), (n, pick, kind, salt) => {
        const log = goodLog(n, salt);
        const seq = 1 + (pick % (n - 1)); // 1..n-1: there is always a next entry
        let entries = log.entries;
        let checkpoints = [checkpointAt(log, n)];
        let expected: [ProblemKind, number] = [kind, seq];
        switch (kind) {
          case 'PAYLOAD_CHANGED':
            entries = entries.map((e) => (e.seq === seq ? copy(e, { data: Buffer.concat([e.data!, Buffer.from(' ')]) }) : e));
            break;
          case 'ENTRY_MISSING':
            entries = entries.filter((e) => e.seq !== seq);
            break;
          case 'ORDER_CHANGED':
            entries = entries.map((e) => (e.seq === seq ? log.entries[seq] : e.seq === seq + 1 ? log.entries[seq - 1] : e));
            break;
          case 'CHAIN_BROKEN':
            entries = entries.map((e) => (e.seq === seq ? copy(e, { storedChain: chainOf(e.storedChain!, e.storedLeaf!) }) : e));
            break;
          case 'CHECKPOINT_MISMATCH':
            checkpoints = [checkpointAt(log, seq), { size: n, root: checkpointAt(log, n - 1).root }];
            expected = [kind, seq + 1];
            break;
          case 'CHECKPOINT_INVALID':
            checkpoints = [{ ...checkpointAt(log, seq), invalid: 'not signed' }, checkpointAt(log, n)];
            break;
        }
        const { problem } = verify(feed(entries, checkpoints));
        expect([problem?.kind, problem?.seq]).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });
});

describe('verifiableCheckpoint (signed note → checkpoint)', () => {
  const origin = 'kernel.axis/audit/t1';
  const keyPair = (): { privateKey: KeyObject; raw: Buffer } => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    return { privateKey, raw: ed25519RawPublicKey(publicKey.export({ format: 'der', type: 'spki' })) };
  };
  const key = keyPair();
  const verifiers = [parseVerifierKey(verifierKey(origin, key.raw))];
  const root = sha256(Buffer.from('root'));
  const note = (body = checkpointBody({ origin, size: 7, root, time: '2026-11-26T12:00:00.000000Z' }), signer = key) => signNote(body, origin, signer.privateKey, signer.raw);

  test('a note signed by a known key opens to its size and root; what its holder claims must match', () => {
    expect(verifiableCheckpoint(note(), verifiers, origin)).toEqual({ size: 7, root });
    expect(verifiableCheckpoint(note(), verifiers, origin, { size: 7, root })).toEqual({ size: 7, root });
    expect(verifiableCheckpoint(note(), verifiers, origin, { size: 7 })).toEqual({ size: 7, root });
    expect(verifiableCheckpoint(note(), verifiers, origin, { size: 8, root })).toEqual({ size: 8, root, invalid: 'the signed note covers size 7, its record claims 8 (or another root)' });
    expect(verifiableCheckpoint(note(), verifiers, origin, { size: 7, root: Buffer.alloc(32) })).toMatchObject({ size: 7, root: Buffer.alloc(32), invalid: expect.stringContaining('another root') });
  });

  test('another log, another key, a changed body or garbage are invalid, with the reason', () => {
    const otherOrigin = 'kernel.axis/audit/t2';
    const other = checkpointBody({ origin: otherOrigin, size: 7, root });
    expect(verifiableCheckpoint(signNote(other, origin, key.privateKey, key.raw), verifiers, origin)).toEqual({
      size: 0,
      root: EMPTY_ROOT,
      invalid: `it is a checkpoint of ${otherOrigin}, not ${origin}`,
    });
    expect(verifiableCheckpoint(note(undefined, keyPair()), verifiers, origin, { size: 7 })).toEqual({ size: 7, root: EMPTY_ROOT, invalid: 'the note carries no signature by a known key' });
    expect(verifiableCheckpoint(note().replace('\n7\n', '\n8\n'), verifiers, origin).invalid).toBe(`the signature by ${origin} does not verify`);
    expect(verifiableCheckpoint('not a note', verifiers, origin).invalid).toBe('a signed note is a body, a blank line and signature lines');
    expect(verifiableCheckpoint(note(), [], origin).invalid).toBe('the note carries no signature by a known key');
  });
});
