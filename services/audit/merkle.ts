import { createHash } from 'node:crypto';

/**
 * The log's Merkle tree, as RFC 6962 §2.1 / RFC 9162 §2.1 define it: SHA-256, leaf hashes
 * `H(0x00 || data)`, interior nodes `H(0x01 || left || right)`, the empty tree `H()`, and the
 * split of n leaves at the largest power of two below n. Next to it, the per-tenant hash chain
 * `chain_i = H(0x02 || chain_{i-1} || leaf_i)` (chain_0 = 32 zero bytes), whose own prefix keeps
 * it apart from both tree domains.
 *
 * Positions: leaf i (0-based) is the entry with seq i + 1. A node (level, index) is the complete
 * subtree over leaves [index * 2^level, (index + 1) * 2^level); level 0 is a leaf.
 */
export const HASH_BYTES = 32;
export const CHAIN_START = Buffer.alloc(HASH_BYTES);

const sha256 = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);
const CHAIN_PREFIX = Buffer.from([0x02]);

export const EMPTY_ROOT = sha256();
export const hashLeaf = (data: Uint8Array): Buffer => sha256(LEAF_PREFIX, data);
export const hashChildren = (left: Uint8Array, right: Uint8Array): Buffer => sha256(NODE_PREFIX, left, right);
export const hashChain = (previous: Uint8Array, leafHash: Uint8Array): Buffer => sha256(CHAIN_PREFIX, previous, leafHash);

export interface NodeId {
  level: number;
  index: number;
}
export const nodeKey = (n: NodeId) => `${n.level}/${n.index}`;

/** Sizes are JS numbers: exact up to 2^53 leaves, far beyond any log here. */
const pow2 = (level: number) => 2 ** level;

/** The largest power of two strictly below n (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The aligned complete subtrees that exactly cover [start, end), left to right. For the ranges
 * RFC 6962's recursion produces (start a multiple of a power of two at least end - start) their
 * sizes fall from left to right, and the range's hash is their right fold (foldRange).
 */
export function rangeNodes(start: number, end: number): NodeId[] {
  const nodes: NodeId[] = [];
  let at = start;
  while (at < end) {
    let level = 0;
    while (at % pow2(level + 1) === 0 && at + pow2(level + 1) <= end) level++;
    nodes.push({ level, index: at / pow2(level) });
    at += pow2(level);
  }
  return nodes;
}

/** MTH of a range from its rangeNodes hashes: H(n0, H(n1, … H(n_{k-2}, n_{k-1}))). */
export function foldRange(hashes: Buffer[]): Buffer {
  if (hashes.length === 0) return EMPTY_ROOT;
  let h = hashes[hashes.length - 1];
  for (let i = hashes.length - 2; i >= 0; i--) h = hashChildren(hashes[i], h);
  return h;
}

/** The complete subtrees a tree of `size` leaves consists of (its right edge), left to right. */
export const frontierNodes = (size: number): NodeId[] => rangeNodes(0, size);

export type Range = readonly [start: number, end: number];

/** RFC 9162 §2.1.3.1 PATH(m, D[lo:hi]): the ranges whose hashes form the inclusion proof, leaf-side first. */
export function inclusionRanges(m: number, lo: number, hi: number): Range[] {
  if (hi - lo <= 1) return [];
  const k = splitPoint(hi - lo);
  return m < lo + k ? [...inclusionRanges(m, lo, lo + k), [lo + k, hi]] : [...inclusionRanges(m, lo + k, hi), [lo, lo + k]];
}

/** RFC 9162 §2.1.4.1 SUBPROOF(m, D[lo:hi], b): the ranges whose hashes form the consistency proof. */
export function consistencyRanges(m: number, lo: number, hi: number, complete = true): Range[] {
  const n = hi - lo;
  if (m === n) return complete ? [] : [[lo, hi]];
  const k = splitPoint(n);
  return m <= k
    ? [...consistencyRanges(m, lo, lo + k, complete), [lo + k, hi]]
    : [...consistencyRanges(m - k, lo + k, hi, false), [lo, lo + k]];
}

/** Where node hashes come from: stored ones (the database) or a tree being built. */
export type NodeSource = (ids: NodeId[]) => Promise<Map<string, Buffer>>;

/** The hashes of `ranges`, fetching every node they need in one round. */
export async function rangeHashes(ranges: readonly Range[], source: NodeSource): Promise<Buffer[]> {
  const perRange = ranges.map(([start, end]) => rangeNodes(start, end));
  const wanted = new Map<string, NodeId>();
  for (const nodes of perRange) for (const n of nodes) wanted.set(nodeKey(n), n);
  const found = await source([...wanted.values()]);
  return perRange.map((nodes) =>
    foldRange(
      nodes.map((n) => {
        const hash = found.get(nodeKey(n));
        if (!hash) throw new MissingNodeError(n);
        return hash;
      }),
    ),
  );
}

/** A node the tree should have is not stored: the tree tables were tampered with or are broken. */
export class MissingNodeError extends Error {
  constructor(readonly node: NodeId) {
    super(`Merkle node ${nodeKey(node)} is missing`);
  }
}

/**
 * The right edge of a tree being built, one complete subtree per set bit of its size. Appending
 * a leaf merges equal subtrees; every merge is a new complete node (reported to `onNode`, which
 * the integrator stores). Memory is O(log size).
 */
export class CompactRange {
  private readonly stack: Array<{ level: number; hash: Buffer }>;

  /** `frontier`: the hashes of frontierNodes(size), left to right. */
  constructor(
    private treeSize = 0,
    frontier: Buffer[] = [],
  ) {
    const levels = frontierNodes(treeSize).map((n) => n.level);
    if (levels.length !== frontier.length) throw new Error(`a tree of ${treeSize} leaves has ${levels.length} frontier nodes, got ${frontier.length}`);
    this.stack = levels.map((level, i) => ({ level, hash: frontier[i] }));
  }

  get size(): number {
    return this.treeSize;
  }

  append(leafHash: Buffer, onNode?: (node: NodeId, hash: Buffer) => void): void {
    let entry = { level: 0, hash: leafHash };
    let position = this.treeSize; // the new subtree's first leaf
    while (this.stack.length > 0 && this.stack[this.stack.length - 1].level === entry.level) {
      const left = this.stack.pop()!;
      position -= pow2(left.level);
      entry = { level: entry.level + 1, hash: hashChildren(left.hash, entry.hash) };
      onNode?.({ level: entry.level, index: position / pow2(entry.level) }, entry.hash);
    }
    this.stack.push(entry);
    this.treeSize++;
  }

  root(): Buffer {
    return foldRange(this.stack.map((e) => e.hash));
  }

  frontier(): Buffer[] {
    return this.stack.map((e) => e.hash);
  }
}

/** RFC 9162 §2.1.3.2: does `proof` show leaf `index` (hash `leafHash`) in the tree of `size` with `root`? */
export function verifyInclusion(index: number, size: number, leafHash: Buffer, proof: Buffer[], root: Buffer): boolean {
  if (index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 §2.1.4.2: does `proof` show the tree (size2, root2) extends (size1, root1)? */
export function verifyConsistency(size1: number, size2: number, proof: Buffer[], root1: Buffer, root2: Buffer): boolean {
  if (size1 < 1 || size1 > size2) return false;
  if (size1 === size2) return proof.length === 0 && root1.equals(root2);
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : proof;
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(root1) && sr.equals(root2);
}

const isPowerOfTwo = (n: number) => n > 0 && Number.isInteger(Math.log2(n));
