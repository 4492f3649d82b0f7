import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Status } from 'nice-grpc-common';
import { closeKernelClient, createKernelClient, isKernelError } from '../../clients/src';
import { AuditServiceDefinition, type ExportHeader } from '../../gen/proto/axis/kernel/audit/v1/audit_service';
import { loadOrCreateDevelopmentSecret } from '../platform/auth/development-secret';
import { mintDevelopmentToken } from '../platform/auth/token-verifier';
import { ProgressBar, type ProgressOutput } from '../platform/cli/progress-bar';
import type { KernelConfig } from '../platform/config';
import { ExportFileError, ExportFileWriter, readExportFile, type ExportRecord } from './export-file';
import { entryFromLeafText } from './log-entry';
import { LogVerifier, verifiableCheckpoint, type ProblemKind } from './log-verifier';
import { verifyConsistency } from './merkle';
import { NoteError, parseVerifierKey, type NoteVerifier } from './signed-note';

export const AUDIT_USAGE = `usage:
  kernel audit export --tenant T [--address host:port] [--token TOKEN] [--from-seq N] [--to-size N] --out FILE
      writes the tenant's log (ExportLog) to FILE as JSON Lines, with a progress bar on stderr;
      the token defaults to $AXIS_TOKEN, else a development token (audit:read) is minted;
      the address to $KERNEL_GRPC_ADDR, else 127.0.0.1:50051
  kernel audit verify FILE --key VERIFIER_KEY [--key …] [--key-file FILE]
      checks an export offline with only the audit public key(s) (signed-note verifier keys,
      one per line in a key file): exit 0 verified, 1 the log does not verify, 2 bad input
`;

/** Export streams can run long; short enough for a Node timer (< 2^31 ms). */
const EXPORT_DEADLINE_MS = 7 * 24 * 3600_000;

/** Where the command writes: stdout for results, stderr for progress and usage. */
export interface AuditCommandIo {
  stdout: ProgressOutput;
  stderr: ProgressOutput;
}

const defaultIo = (): AuditCommandIo => ({ stdout: process.stdout, stderr: process.stderr });

/** Calls `fn` at most every `ms` (a bar redrawn per entry would cost more than the entry). */
function throttled(fn: () => void, ms = 100): () => void {
  let last = -Infinity;
  return () => {
    const now = Date.now();
    if (now - last < ms) return;
    last = now;
    fn();
  };
}

/**
 * `kernel audit export|verify`. The configuration is only loaded for export (verify needs no
 * kernel, database or configuration: the file and the public key are enough).
 */
export async function auditCommand(args: string[], config: () => KernelConfig, io: AuditCommandIo = defaultIo()): Promise<number> {
  const [action, ...rest] = args;
  if (action === 'export') return exportCommand(rest, config, io);
  if (action === 'verify') return verifyCommand(rest, io);
  io.stderr.write(AUDIT_USAGE);
  return 2;
}

function usageError(io: AuditCommandIo, message: string): number {
  io.stderr.write(`kernel audit: ${message}\n${AUDIT_USAGE}`);
  return 2;
}

const optionalCount = (text: string | undefined, name: string): number | string => {
  if (text === undefined) return 0;
  if (!/^(0|[1-9][0-9]{0,15})$/.test(text) || !Number.isSafeInteger(Number(text))) return `--${name} must be a whole number ≥ 0`;
  return Number(text);
};

// ---- export -----------------------------------------------------------------------------------

async function exportCommand(args: string[], config: () => KernelConfig, io: AuditCommandIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        tenant: { type: 'string' },
        address: { type: 'string' },
        token: { type: 'string' },
        'from-seq': { type: 'string' },
        'to-size': { type: 'string' },
        out: { type: 'string' },
      },
    }));
  } catch (error) {
    return usageError(io, (error as Error).message);
  }
  if (!values.tenant) return usageError(io, 'export needs --tenant');
  if (!values.out) return usageError(io, 'export needs --out FILE');
  const fromSeq = optionalCount(values['from-seq'], 'from-seq');
  const toSize = optionalCount(values['to-size'], 'to-size');
  if (typeof fromSeq === 'string') return usageError(io, fromSeq);
  if (typeof toSize === 'string') return usageError(io, toSize);
  const tenant = values.tenant;

  let address = values.address || process.env.KERNEL_GRPC_ADDR || '127.0.0.1:50051';
  let token = values.token || process.env.AXIS_TOKEN || undefined;
  if (!token) {
    const cfg = config();
    address = values.address || cfg.KERNEL_GRPC_ADDR;
    token = await mintDevelopmentToken({
      secret: cfg.KERNEL_AUTH_SECRET ?? loadOrCreateDevelopmentSecret(cfg.KERNEL_DATA_DIR).secret,
      subject: 'kernel-cli',
      tenants: [tenant],
      scope: 'audit:read',
      ttlSeconds: 24 * 3600,
    });
  }

  const client = createKernelClient(AuditServiceDefinition, { address, tenantId: tenant, token });
  const writer = new ExportFileWriter(values.out); // an unwritable path fails the first write
  const bar = new ProgressBar({ output: io.stderr, label: 'export' });
  const stop = new AbortController();
  const interrupt = () => stop.abort();
  process.once('SIGINT', interrupt);
  let header: ExportHeader | undefined;
  let entries = 0;
  let checkpoints = 0;
  const progress = () => ({ done: entries, total: header ? header.endSize - header.startSize : 0 });
  const tick = throttled(() => bar.update(progress()));
  try {
    const stream = client.exportLog({ fromSeq, toSize }, { signal: stop.signal, deadline: new Date(Date.now() + EXPORT_DEADLINE_MS) });
    for await (const { record } of stream) {
      if (!record) continue;
      if ((record.$case === 'header') !== (header === undefined)) throw new Error(`the kernel sent ${record.$case === 'header' ? 'a second header' : `a ${record.$case} before the header`}`);
      if (record.$case === 'header') header = record.value;
      else if (record.$case === 'entry') entries++;
      else if (record.$case === 'checkpoint') checkpoints++;
      await writer.write(record as ExportRecord);
      tick();
    }
    if (!header) throw new Error('the kernel sent no header');
    await writer.commit();
    bar.finish(progress());
    const range = entries > 0 ? ` (seq ${header.startSize + 1}–${header.startSize + entries})` : '';
    io.stdout.write(`exported ${entries} entries${range} and ${checkpoints} checkpoints of ${header.origin} to ${values.out}\n`);
    return 0;
  } catch (error) {
    bar.finish();
    await writer.abort();
    if (stop.signal.aborted) return 130;
    const fsError = typeof (error as NodeJS.ErrnoException | undefined)?.code === 'string';
    io.stderr.write(
      isKernelError(error)
        ? `kernel audit export: ${Status[error.code]}${error.reason ? ` ${error.reason}` : ''}: ${error.details}\n`
        : `kernel audit export: ${fsError ? `cannot write ${values.out}: ` : ''}${error instanceof Error ? error.message : String(error)}\n`,
    );
    return 1;
  } finally {
    process.off('SIGINT', interrupt);
    closeKernelClient(client);
  }
}

// ---- verify -----------------------------------------------------------------------------------

/** What verify reports beyond the LogVerifier's kinds. */
export type VerifyProblemKind =
  | ProblemKind
  /** A consistency proof is missing, misplaced or does not verify. */
  | 'CONSISTENCY_INVALID'
  /** The export holds no checkpoint at all, so nothing in it is signed. */
  | 'NO_CHECKPOINT'
  /** Entries after the last checkpoint: no signature covers them. */
  | 'UNVERIFIED_ENTRIES'
  /** Entries beyond the header's end_size. */
  | 'ENTRY_UNEXPECTED';

interface VerifyProblem {
  seq: number;
  kind: VerifyProblemKind;
  detail: string;
}

class InputError extends Error {}

function loadVerifiers(keys: string[], keyFiles: string[]): NoteVerifier[] {
  const texts: Array<{ text: string; from: string }> = keys.map((text, i) => ({ text, from: `--key #${i + 1}` }));
  for (const file of keyFiles) {
    let content: string;
    try {
      content = readFileSync(file, 'utf8');
    } catch (error) {
      throw new InputError(`cannot read key file ${file}: ${(error as Error).message}`);
    }
    content.split('\n').forEach((line, i) => {
      const text = line.trim();
      if (text !== '' && !text.startsWith('#')) texts.push({ text, from: `${file} line ${i + 1}` });
    });
  }
  if (texts.length === 0) throw new InputError('no verifier key: pass --key or a --key-file with at least one key');
  return texts.map(({ text, from }) => {
    try {
      return parseVerifierKey(text);
    } catch (error) {
      throw new InputError(`bad verifier key (${from}): ${error instanceof NoteError ? error.message : String(error)}`);
    }
  });
}

async function verifyCommand(args: string[], io: AuditCommandIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { key: { type: 'string', multiple: true }, 'key-file': { type: 'string', multiple: true } },
    });
  } catch (error) {
    return usageError(io, (error as Error).message);
  }
  const [file, ...extra] = parsed.positionals;
  if (!file || extra.length > 0) return usageError(io, 'verify needs exactly one FILE');
  if (!parsed.values.key?.length && !parsed.values['key-file']?.length) return usageError(io, 'verify needs --key or --key-file');

  const bar = new ProgressBar({ output: io.stderr, label: 'verify' });
  try {
    const verifiers = loadVerifiers(parsed.values.key ?? [], parsed.values['key-file'] ?? []);
    let latest = { done: 0, total: 0 };
    const tick = throttled(() => bar.update(latest));
    const outcome = await verifyExportFile(file, verifiers, (done, total) => {
      latest = { done, total };
      tick();
    });
    bar.finish(outcome.progress);
    if (outcome.problem) {
      io.stdout.write(`FAILED at seq ${outcome.problem.seq}: ${outcome.problem.kind} — ${outcome.problem.detail}\n`);
      return 1;
    }
    const s = outcome.summary!;
    const range = s.entries > 0 ? ` (seq ${s.startSize + 1}–${s.endSize})` : '';
    io.stdout.write(
      `OK ${s.origin}: ${s.entries} entries${range} verified, ${s.purged} purged, ${s.checkpoints} checkpoints; root at size ${s.endSize}: ${s.root.toString('base64')}\n`,
    );
    return 0;
  } catch (error) {
    bar.finish();
    io.stdout.write(`ERROR ${inputErrorMessage(error, file)}\n`);
    return 2;
  }
}

function inputErrorMessage(error: unknown, file: string): string {
  if (error instanceof ExportFileError) return error.line > 0 ? `${file} line ${error.line}: ${error.detail}` : `${file}: ${error.detail}`;
  if (error instanceof InputError) return error.message;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string') return `cannot read ${file}: ${(error as Error).message}`;
  // Not expected for any input; still one line, no stack.
  return `${file}: ${error instanceof Error ? error.message : String(error)}`;
}

export interface VerifySummary {
  origin: string;
  startSize: number;
  endSize: number;
  /** Entries in the export (the prefix before start_size not counted). */
  entries: number;
  purged: number;
  checkpoints: number;
  root: Buffer;
}

export interface VerifyOutcome {
  problem?: VerifyProblem;
  summary?: VerifySummary;
  progress: { done: number; total: number };
}

/** An entry that did not follow the one before it in the file: kept to tell moved entries from deleted ones. */
interface Irregular {
  seq: number;
  line: number;
  after: number;
}
const MAX_IRREGULAR = 10_000;

/**
 * Verifies an export file with the given keys. Throws ExportFileError (or a read error) for a
 * file that is not a well-formed export — checked to its last line even after a log problem was
 * found, so a malformed file is always reported as such; returns the first log problem otherwise.
 */
export async function verifyExportFile(path: string, verifiers: NoteVerifier[], onProgress?: (done: number, total: number) => void): Promise<VerifyOutcome> {
  const records = readExportFile(path);
  const first = await records.next();
  if (first.done || first.value.record.$case !== 'header') throw new ExportFileError(0, 'the file has no header'); // readExportFile guarantees one
  const header = first.value.record.value;
  const total = header.endSize - header.startSize;
  const verifier = new LogVerifier({ size: header.startSize, frontier: header.startFrontier, chain: header.startChainHash });

  let problem: VerifyProblem | undefined;
  /** Reports a problem found outside the LogVerifier: the verifier's own, at an earlier record, comes first. */
  const found = (p: VerifyProblem) => {
    problem ??= verifier.finish().problem ?? p;
  };

  let entries = 0;
  let lastSeq = header.startSize;
  const irregular: Irregular[] = [];
  let checkpoints = 0;
  /** The last two checkpoints read (for the consistency proof that follows the later one). */
  let previous: { size: number; root: Buffer; valid: boolean } | undefined;
  let latest: { size: number; root: Buffer; valid: boolean } | undefined;
  let proofDue = false;

  for (;;) {
    const next = await records.next();
    if (next.done) break;
    const { line, record } = next.value;
    if (record.$case === 'entry') {
      const e = record.value;
      entries++;
      if (e.seq !== lastSeq + 1 && irregular.length < MAX_IRREGULAR) irregular.push({ seq: e.seq, line, after: lastSeq });
      lastSeq = e.seq;
      onProgress?.(entries, total);
    }
    if (problem || verifier.failed) continue; // parse on: the rest of the file must still be well-formed
    switch (record.$case) {
      case 'entry': {
        const e = record.value;
        if (proofDue) {
          found(missingProof(previous!, latest!));
          break;
        }
        if (e.leafData !== '') {
          let tenant: string;
          try {
            tenant = entryFromLeafText(e.leafData).tenant;
          } catch (error) {
            found({ seq: e.seq, kind: 'PAYLOAD_CHANGED', detail: `the entry at seq ${e.seq} is not a log entry: ${(error as Error).message}` });
            break;
          }
          if (tenant !== header.tenantId) {
            found({ seq: e.seq, kind: 'PAYLOAD_CHANGED', detail: `the entry at seq ${e.seq} is tenant ${JSON.stringify(tenant)}'s, the export is ${JSON.stringify(header.tenantId)}'s` });
            break;
          }
        }
        verifier.addEntry({
          seq: e.seq,
          data: e.leafData !== '' ? Buffer.from(e.leafData, 'utf8') : null,
          purged: e.purged && e.seq <= header.purgedThroughSeq,
          storedLeaf: e.leafHash,
          storedChain: e.chainHash,
        });
        break;
      }
      case 'checkpoint': {
        const c = record.value;
        if (proofDue) {
          found(missingProof(previous!, latest!));
          break;
        }
        const checked = verifiableCheckpoint(c.note, verifiers, header.origin, { size: c.treeSize, root: c.rootHash });
        verifier.addCheckpoint(checked);
        checkpoints++;
        previous = latest;
        latest = { size: c.treeSize, root: c.rootHash, valid: !checked.invalid };
        proofDue = previous !== undefined;
        break;
      }
      case 'consistency': {
        const p = record.value;
        if (!proofDue || p.firstSize !== previous!.size || p.secondSize !== latest!.size) {
          const expected = proofDue ? `from ${previous!.size} to ${latest!.size}` : 'none here';
          found({ seq: p.firstSize + 1, kind: 'CONSISTENCY_INVALID', detail: `a consistency proof from size ${p.firstSize} to ${p.secondSize} (line ${line}) where the checkpoints call for ${expected}` });
          break;
        }
        proofDue = false;
        // An invalid checkpoint is the verifier's to report; its root proves nothing here.
        if (previous!.valid && latest!.valid && !verifyConsistency(p.firstSize, p.secondSize, p.hashes, previous!.root, latest!.root)) {
          found({ seq: p.firstSize + 1, kind: 'CONSISTENCY_INVALID', detail: `the proof that the checkpoint at size ${p.secondSize} extends the one at size ${p.firstSize} does not verify` });
        }
        break;
      }
      case 'header':
        throw new ExportFileError(line, 'a second header'); // readExportFile refuses it first
    }
  }

  const progress = { done: entries, total };
  const result = verifier.finish();
  problem ??= result.problem ?? endProblem();
  if (problem) return { problem: refine(problem, irregular), progress };
  return {
    progress,
    summary: {
      origin: header.origin,
      startSize: header.startSize,
      endSize: header.endSize,
      entries: result.entries,
      purged: result.purged,
      checkpoints: result.checkpoints,
      root: result.root,
    },
  };

  /** What the end of the file shows, once every record verified. */
  function endProblem(): VerifyProblem | undefined {
    const size = verifier.size;
    if (size < header.endSize) {
      return { seq: size + 1, kind: 'ENTRY_MISSING', detail: `the export's header promises entries through seq ${header.endSize}, the file ends after seq ${size}` };
    }
    if (size > header.endSize) {
      return { seq: header.endSize + 1, kind: 'ENTRY_UNEXPECTED', detail: `the export's header ends it at seq ${header.endSize}, the file holds entries through seq ${size}` };
    }
    if (proofDue) return missingProof(previous!, latest!);
    if (checkpoints === 0) {
      return { seq: header.startSize + 1, kind: 'NO_CHECKPOINT', detail: 'the export holds no signed checkpoint: nothing in it is verified' };
    }
    if (latest!.size < size) {
      return { seq: latest!.size + 1, kind: 'UNVERIFIED_ENTRIES', detail: `entries ${latest!.size + 1}–${size} come after the last signed checkpoint (size ${latest!.size})` };
    }
    return undefined;
  }
}

function missingProof(previous: { size: number }, latest: { size: number }): VerifyProblem {
  return {
    seq: previous.size + 1,
    kind: 'CONSISTENCY_INVALID',
    detail: `the consistency proof from the checkpoint at size ${previous.size} to the one at size ${latest.size} is missing`,
  };
}

/**
 * The LogVerifier looks for a "missing" seq only within its lookahead window. When it does appear
 * further down the file, the entries were reordered, not deleted.
 */
function refine(problem: VerifyProblem, irregular: Irregular[]): VerifyProblem {
  if (problem.kind !== 'ENTRY_MISSING') return problem;
  const moved = irregular.find((i) => i.seq === problem.seq && i.after > problem.seq);
  if (!moved) return problem;
  return { seq: problem.seq, kind: 'ORDER_CHANGED', detail: `the entry with seq ${problem.seq} comes after seq ${moved.after} (line ${moved.line})` };
}
