import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

/**
 * Checkpoints in the C2SP formats, so existing tooling can check them:
 *  - c2sp.org/tlog-checkpoint: the body is `<origin>\n<tree size>\n<base64 root hash>\n`,
 *    followed by extension lines; the kernel adds one, `time <RFC 3339 UTC>`, the signing time.
 *  - c2sp.org/signed-note: body, a blank line, then one line per signature
 *    `— <key name> <base64(key hash[4] || signature)>` (U+2014). Ed25519 keys (type 0x01): the key
 *    hash is the first 4 bytes of SHA-256(name || "\n" || 0x01 || public key), the signature is
 *    Ed25519 over the body. A verifier key is written `<name>+<hex key hash>+<base64(0x01 || public key)>`
 *    (the golang.org/x/mod/sumdb/note form).
 * The key name is the origin: `kernel.axis/audit/<tenant>`.
 */
export const ED25519_KEY_TYPE = 0x01;
const SIGNATURE_PREFIX = '\u2014 ';
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export const logOrigin = (tenantId: string) => `kernel.axis/audit/${tenantId}`;

export class NoteError extends Error {
  constructor(
    readonly reason: 'NOTE_MALFORMED' | 'CHECKPOINT_MALFORMED' | 'SIGNATURE_INVALID' | 'VERIFIER_KEY_INVALID',
    message: string,
  ) {
    super(message);
  }
}

/** The raw 32-byte Ed25519 public key of an SPKI DER encoding. */
export function ed25519RawPublicKey(spkiDer: Buffer): Buffer {
  if (spkiDer.length !== 44 || !spkiDer.subarray(0, 12).equals(ED25519_SPKI_PREFIX)) throw new NoteError('VERIFIER_KEY_INVALID', 'not an Ed25519 public key');
  return spkiDer.subarray(12);
}

const ed25519PublicKey = (raw: Buffer): KeyObject => createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });

export function keyHash(name: string, rawPublicKey: Buffer): Buffer {
  return createHash('sha256').update(name).update('\n').update(Buffer.from([ED25519_KEY_TYPE])).update(rawPublicKey).digest().subarray(0, 4);
}

export function verifierKey(name: string, rawPublicKey: Buffer): string {
  return `${name}+${keyHash(name, rawPublicKey).toString('hex')}+${Buffer.concat([Buffer.from([ED25519_KEY_TYPE]), rawPublicKey]).toString('base64')}`;
}

export interface NoteVerifier {
  name: string;
  hash: Buffer;
  key: KeyObject;
}

export function parseVerifierKey(text: string): NoteVerifier {
  // <name>+<hash>+<key>: the name has no '+', the base64 key may (split at the first two only).
  const match = /^([^+]+)\+([^+]+)\+(.+)$/s.exec(text.trim());
  if (!match) throw new NoteError('VERIFIER_KEY_INVALID', 'a verifier key is <name>+<hex key hash>+<base64 key>');
  const [, name, hashHex, keyB64] = match;
  const key = Buffer.from(keyB64, 'base64');
  if (!/^[0-9a-f]{8}$/.test(hashHex) || key.length !== 33 || key[0] !== ED25519_KEY_TYPE || !validName(name)) {
    throw new NoteError('VERIFIER_KEY_INVALID', 'only Ed25519 (type 0x01) verifier keys with a well-formed name are supported');
  }
  const raw = key.subarray(1);
  if (!keyHash(name, raw).equals(Buffer.from(hashHex, 'hex'))) throw new NoteError('VERIFIER_KEY_INVALID', 'the verifier key hash does not match its name and key');
  return { name, hash: Buffer.from(hashHex, 'hex'), key: ed25519PublicKey(raw) };
}

const validName = (name: string) => name.length > 0 && !/[\s+]/u.test(name);

export interface Checkpoint {
  origin: string;
  size: number;
  root: Buffer;
  /** The signing time from the `time` extension line (absent in checkpoints of other logs). */
  time?: string;
  extensions: string[];
}

export function checkpointBody(checkpoint: Omit<Checkpoint, 'extensions'>): string {
  return `${checkpoint.origin}\n${checkpoint.size}\n${checkpoint.root.toString('base64')}\n${checkpoint.time ? `time ${checkpoint.time}\n` : ''}`;
}

/** Signs a body with an Ed25519 private key as a signed note. */
export function signNote(body: string, name: string, privateKey: KeyObject, rawPublicKey: Buffer): string {
  return signedNote(body, name, sign(null, Buffer.from(body, 'utf8'), privateKey), rawPublicKey);
}

/** The signed note of `body` with a signature made elsewhere (an Ed25519 signature of the body's bytes). */
export function signedNote(body: string, name: string, signature: Buffer, rawPublicKey: Buffer): string {
  return `${body}\n${SIGNATURE_PREFIX}${name} ${Buffer.concat([keyHash(name, rawPublicKey), signature]).toString('base64')}\n`;
}

/**
 * Opens a signed note: returns the body if at least one signature line is from one of
 * `verifiers` and valid; signatures by unknown keys are ignored (as the format requires).
 */
export function openNote(text: string, verifiers: NoteVerifier[]): { body: string; signedBy: string[] } {
  const split = text.lastIndexOf('\n\n');
  if (!text.endsWith('\n') || split < 0) throw new NoteError('NOTE_MALFORMED', 'a signed note is a body, a blank line and signature lines');
  const body = text.slice(0, split + 1);
  if (/[\x00-\x09\x0b-\x1f\x7f]/.test(body)) throw new NoteError('NOTE_MALFORMED', 'the note body holds control characters');
  const lines = text.slice(split + 2, -1).split('\n');
  const signedBy: string[] = [];
  for (const line of lines) {
    const match = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/u.exec(line);
    if (!match) throw new NoteError('NOTE_MALFORMED', 'a signature line is "— <name> <base64>"');
    const bytes = Buffer.from(match[2], 'base64');
    if (bytes.length < 5) throw new NoteError('NOTE_MALFORMED', 'a signature is a key hash and signature bytes');
    for (const v of verifiers) {
      if (v.name !== match[1] || !v.hash.equals(bytes.subarray(0, 4))) continue;
      if (!verify(null, Buffer.from(body, 'utf8'), v.key, bytes.subarray(4))) throw new NoteError('SIGNATURE_INVALID', `the signature by ${v.name} does not verify`);
      signedBy.push(v.name);
    }
  }
  if (signedBy.length === 0) throw new NoteError('SIGNATURE_INVALID', 'the note carries no signature by a known key');
  return { body, signedBy };
}

/** Parses a checkpoint body (C2SP tlog-checkpoint). */
export function parseCheckpoint(body: string): Checkpoint {
  const lines = body.split('\n');
  if (lines.pop() !== '' || lines.length < 3) throw new NoteError('CHECKPOINT_MALFORMED', 'a checkpoint body is origin, tree size and root hash lines');
  const [origin, sizeText, rootText, ...extensions] = lines;
  if (origin.length === 0) throw new NoteError('CHECKPOINT_MALFORMED', 'the origin line is empty');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) throw new NoteError('CHECKPOINT_MALFORMED', 'the tree size is not a decimal number');
  const root = Buffer.from(rootText, 'base64');
  if (root.length !== 32 || root.toString('base64') !== rootText) throw new NoteError('CHECKPOINT_MALFORMED', 'the root hash is not 32 bytes of base64');
  if (extensions.some((e) => e.length === 0)) throw new NoteError('CHECKPOINT_MALFORMED', 'extension lines must not be empty');
  const time = extensions.find((e) => e.startsWith('time '))?.slice(5);
  return { origin, size: Number(sizeText), root, time, extensions };
}
