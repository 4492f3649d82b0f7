import { createReadStream, createWriteStream, renameSync, rmSync, type WriteStream } from 'node:fs';
import type { Checkpoint, ConsistencyProof } from '../../gen/proto/axis/kernel/audit/v1/audit';
import type { ExportedEntry, ExportHeader, ExportLogResponse } from '../../gen/proto/axis/kernel/audit/v1/audit_service';
import { frontierNodes, HASH_BYTES } from './merkle';
import { logOrigin } from './signed-note';

/**
 * The audit export file (`kernel audit export` writes it, `kernel audit verify` reads it):
 * ExportLog's stream as JSON Lines, one record per line, in the order the kernel streamed them.
 *
 *   - UTF-8, each line one JSON object terminated by `\n` (the last line too); no blank lines;
 *     at most MAX_LINE_BYTES per line.
 *   - Each object has exactly one key naming the record: `header`, `entry`, `checkpoint` or
 *     `consistency`. Field names are the proto's (snake_case), but for a checkpoint's
 *     create_time, written under the key `time` (its name when format 1 was fixed, so files
 *     already exported stay readable); every field is present and no other is allowed. Byte
 *     fields are standard base64 with padding (hashes: 32 bytes); integers are JSON numbers from
 *     0 to 2^53 − 1; `time` is RFC 3339 UTC (`…Z`) or null.
 *   - Line 1 is the only header:
 *       {"header":{"format":"axis-audit-export/1","tenant_id":"t","origin":"kernel.axis/audit/t",
 *        "start_size":0,"start_frontier":[],"start_chain_hash":"AAAA…","end_size":300,
 *        "purged_through_seq":0,"verifier_keys":["kernel.axis/audit/t+1a2b3c4d+AT…"]}}
 *     start_frontier holds one hash per complete subtree of a tree of start_size leaves (RFC 6962
 *     right edge, left to right), origin is `kernel.axis/audit/<tenant_id>`, end_size ≥ start_size.
 *   - Then entries in seq order, each signed checkpoint right after the entry at its size, and
 *     after every checkpoint but the first the consistency proof from the one before:
 *       {"entry":{"seq":1,"leaf_data":"{\"action\":…}","leaf_hash":"…","chain_hash":"…","purged":false}}
 *       {"checkpoint":{"tree_size":1,"root_hash":"…","chain_hash":"…","time":"2026-11-26T12:00:00.123Z",
 *        "key_version":1,"note":"kernel.axis/audit/t\n1\n…\n\n— kernel.axis/audit/t …\n",
 *        "verifier_key":"…","origin":"kernel.axis/audit/t"}}
 *       {"consistency":{"first_size":1,"second_size":300,"hashes":["…","…"]}}
 *     leaf_data is the entry's canonical leaf text (log-entry.ts), empty when purged (seq ≥ 1).
 *
 * The reader checks the syntax and shape of every line (and the header's own invariants); what
 * the records say about the log — order, hashes, signatures, proofs — is the verifier's to judge.
 */
export const EXPORT_FILE_FORMAT = 'axis-audit-export/1';

/** A line longer than this is refused (a leaf is at most ~16 KiB of detail plus a few fields). */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

/** One record of the file: the ExportLog response it was written from. */
export type ExportRecord = NonNullable<ExportLogResponse['record']>;

/** A line (or the file) is not an export file; `line` is 1-based, 0 when the file as a whole is wrong. */
export class ExportFileError extends Error {
  constructor(
    readonly line: number,
    readonly detail: string,
  ) {
    super(line > 0 ? `line ${line}: ${detail}` : detail);
  }
}

// ---- writing ----------------------------------------------------------------------------------

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

/** The JSON object (snake_case, base64) of a record; JSON.stringify of it is the record's line. */
export function exportRecordJson(record: ExportRecord): Record<string, unknown> {
  switch (record.$case) {
    case 'header': {
      const h = record.value;
      return {
        header: {
          format: h.format,
          tenant_id: h.tenantId,
          origin: h.origin,
          start_size: h.startSize,
          start_frontier: h.startFrontier.map(b64),
          start_chain_hash: b64(h.startChainHash),
          end_size: h.endSize,
          purged_through_seq: h.purgedThroughSeq,
          verifier_keys: h.verifierKeys,
        },
      };
    }
    case 'entry': {
      const e = record.value;
      return { entry: { seq: e.seq, leaf_data: e.leafData, leaf_hash: b64(e.leafHash), chain_hash: b64(e.chainHash), purged: e.purged } };
    }
    case 'checkpoint': {
      const c = record.value;
      return {
        checkpoint: {
          tree_size: c.treeSize,
          root_hash: b64(c.rootHash),
          chain_hash: b64(c.chainHash),
          // Format 1 keeps the key `time` for Checkpoint.create_time (the one name that differs).
          time: c.createTime ? c.createTime.toISOString() : null,
          key_version: c.keyVersion,
          note: c.note,
          verifier_key: c.verifierKey,
          origin: c.origin,
        },
      };
    }
    case 'consistency': {
      const p = record.value;
      return { consistency: { first_size: p.firstSize, second_size: p.secondSize, hashes: p.hashes.map(b64) } };
    }
  }
}

/** The record's line, `\n` included. */
export const formatExportRecord = (record: ExportRecord): string => `${JSON.stringify(exportRecordJson(record))}\n`;

/**
 * Writes an export file: to `<path>.partial` first, renamed to `path` by commit(), so that an
 * interrupted export never leaves a file that looks complete. abort() removes the partial file.
 */
export class ExportFileWriter {
  private readonly partial: string;
  private readonly stream: WriteStream;
  private failure?: Error;

  constructor(private readonly path: string) {
    this.partial = `${path}.partial`;
    this.stream = createWriteStream(this.partial, { flags: 'w', mode: 0o644 });
    this.stream.on('error', (error) => (this.failure ??= error));
  }

  /** Writes one record, waiting when the stream buffers too much. */
  async write(record: ExportRecord): Promise<void> {
    if (this.failure) throw this.failure;
    if (!this.stream.write(formatExportRecord(record))) {
      await new Promise<void>((resolve, reject) => {
        const done = (error?: Error) => {
          this.stream.off('drain', done);
          this.stream.off('error', done);
          if (error) reject(error);
          else resolve();
        };
        this.stream.on('drain', done);
        this.stream.on('error', done);
      });
    }
  }

  /** Flushes, closes and moves the file into place. */
  async commit(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.stream.end((error?: Error | null) => (error ? reject(error) : resolve()));
    });
    if (this.failure) throw this.failure;
    renameSync(this.partial, this.path);
  }

  /** Closes and deletes the partial file (never throws). */
  async abort(): Promise<void> {
    await new Promise<void>((resolve) => {
      if (this.stream.closed) return resolve();
      this.stream.once('close', () => resolve());
      this.stream.destroy();
    });
    rmSync(this.partial, { force: true });
  }
}

// ---- reading ----------------------------------------------------------------------------------

type Json = Record<string, unknown>;

/** Field checks for one record object; every error names the record and field. */
class Fields {
  constructor(
    private readonly object: Json,
    private readonly name: string,
    private readonly line: number,
  ) {}

  fail(field: string, problem: string): never {
    throw new ExportFileError(this.line, `${this.name}.${field} ${problem}`);
  }

  /** Exactly these fields, no other. */
  only(fields: readonly string[]): void {
    for (const f of fields) if (!Object.prototype.hasOwnProperty.call(this.object, f)) throw new ExportFileError(this.line, `${this.name}.${f} is missing`);
    for (const k of Object.keys(this.object)) if (!fields.includes(k)) throw new ExportFileError(this.line, `${this.name} has an unknown field ${JSON.stringify(k).slice(0, 80)}`);
  }

  integer(field: string, min = 0): number {
    const v = this.object[field];
    if (typeof v !== 'number') this.fail(field, `must be a number, not ${describe(v)}`);
    if (!Number.isSafeInteger(v) || v < min) this.fail(field, `must be a whole number from ${min} to ${Number.MAX_SAFE_INTEGER} (got ${String(v).slice(0, 40)})`);
    return v;
  }

  string(field: string): string {
    const v = this.object[field];
    if (typeof v !== 'string') this.fail(field, `must be a string, not ${describe(v)}`);
    return v;
  }

  boolean(field: string): boolean {
    const v = this.object[field];
    if (typeof v !== 'boolean') this.fail(field, `must be true or false, not ${describe(v)}`);
    return v;
  }

  hash(field: string): Buffer {
    return this.hashValue(this.object[field], field);
  }

  hashes(field: string): Buffer[] {
    const v = this.object[field];
    if (!Array.isArray(v)) this.fail(field, `must be an array of base64 hashes, not ${describe(v)}`);
    return v.map((h, i) => this.hashValue(h, `${field}[${i}]`));
  }

  strings(field: string): string[] {
    const v = this.object[field];
    if (!Array.isArray(v)) this.fail(field, `must be an array of strings, not ${describe(v)}`);
    v.forEach((s, i) => typeof s !== 'string' && this.fail(`${field}[${i}]`, `must be a string, not ${describe(s)}`));
    return v as string[];
  }

  time(field: string): Date | undefined {
    const v = this.object[field];
    if (v === null) return undefined;
    if (typeof v !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/.test(v) || Number.isNaN(Date.parse(v))) {
      this.fail(field, `must be an RFC 3339 UTC time (…Z) or null, not ${describe(v)}`);
    }
    return new Date(v);
  }

  private hashValue(v: unknown, field: string): Buffer {
    if (typeof v !== 'string') this.fail(field, `must be a base64 string, not ${describe(v)}`);
    const bytes = Buffer.from(v, 'base64');
    if (bytes.toString('base64') !== v) this.fail(field, 'is not base64 (standard alphabet, with padding)');
    if (bytes.length !== HASH_BYTES) this.fail(field, `must be ${HASH_BYTES} bytes, not ${bytes.length}`);
    return bytes;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return `${typeof v} ${String(v).slice(0, 40)}`;
}

const RECORD_NAMES = ['header', 'entry', 'checkpoint', 'consistency'] as const;

/** Parses one line (without its `\n`) strictly; throws ExportFileError naming the line and field. */
export function parseExportRecord(text: string, line: number): ExportRecord {
  if (text.trim() === '') throw new ExportFileError(line, 'empty line');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ExportFileError(line, `not JSON (${(error as Error).message.slice(0, 120)})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ExportFileError(line, `a record is a JSON object, not ${describe(value)}`);
  const keys = Object.keys(value);
  if (keys.length !== 1 || !(RECORD_NAMES as readonly string[]).includes(keys[0])) {
    throw new ExportFileError(line, `a record has exactly one key, one of ${RECORD_NAMES.join(', ')} (found ${keys.length === 0 ? 'none' : keys.map((k) => JSON.stringify(k).slice(0, 40)).join(', ')})`);
  }
  const name = keys[0] as (typeof RECORD_NAMES)[number];
  const body = (value as Json)[name];
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ExportFileError(line, `${name} must be an object, not ${describe(body)}`);
  const f = new Fields(body as Json, name, line);
  switch (name) {
    case 'header': {
      f.only(['format', 'tenant_id', 'origin', 'start_size', 'start_frontier', 'start_chain_hash', 'end_size', 'purged_through_seq', 'verifier_keys']);
      const header: ExportHeader = {
        format: f.string('format'),
        tenantId: f.string('tenant_id'),
        origin: f.string('origin'),
        startSize: f.integer('start_size'),
        startFrontier: f.hashes('start_frontier'),
        startChainHash: f.hash('start_chain_hash'),
        endSize: f.integer('end_size'),
        purgedThroughSeq: f.integer('purged_through_seq'),
        verifierKeys: f.strings('verifier_keys'),
      };
      if (header.format !== EXPORT_FILE_FORMAT) f.fail('format', `is ${describe(header.format)}; this reader knows ${EXPORT_FILE_FORMAT} only`);
      if (header.tenantId === '') f.fail('tenant_id', 'must not be empty');
      if (header.origin !== logOrigin(header.tenantId)) f.fail('origin', `must be ${JSON.stringify(logOrigin(header.tenantId))} for tenant ${JSON.stringify(header.tenantId)}`);
      if (header.endSize < header.startSize) f.fail('end_size', `must not be below start_size (${header.startSize})`);
      const subtrees = frontierNodes(header.startSize).length;
      if (header.startFrontier.length !== subtrees) f.fail('start_frontier', `must hold ${subtrees} hash(es) for start_size ${header.startSize}, not ${header.startFrontier.length}`);
      return { $case: 'header', value: header };
    }
    case 'entry': {
      f.only(['seq', 'leaf_data', 'leaf_hash', 'chain_hash', 'purged']);
      const entry: ExportedEntry = { seq: f.integer('seq', 1), leafData: f.string('leaf_data'), leafHash: f.hash('leaf_hash'), chainHash: f.hash('chain_hash'), purged: f.boolean('purged') };
      if (entry.purged && entry.leafData !== '') f.fail('leaf_data', 'must be empty when purged is true');
      return { $case: 'entry', value: entry };
    }
    case 'checkpoint': {
      f.only(['tree_size', 'root_hash', 'chain_hash', 'time', 'key_version', 'note', 'verifier_key', 'origin']);
      const checkpoint: Checkpoint = {
        treeSize: f.integer('tree_size', 1),
        rootHash: f.hash('root_hash'),
        chainHash: f.hash('chain_hash'),
        createTime: f.time('time'),
        keyVersion: f.integer('key_version'),
        note: f.string('note'),
        verifierKey: f.string('verifier_key'),
        origin: f.string('origin'),
      };
      if (checkpoint.keyVersion > 2 ** 31 - 1) f.fail('key_version', 'must be a 32-bit version number');
      return { $case: 'checkpoint', value: checkpoint };
    }
    case 'consistency': {
      f.only(['first_size', 'second_size', 'hashes']);
      const proof: ConsistencyProof = { firstSize: f.integer('first_size', 1), secondSize: f.integer('second_size', 1), hashes: f.hashes('hashes') };
      if (proof.secondSize < proof.firstSize) f.fail('second_size', `must not be below first_size (${proof.firstSize})`);
      return { $case: 'consistency', value: proof };
    }
  }
}

/**
 * The lines of a file, split on `\n`, decoded as strict UTF-8, each at most MAX_LINE_BYTES; the
 * last line must end with `\n` too (a file cut short mid-record is refused). Read in chunks:
 * memory stays at one line, whatever the file's size.
 */
export async function* readLines(path: string): AsyncGenerator<{ line: number; text: string }> {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let line = 0;
  const decode = (bytes: Buffer, number: number) => {
    try {
      return decoder.decode(bytes);
    } catch {
      throw new ExportFileError(number, 'is not valid UTF-8 text');
    }
  };
  for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>) {
    let at = 0;
    for (;;) {
      const end = chunk.indexOf(0x0a, at);
      const piece = chunk.subarray(at, end < 0 ? chunk.length : end);
      pendingBytes += piece.length;
      if (pendingBytes > MAX_LINE_BYTES) throw new ExportFileError(line + 1, `is longer than ${MAX_LINE_BYTES} bytes`);
      if (piece.length > 0) pending.push(piece);
      if (end < 0) break;
      line++;
      const bytes = pending.length === 1 ? pending[0] : Buffer.concat(pending);
      pending = [];
      pendingBytes = 0;
      yield { line, text: decode(bytes, line) };
      at = end + 1;
    }
  }
  if (pendingBytes > 0) throw new ExportFileError(line + 1, 'ends without a line end: the file is cut short');
}

/** The records of an export file, strictly parsed; the header is line 1 and the only header. */
export async function* readExportFile(path: string): AsyncGenerator<{ line: number; record: ExportRecord }> {
  let any = false;
  for await (const { line, text } of readLines(path)) {
    const record = parseExportRecord(text, line);
    if (line === 1 && record.$case !== 'header') throw new ExportFileError(1, `the first record must be the header, not ${record.$case === 'entry' ? 'an' : 'a'} ${record.$case}`);
    if (line > 1 && record.$case === 'header') throw new ExportFileError(line, 'a second header (an export file has one, on line 1)');
    any = true;
    yield { line, record };
  }
  if (!any) throw new ExportFileError(0, 'the file is empty (an export file starts with its header)');
}
