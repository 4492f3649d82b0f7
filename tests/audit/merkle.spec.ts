import { createHash } from 'node:crypto';
import * as fc from 'fast-check';
import {
  CHAIN_START,
  CompactRange,
  EMPTY_ROOT,
  consistencyRanges,
  foldRange,
  frontierNodes,
  hashChain,
  hashChildren,
  hashLeaf,
  inclusionRanges,
  MissingNodeError,
  nodeKey,
  rangeHashes,
  rangeNodes,
  splitPoint,
  verifyConsistency,
  verifyInclusion,
  type NodeId,
  type NodeSource,
} from '../../services/audit/merkle';

/*
 * The kernel's Merkle tree (services/audit/merkle.ts) against a naive reference written here
 * straight from RFC 6962 §2.1 (MTH, PATH, SUBPROOF as recursive definitions over the leaf list),
 * sharing no code with the kernel: roots, inclusion and consistency proofs for every tree size
 * 1..300, plus the verification functions against proofs the reference made. No database.
 */

// ---- the reference -------------------------------------------------------------------------
const sha256 = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
const refLeaf = (data: Buffer) => sha256(Buffer.from([0]), data);
const refNode = (l: Buffer, r: Buffer) => sha256(Buffer.from([1]), l, r);
/** The largest power of two smaller than n (n > 1), by doubling. */
const refSplit = (n: number) => {
  let k = 1;
  while (2 * k < n) k *= 2;
  return k;
};
/** RFC 6962 §2.1: MTH(D[n]) over leaf hashes. */
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0];
  const k = refSplit(leaves.length);
  return refNode(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}
/** RFC 6962 §2.1.1: PATH(m, D[n]). */
function path(m: number, leaves: Buffer[]): Buffer[] {
  if (leaves.length <= 1) return [];
  const k = refSplit(leaves.length);
  return m < k ? [...path(m, leaves.slice(0, k)), mth(leaves.slice(k))] : [...path(m - k, leaves.slice(k)), mth(leaves.slice(0, k))];
}
/** RFC 6962 §2.1.2: SUBPROOF(m, D[n], b). */
function subproof(m: number, leaves: Buffer[], complete: boolean): Buffer[] {
  const n = leaves.length;
  if (m === n) return complete ? [] : [mth(leaves)];
  const k = refSplit(n);
  return m <= k
    ? [...subproof(m, leaves.slice(0, k), complete), mth(leaves.slice(k))]
    : [...subproof(m - k, leaves.slice(k), false), mth(leaves.slice(0, k))];
}
// ---------------------------------------------------------------------------------------------

const MAX = 300;
const LEAVES = Array.from({ length: MAX }, (_, i) => refLeaf(Buffer.from(`entry ${i} ${'x'.repeat(i % 7)}`)));

/** Every stored node of the tree of `size` leaves, as the integrator stores them (CompactRange's onNode, plus the leaves). */
function nodeStore(size: number): Map<string, Buffer> {
  const nodes = new Map<string, Buffer>();
  const tree = new CompactRange();
  for (let i = 0; i < size; i++) {
    nodes.set(nodeKey({ level: 0, index: i }), LEAVES[i]);
    tree.append(LEAVES[i], (node, hash) => nodes.set(nodeKey(node), hash));
  }
  return nodes;
}
const STORE = nodeStore(MAX);
const source =
  (nodes: Map<string, Buffer>): NodeSource =>
  async (ids: NodeId[]) =>
    new Map(ids.flatMap((id) => (nodes.has(nodeKey(id)) ? [[nodeKey(id), nodes.get(nodeKey(id))!] as const] : [])));

const size = fc.integer({ min: 1, max: MAX });
const sizeAndIndex = size.chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 0, max: n - 1 })));
const twoSizes = size.chain((n) => fc.tuple(fc.integer({ min: 1, max: n }), fc.constant(n)));
const flip = (hashes: Buffer[], at: number) => hashes.map((h, i) => (i === at ? Buffer.from(h.map((b, j) => (j === 0 ? b ^ 1 : b))) : h));

describe('Merkle tree (RFC 6962 / RFC 9162) against a naive reference', () => {
  test('hash domains: leaf 0x00, node 0x01, chain 0x02; the empty tree is SHA-256 of nothing; the chain starts at 32 zero bytes', () => {
    const a = Buffer.from('a');
    const h = sha256(Buffer.from('x'));
    expect(hashLeaf(a)).toEqual(sha256(Buffer.from([0]), a));
    expect(hashChildren(h, LEAVES[0])).toEqual(sha256(Buffer.from([1]), h, LEAVES[0]));
    expect(hashChain(h, LEAVES[0])).toEqual(sha256(Buffer.from([2]), h, LEAVES[0]));
    expect(EMPTY_ROOT).toEqual(sha256());
    expect(CHAIN_START).toEqual(Buffer.alloc(32));
    expect(foldRange([])).toEqual(EMPTY_ROOT);
    expect(new CompactRange().root()).toEqual(EMPTY_ROOT);
  });

  test('splitPoint is the largest power of two strictly below n', () => {
    for (let n = 2; n <= 1100; n++) {
      const k = splitPoint(n);
      expect([k < n, 2 * k >= n, Number.isInteger(Math.log2(k))]).toEqual([true, true, true]);
    }
    expect([splitPoint(2), splitPoint(3), splitPoint(4), splitPoint(5), splitPoint(1024), splitPoint(1025)]).toEqual([1, 2, 2, 4, 512, 1024]);
  });

  test('the root of every size 0..300, appended leaf by leaf, is MTH; the frontier is the size\'s complete subtrees', () => {
    const tree = new CompactRange();
    for (let n = 1; n <= MAX; n++) {
      tree.append(LEAVES[n - 1]);
      expect(tree.size).toBe(n);
      expect(tree.root().equals(mth(LEAVES.slice(0, n)))).toBe(true);
      const frontier = frontierNodes(n);
      // One complete subtree per set bit of n, largest first, together covering [0, n).
      expect(frontier.map((f) => 2 ** f.level)).toEqual(
        [...n.toString(2)].map((bit, i, bits) => (bit === '1' ? 2 ** (bits.length - 1 - i) : 0)).filter((x) => x > 0),
      );
      expect(tree.frontier().map((h) => h.toString('hex'))).toEqual(frontier.map((f) => mth(LEAVES.slice(f.index * 2 ** f.level, (f.index + 1) * 2 ** f.level)).toString('hex')));
    }
  });

  test('every node reported while appending is the complete subtree it names', () => {
    for (const [key, hash] of STORE) {
      const [level, index] = key.split('/').map(Number);
      expect(hash.equals(mth(LEAVES.slice(index * 2 ** level, (index + 1) * 2 ** level)))).toBe(true);
    }
    // Levels 0..8 of 300 leaves: 300 + 150 + 75 + 37 + 18 + 9 + 4 + 2 + 1 nodes.
    expect(STORE.size).toBe(300 + 150 + 75 + 37 + 18 + 9 + 4 + 2 + 1);
  });

  test('a tree resumed from a stored frontier continues exactly like the tree that never stopped', () => {
    fc.assert(
      fc.property(twoSizes, ([m, n]) => {
        const first = new CompactRange();
        for (let i = 0; i < m; i++) first.append(LEAVES[i]);
        const resumed = new CompactRange(m, first.frontier());
        const seen: string[] = [];
        for (let i = m; i < n; i++) resumed.append(LEAVES[i], (node, hash) => seen.push(`${nodeKey(node)}=${hash.toString('hex')}`));
        expect(resumed.size).toBe(n);
        expect(resumed.root().equals(mth(LEAVES.slice(0, n)))).toBe(true);
        for (const s of seen) {
          const [key, hex] = s.split('=');
          expect(STORE.get(key)?.toString('hex')).toBe(hex);
        }
      }),
    );
    expect(() => new CompactRange(5, [LEAVES[0]])).toThrow('a tree of 5 leaves has 2 frontier nodes, got 1');
    expect(() => new CompactRange(0, [LEAVES[0]])).toThrow();
  });

  test('rangeNodes covers [start, end) with aligned complete subtrees whose fold is MTH of the range (the ranges RFC 6962 recursion makes)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8 }), fc.nat(), fc.integer({ min: 1, max: 256 }), (level, slot, len) => {
        // RFC ranges start at a multiple of a power of two at least as large as their length.
        const width = 2 ** level;
        fc.pre(len <= width);
        const start = (slot % Math.floor(MAX / width + 1)) * width;
        const end = Math.min(start + len, MAX);
        fc.pre(end > start);
        const nodes = rangeNodes(start, end);
        let at = start;
        for (const n of nodes) {
          expect(n.index * 2 ** n.level).toBe(at); // contiguous and aligned
          at += 2 ** n.level;
        }
        expect(at).toBe(end);
        const levels = nodes.map((n) => n.level);
        expect([...levels].sort((a, b) => b - a)).toEqual(levels); // sizes fall from left to right
        expect(foldRange(nodes.map((n) => STORE.get(nodeKey(n))!)).equals(mth(LEAVES.slice(start, end)))).toBe(true);
      }),
    );
    expect(rangeNodes(4, 4)).toEqual([]);
    expect(rangeNodes(0, 7)).toEqual([
      { level: 2, index: 0 },
      { level: 1, index: 2 },
      { level: 0, index: 6 },
    ]);
  });

  test('inclusion proofs equal the reference PATH for random sizes 1..300 and indexes, and verify; tampered ones do not', async () => {
    await fc.assert(
      fc.asyncProperty(sizeAndIndex, fc.nat(), async ([n, m], at) => {
        const leaves = LEAVES.slice(0, n);
        const root = mth(leaves);
        const proof = await rangeHashes(inclusionRanges(m, 0, n), source(STORE));
        expect(proof.map((h) => h.toString('hex'))).toEqual(path(m, leaves).map((h) => h.toString('hex')));
        expect(verifyInclusion(m, n, leaves[m], proof, root)).toBe(true);
        // Wrong leaf, position or root, a flipped bit, a hash too many or too few: refused. (The size
        // is not checked by the algorithm alone: the signed checkpoint binds it to the root.)
        if (n > 1) {
          expect(verifyInclusion(m, n, leaves[(m + 1) % n], proof, root)).toBe(false);
          expect(verifyInclusion((m ^ 1) < n ? m ^ 1 : m - 1, n, leaves[m], proof, root)).toBe(false);
        }
        expect(verifyInclusion(m, n, leaves[m], proof, sha256(root))).toBe(false);
        expect(verifyInclusion(n, n, leaves[m], proof, root)).toBe(false);
        expect(verifyInclusion(m, n, leaves[m], [...proof, LEAVES[0]], root)).toBe(false);
        if (proof.length > 0) {
          expect(verifyInclusion(m, n, leaves[m], flip(proof, at % proof.length), root)).toBe(false);
          expect(verifyInclusion(m, n, leaves[m], proof.slice(0, -1), root)).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('consistency proofs equal the reference SUBPROOF for random size pairs 1..300, and verify; tampered ones do not', async () => {
    await fc.assert(
      fc.asyncProperty(twoSizes, fc.nat(), async ([m, n], at) => {
        const [old, now] = [mth(LEAVES.slice(0, m)), mth(LEAVES.slice(0, n))];
        const proof = await rangeHashes(consistencyRanges(m, 0, n), source(STORE));
        expect(proof.map((h) => h.toString('hex'))).toEqual(subproof(m, LEAVES.slice(0, n), true).map((h) => h.toString('hex')));
        expect(verifyConsistency(m, n, proof, old, now)).toBe(true);
        expect(verifyConsistency(m, n, proof, sha256(old), now)).toBe(false);
        expect(verifyConsistency(m, n, proof, old, sha256(now))).toBe(false);
        expect(verifyConsistency(m, n, [...proof, LEAVES[0]], old, now)).toBe(false);
        if (m < n) {
          expect(verifyConsistency(m, n, [], old, now)).toBe(false);
          expect(verifyConsistency(m, n, flip(proof, at % proof.length), old, now)).toBe(false);
          expect(verifyConsistency(m, n, proof.slice(0, -1), old, now)).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('consistency edge cases: equal sizes need no proof and equal roots; sizes below 1 or crossed are refused', () => {
    const [r3, r5] = [mth(LEAVES.slice(0, 3)), mth(LEAVES.slice(0, 5))];
    expect(consistencyRanges(5, 0, 5)).toEqual([]);
    expect(verifyConsistency(5, 5, [], r5, r5)).toBe(true);
    expect(verifyConsistency(5, 5, [], r5, r3)).toBe(false);
    expect(verifyConsistency(5, 5, [r3], r5, r5)).toBe(false);
    expect(verifyConsistency(0, 5, [], EMPTY_ROOT, r5)).toBe(false);
    expect(verifyConsistency(5, 3, [], r5, r3)).toBe(false);
    expect(verifyConsistency(-1, 3, [r3], r5, r3)).toBe(false);
  });

  test('a node the proof needs and the store lacks is a MissingNodeError naming it', async () => {
    const holed = new Map(STORE);
    holed.delete(nodeKey({ level: 2, index: 1 }));
    await expect(rangeHashes([[4, 8]], source(holed))).rejects.toThrow(new MissingNodeError({ level: 2, index: 1 }));
    await expect(rangeHashes([[4, 8]], source(holed))).rejects.toMatchObject({ node: { level: 2, index: 1 }, message: 'Merkle node 2/1 is missing' });
    // Each node is asked for once, however many ranges need it.
    const asked: string[] = [];
    await rangeHashes(
      [
        [0, 4],
        [0, 4],
        [4, 6],
      ],
      async (ids) => {
        asked.push(...ids.map(nodeKey));
        return source(STORE)(ids);
      },
    );
    expect(asked.sort()).toEqual(['1/2', '2/0']);
  });

  test('the inclusion ranges of the kernel are the reference PATH\'s subtrees (by position), leaf side first', () => {
    expect(inclusionRanges(0, 0, 1)).toEqual([]);
    expect(inclusionRanges(3, 0, 7)).toEqual([
      [2, 3],
      [0, 2],
      [4, 7],
    ]);
    expect(consistencyRanges(3, 0, 7)).toEqual([
      [2, 3],
      [3, 4],
      [0, 2],
      [4, 7],
    ]);
    expect(consistencyRanges(4, 0, 7)).toEqual([[4, 7]]);
  });
});
