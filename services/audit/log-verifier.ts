import { CHAIN_START, CompactRange, EMPTY_ROOT, hashChain, hashLeaf } from './merkle';
import { NoteError, openNote, parseCheckpoint, type NoteVerifier } from './signed-note';

/** What can be wrong with a log, named at the first sequence number where it shows. */
export type ProblemKind =
  /** The entry's content is not what the log committed to. */
  | 'PAYLOAD_CHANGED'
  /** No entry where the log has (or a signed checkpoint proves) one: deleted or truncated. */
  | 'ENTRY_MISSING'
  /** The entry belongs at another position: entries were swapped or moved. */
  | 'ORDER_CHANGED'
  /** The stored hash chain does not follow from the entries: hashes were rewritten. */
  | 'CHAIN_BROKEN'
  /** The entries do not produce the root a signed checkpoint commits to: history was rewritten. */
  | 'CHECKPOINT_MISMATCH'
  /** A checkpoint's signature does not verify with the audit key. */
  | 'CHECKPOINT_INVALID';

export interface LogProblem {
  seq: number;
  kind: ProblemKind;
  detail: string;
}

export interface VerifiableEntry {
  seq: number;
  /** The leaf data (canonical entry); null when the payload is gone (purged, or missing). */
  data: Buffer | null;
  /** The payload was removed by a recorded retention purge: the stored leaf hash stands in for it. */
  purged: boolean;
  /** The leaf hash the log stored for this position (null when the source has none). */
  storedLeaf: Buffer | null;
  /** The chain hash the log stored for this position (null when the source has none). */
  storedChain: Buffer | null;
}

export interface VerifiableCheckpoint {
  size: number;
  root: Buffer;
  /** Set when the checkpoint's signature or format did not verify. */
  invalid?: string;
}

export interface VerificationResult {
  ok: boolean;
  problem?: LogProblem;
  /** Entries checked (purged ones included) before the first problem, or all — beyond the start. */
  entries: number;
  purged: number;
  checkpoints: number;
  /** The root over every entry checked. */
  root: Buffer;
  chain: Buffer;
}

type Item = { entry: VerifiableEntry } | { checkpoint: VerifiableCheckpoint };

/** How far ahead an out-of-place entry is looked for (to tell ORDER_CHANGED from PAYLOAD_CHANGED / CHAIN_BROKEN). */
const LOOKAHEAD = 256;

/**
 * Verifies a log fed in order — entries by seq, each checkpoint right after the entry at its
 * size — and stops at the first problem. Used by VerifyLog (fed from the database) and by
 * `kernel audit verify` (fed from an export file). Memory: the lookahead window and the tree's
 * right edge.
 */
export class LogVerifier {
  private readonly queue: Item[] = [];
  private readonly tree: CompactRange;
  private chain: Buffer;
  private problem?: LogProblem;
  private purged = 0;
  private checkpoints = 0;
  private lastGoodCheckpoint: number;
  private readonly startSize: number;

  /** Starts from a verified prefix (a partial export) or from the empty log. */
  constructor(start: { size: number; frontier: Buffer[]; chain: Buffer } = { size: 0, frontier: [], chain: CHAIN_START }) {
    this.tree = new CompactRange(start.size, start.frontier);
    this.chain = start.chain;
    this.lastGoodCheckpoint = start.size;
    this.startSize = start.size;
  }

  get failed(): LogProblem | undefined {
    return this.problem;
  }

  get size(): number {
    return this.tree.size;
  }

  addEntry(entry: VerifiableEntry): void {
    this.enqueue({ entry });
  }

  addCheckpoint(checkpoint: VerifiableCheckpoint): void {
    this.enqueue({ checkpoint });
  }

  finish(): VerificationResult {
    while (this.queue.length > 0 && !this.problem) this.process(this.queue.shift()!);
    return {
      ok: !this.problem,
      problem: this.problem,
      entries: this.tree.size - this.startSize,
      purged: this.purged,
      checkpoints: this.checkpoints,
      root: this.tree.root(),
      chain: this.chain,
    };
  }

  private enqueue(item: Item): void {
    if (this.problem) return;
    this.queue.push(item);
    while (this.queue.length > LOOKAHEAD && !this.problem) this.process(this.queue.shift()!);
  }

  private fail(seq: number, kind: ProblemKind, detail: string): void {
    this.problem ??= { seq, kind, detail };
    this.queue.length = 0;
  }

  private process(item: Item): void {
    if ('checkpoint' in item) return this.checkCheckpoint(item.checkpoint);
    const e = item.entry;
    const expected = this.tree.size + 1;
    if (e.seq > expected) {
      const later = this.upcoming().find((u) => u.seq === expected);
      return later
        ? this.fail(expected, 'ORDER_CHANGED', `the entry with seq ${expected} comes after seq ${e.seq}`)
        : this.fail(expected, 'ENTRY_MISSING', `no entry with seq ${expected} (the next one is ${e.seq})`);
    }
    if (e.seq < expected) return this.fail(e.seq, 'ORDER_CHANGED', `seq ${e.seq} appears again after seq ${expected - 1}`);
    let leaf: Buffer;
    if (e.data) {
      leaf = hashLeaf(e.data);
      if (e.storedLeaf && !leaf.equals(e.storedLeaf)) {
        const elsewhere = this.upcoming().find((u) => u.storedLeaf?.equals(leaf));
        return elsewhere
          ? this.fail(e.seq, 'ORDER_CHANGED', `the entry at seq ${e.seq} is the one the log holds at seq ${elsewhere.seq}`)
          : this.fail(e.seq, 'PAYLOAD_CHANGED', `the entry at seq ${e.seq} does not hash to its leaf`);
      }
    } else if (e.purged && e.storedLeaf) {
      leaf = e.storedLeaf;
      this.purged++;
    } else {
      return this.fail(e.seq, 'ENTRY_MISSING', `the entry at seq ${e.seq} is gone and no retention purge covers it`);
    }
    const chain = hashChain(this.chain, leaf);
    if (e.storedChain && !chain.equals(e.storedChain)) {
      const successor = this.upcoming().find((u) => u.storedChain && u.storedLeaf && hashChain(this.chain, u.storedLeaf).equals(u.storedChain));
      return successor
        ? this.fail(e.seq, 'ORDER_CHANGED', `the log's entry for seq ${e.seq} is stored at seq ${successor.seq}`)
        : this.fail(e.seq, 'CHAIN_BROKEN', `the chain hash at seq ${e.seq} does not follow from seq ${e.seq - 1}`);
    }
    this.chain = chain;
    this.tree.append(leaf);
  }

  private checkCheckpoint(c: VerifiableCheckpoint): void {
    if (c.invalid) return this.fail(c.size, 'CHECKPOINT_INVALID', `the checkpoint at size ${c.size}: ${c.invalid}`);
    if (c.size > this.tree.size) {
      return this.fail(this.tree.size + 1, 'ENTRY_MISSING', `a signed checkpoint covers ${c.size} entries, the log holds ${this.tree.size}`);
    }
    if (c.size < this.tree.size) return this.fail(c.size, 'ORDER_CHANGED', `the checkpoint at size ${c.size} comes after entry ${this.tree.size}`);
    if (!this.tree.root().equals(c.root)) {
      return this.fail(this.lastGoodCheckpoint + 1, 'CHECKPOINT_MISMATCH', `entries ${this.lastGoodCheckpoint + 1}–${c.size} do not produce the root signed at size ${c.size}`);
    }
    this.checkpoints++;
    this.lastGoodCheckpoint = c.size;
  }

  private upcoming(): VerifiableEntry[] {
    return this.queue.flatMap((i) => ('entry' in i ? [i.entry] : []));
  }
}

/**
 * Checks a checkpoint note — the signature by one of `verifiers`, the format and the origin —
 * and returns it as the verifier takes it (invalid, with the reason, when any check fails).
 * `claimed` is what the note's holder says it covers (the database columns, an export record):
 * a note that says otherwise is invalid too. Without it, the note's own size and root stand.
 */
export function verifiableCheckpoint(note: string, verifiers: NoteVerifier[], origin: string, claimed?: { size: number; root?: Buffer }): VerifiableCheckpoint {
  const invalid = (why: string): VerifiableCheckpoint => ({ size: claimed?.size ?? 0, root: claimed?.root ?? EMPTY_ROOT, invalid: why });
  try {
    const checkpoint = parseCheckpoint(openNote(note, verifiers).body);
    if (checkpoint.origin !== origin) return invalid(`it is a checkpoint of ${checkpoint.origin}, not ${origin}`);
    if (claimed && (checkpoint.size !== claimed.size || (claimed.root && !claimed.root.equals(checkpoint.root)))) {
      return invalid(`the signed note covers size ${checkpoint.size}, its record claims ${claimed.size} (or another root)`);
    }
    return { size: checkpoint.size, root: checkpoint.root };
  } catch (error) {
    return invalid(error instanceof NoteError ? error.message : String(error));
  }
}
