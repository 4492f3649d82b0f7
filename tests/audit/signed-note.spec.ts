import { createHash, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import * as fc from 'fast-check';
import {
  checkpointBody,
  ed25519RawPublicKey,
  keyHash,
  logOrigin,
  NoteError,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  signNote,
  verifierKey,
} from '../../services/audit/signed-note';

/*
 * Checkpoints as C2SP signed notes (c2sp.org/signed-note, c2sp.org/tlog-checkpoint), no
 * database. The expected key hashes, verifier keys and signature lines are built here from the
 * specification with node:crypto, so the kernel's encoding is checked, not echoed.
 */

const sha256 = (...parts: Array<Buffer | string>) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
interface Key {
  privateKey: KeyObject;
  publicKey: KeyObject;
  raw: Buffer;
}
const newKey = (): Key => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, raw: Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url') };
};
/** Key hash per the spec: SHA-256(name || "\n" || 0x01 || 32-byte key)[:4]. */
const specKeyHash = (name: string, raw: Buffer) => sha256(name, '\n', Buffer.from([1]), raw).subarray(0, 4);
const specVerifierKey = (name: string, raw: Buffer) => `${name}+${specKeyHash(name, raw).toString('hex')}+${Buffer.concat([Buffer.from([1]), raw]).toString('base64')}`;
/** A signature line per the spec, by any key. */
const specSignatureLine = (name: string, key: Key, body: string) => `\u2014 ${name} ${Buffer.concat([specKeyHash(name, key.raw), sign(null, Buffer.from(body), key.privateKey)]).toString('base64')}`;

const NAME = 'kernel.axis/audit/acme';
const ROOT = sha256('a root');
const KEY = newKey();
const VERIFIER = parseVerifierKey(verifierKey(NAME, KEY.raw));
const BODY = checkpointBody({ origin: NAME, size: 42, root: ROOT, time: '2026-11-26T12:00:00.123456Z' });

const noteError = (fn: () => unknown): { reason: string; message: string } => {
  try {
    fn();
  } catch (error) {
    if (error instanceof NoteError) return { reason: error.reason, message: error.message };
    throw error;
  }
  throw new Error('expected a NoteError');
};

describe('signed notes and checkpoints (C2SP)', () => {
  test('the checkpoint body is origin, size, base64 root and the time extension, each ending in a newline', () => {
    expect(BODY).toBe(`${NAME}\n42\n${ROOT.toString('base64')}\ntime 2026-11-26T12:00:00.123456Z\n`);
    expect(checkpointBody({ origin: NAME, size: 0, root: ROOT })).toBe(`${NAME}\n0\n${ROOT.toString('base64')}\n`);
    expect(logOrigin('acme')).toBe(NAME);
  });

  test('key hash and verifier key follow the spec; the verifier key parses back, also when its base64 holds a "+"', () => {
    expect(keyHash(NAME, KEY.raw)).toEqual(specKeyHash(NAME, KEY.raw));
    expect(verifierKey(NAME, KEY.raw)).toBe(specVerifierKey(NAME, KEY.raw));
    let plus: Key;
    do plus = newKey();
    while (specVerifierKey(NAME, plus.raw).split('+').length <= 3);
    const parsed = parseVerifierKey(` ${specVerifierKey(NAME, plus.raw)}\n`);
    expect(parsed.name).toBe(NAME);
    expect(parsed.hash).toEqual(specKeyHash(NAME, plus.raw));
    expect(parsed.key.export({ format: 'der', type: 'spki' })).toEqual(plus.publicKey.export({ format: 'der', type: 'spki' }));
    expect(ed25519RawPublicKey(KEY.publicKey.export({ format: 'der', type: 'spki' }))).toEqual(KEY.raw);
  });

  test('malformed verifier keys and non-Ed25519 public keys are refused as VERIFIER_KEY_INVALID', () => {
    const typed = Buffer.concat([Buffer.from([1]), KEY.raw]);
    const [hash, b64] = [specKeyHash(NAME, KEY.raw).toString('hex'), typed.toString('base64')];
    expect(parseVerifierKey(`${NAME}+${hash}+${b64}`).name).toBe(NAME);
    const shape = 'a verifier key is <name>+<hex key hash>+<base64 key>';
    const kind = 'only Ed25519 (type 0x01) verifier keys with a well-formed name are supported';
    const mismatch = 'the verifier key hash does not match its name and key';
    const cases: Array<[string, string]> = [
      ['', shape],
      [NAME, shape],
      [`${NAME}+${hash}`, shape],
      [`+${specKeyHash('', KEY.raw).toString('hex')}+${b64}`, shape],
      [`${NAME}+zzzzzzzz+${b64}`, kind], // the hash is hex
      [`${NAME}+${hash}00+${b64}`, kind],
      [`${NAME}+${hash}+${Buffer.concat([Buffer.from([2]), KEY.raw]).toString('base64')}`, kind], // key type 2
      [`${NAME}+${hash}+${typed.subarray(0, 32).toString('base64')}`, kind], // 31-byte key
      [`${NAME}+${hash}+${Buffer.concat([typed, Buffer.from([0])]).toString('base64')}`, kind],
      [`has space+${specKeyHash('has space', KEY.raw).toString('hex')}+${b64}`, kind],
      [`${NAME}+${specKeyHash(NAME, newKey().raw).toString('hex')}+${b64}`, mismatch], // hash of another key
      [`other+${hash}+${b64}`, mismatch], // hash of another name
    ];
    expect(cases.map(([bad]) => [bad, noteError(() => parseVerifierKey(bad))])).toEqual(cases.map(([bad, message]) => [bad, { reason: 'VERIFIER_KEY_INVALID', message }]));
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'der', type: 'spki' });
    expect(noteError(() => ed25519RawPublicKey(ec))).toEqual({ reason: 'VERIFIER_KEY_INVALID', message: 'not an Ed25519 public key' });
    const spki = KEY.publicKey.export({ format: 'der', type: 'spki' });
    expect(noteError(() => ed25519RawPublicKey(Buffer.concat([spki, Buffer.from([0])]))).reason).toBe('VERIFIER_KEY_INVALID');
    const wrongPrefix = Buffer.from(spki);
    wrongPrefix[5] ^= 1;
    expect(noteError(() => ed25519RawPublicKey(wrongPrefix)).reason).toBe('VERIFIER_KEY_INVALID');
  });

  test('signNote writes body, blank line and one spec signature line that node:crypto verifies with the public key alone', () => {
    const note = signNote(BODY, NAME, KEY.privateKey, KEY.raw);
    expect(note.startsWith(`${BODY}\n\u2014 ${NAME} `)).toBe(true);
    expect(note.endsWith('\n')).toBe(true);
    const line = note.slice(BODY.length + 1, -1);
    expect(line.split('\n')).toHaveLength(1);
    const bytes = Buffer.from(line.split(' ')[2], 'base64');
    expect(bytes.subarray(0, 4)).toEqual(specKeyHash(NAME, KEY.raw));
    expect(bytes.length).toBe(4 + 64);
    expect(verify(null, Buffer.from(BODY), createPublicKey(KEY.publicKey.export({ format: 'pem', type: 'spki' })), bytes.subarray(4))).toBe(true);
    expect(openNote(note, [VERIFIER])).toEqual({ body: BODY, signedBy: [NAME] });
  });

  test('a note made by the spec (not by signNote) opens; signatures by unknown keys are ignored when a known one signed', () => {
    const stranger = newKey();
    const note = `${BODY}\n${specSignatureLine('someone.else/log', stranger, BODY)}\n${specSignatureLine(NAME, stranger, BODY)}\n${specSignatureLine(NAME, KEY, BODY)}\n`;
    expect(openNote(note, [VERIFIER])).toEqual({ body: BODY, signedBy: [NAME] });
    // Two verifiers, both signed.
    const second = parseVerifierKey(specVerifierKey('witness.example/w1', stranger.raw));
    const cosigned = `${BODY}\n${specSignatureLine(NAME, KEY, BODY)}\n${specSignatureLine('witness.example/w1', stranger, BODY)}\n`;
    expect(openNote(cosigned, [VERIFIER, second])).toEqual({ body: BODY, signedBy: [NAME, 'witness.example/w1'] });
  });

  test('a note signed by no known key, or whose known signature fails, is SIGNATURE_INVALID', () => {
    const stranger = newKey();
    // The right name and a well-formed signature, but by a key that is not the verifier's.
    expect(noteError(() => openNote(`${BODY}\n${specSignatureLine(NAME, stranger, BODY)}\n`, [VERIFIER]))).toEqual({
      reason: 'SIGNATURE_INVALID',
      message: 'the note carries no signature by a known key',
    });
    expect(noteError(() => openNote(signNote(BODY, NAME, KEY.privateKey, KEY.raw), [])).reason).toBe('SIGNATURE_INVALID');
    // The known key's hash with a signature over another body.
    const other = BODY.replace('\n42\n', '\n43\n');
    expect(noteError(() => openNote(`${BODY}\n${specSignatureLine(NAME, KEY, other)}\n`, [VERIFIER]))).toEqual({
      reason: 'SIGNATURE_INVALID',
      message: `the signature by ${NAME} does not verify`,
    });
    // A body changed after signing.
    expect(noteError(() => openNote(signNote(BODY, NAME, KEY.privateKey, KEY.raw).replace('\n42\n', '\n43\n'), [VERIFIER])).reason).toBe('SIGNATURE_INVALID');
  });

  test('malformed notes are NOTE_MALFORMED', () => {
    const good = signNote(BODY, NAME, KEY.privateKey, KEY.raw);
    const sigLine = good.slice(BODY.length + 1, -1);
    const shape = 'a signed note is a body, a blank line and signature lines';
    const line = 'a signature line is "\u2014 <name> <base64>"';
    const cases: Array<[string, string, string]> = [
      ['no final newline', good.slice(0, -1), shape],
      ['no blank line', `${NAME}\n42\n${sigLine}\n`, shape],
      ['control character in the body', signNote(BODY.replace('time', 'ti\u0001me'), NAME, KEY.privateKey, KEY.raw), 'the note body holds control characters'],
      ['tab in the body', `${BODY.replace('time ', 'time\t')}\n${sigLine}\n`, 'the note body holds control characters'],
      ['DEL in the body', `${BODY.replace('time ', 'time\u007f')}\n${sigLine}\n`, 'the note body holds control characters'],
      ['a line that is not a signature', `${BODY}\n${sigLine}\nnot a signature\n`, line],
      ['a signature without the em dash', `${BODY}\n${sigLine.replace('\u2014', '-')}\n`, line],
      ['a signature with a second space', `${BODY}\n${sigLine.replace(' ', '  ')}\n`, line],
      ['a signature with trailing text', `${BODY}\n${sigLine} x\n`, line],
      ['a signature too short to hold a key hash', `${BODY}\n\u2014 ${NAME} ${Buffer.from([1, 2, 3, 4]).toString('base64')}\n`, 'a signature is a key hash and signature bytes'],
      ['no signature line at all', `${BODY}\n\n`, line],
    ];
    expect(cases.map(([why, bad]) => [why, noteError(() => openNote(bad, [VERIFIER]))])).toEqual(cases.map(([why, , message]) => [why, { reason: 'NOTE_MALFORMED', message }]));
  });

  test('parseCheckpoint reads origin, size, root and extensions; the time extension is the signing time', () => {
    expect(parseCheckpoint(BODY)).toEqual({ origin: NAME, size: 42, root: ROOT, time: '2026-11-26T12:00:00.123456Z', extensions: ['time 2026-11-26T12:00:00.123456Z'] });
    const foreign = `${NAME}\n${Number.MAX_SAFE_INTEGER}\n${ROOT.toString('base64')}\nother ext\n`;
    expect(parseCheckpoint(foreign)).toEqual({ origin: NAME, size: Number.MAX_SAFE_INTEGER, root: ROOT, time: undefined, extensions: ['other ext'] });
    expect(parseCheckpoint(`${NAME}\n0\n${ROOT.toString('base64')}\n`)).toMatchObject({ size: 0, extensions: [] });
  });

  test('malformed checkpoint bodies are CHECKPOINT_MALFORMED', () => {
    const root = ROOT.toString('base64');
    const lines = 'a checkpoint body is origin, tree size and root hash lines';
    const size = 'the tree size is not a decimal number';
    const rootMessage = 'the root hash is not 32 bytes of base64';
    const cases: Array<[string, string, string]> = [
      ['no final newline', `${NAME}\n42\n${root}`, lines],
      ['two lines', `${NAME}\n42\n`, lines],
      ['empty origin', `\n42\n${root}\n`, 'the origin line is empty'],
      ['size with a leading zero', `${NAME}\n042\n${root}\n`, size],
      ['negative size', `${NAME}\n-1\n${root}\n`, size],
      ['size not decimal', `${NAME}\n0x2a\n${root}\n`, size],
      ['size with a sign', `${NAME}\n+42\n${root}\n`, size],
      ['size beyond 2^53', `${NAME}\n9007199254740993\n${root}\n`, size],
      ['seventeen digits', `${NAME}\n10000000000000000\n${root}\n`, size],
      ['root of 31 bytes', `${NAME}\n42\n${ROOT.subarray(1).toString('base64')}\n`, rootMessage],
      ['root of 33 bytes', `${NAME}\n42\n${Buffer.concat([ROOT, Buffer.from([0])]).toString('base64')}\n`, rootMessage],
      ['root in url-safe base64', `${NAME}\n42\n${ROOT.toString('base64url')}\n`, rootMessage],
      ['root without padding', `${NAME}\n42\n${root.replace(/=+$/, '')}\n`, rootMessage],
      ['empty extension line', `${NAME}\n42\n${root}\n\nmore\n`, 'extension lines must not be empty'],
    ];
    expect(cases.map(([why, bad]) => [why, noteError(() => parseCheckpoint(bad))])).toEqual(cases.map(([why, , message]) => [why, { reason: 'CHECKPOINT_MALFORMED', message }]));
    expect(parseCheckpoint(`${NAME}\n9007199254740991\n${root}\n`).size).toBe(Number.MAX_SAFE_INTEGER);
  });

  test('property: any checkpoint body round-trips through signNote, openNote and parseCheckpoint', () => {
    const originArb = fc.stringMatching(/^[a-z0-9.\-/]{1,40}$/).filter((s) => s.length > 0);
    fc.assert(
      fc.property(originArb, fc.maxSafeNat(), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.option(fc.date({ noInvalidDate: true }), { nil: undefined }), (origin, size, rootBytes, when) => {
        const root = Buffer.from(rootBytes);
        const time = when?.toISOString();
        const body = checkpointBody({ origin, size, root, time });
        const note = signNote(body, NAME, KEY.privateKey, KEY.raw);
        const opened = openNote(note, [VERIFIER]);
        expect(opened.body).toBe(body);
        expect(parseCheckpoint(opened.body)).toEqual({ origin, size, root, time, extensions: time ? [`time ${time}`] : [] });
      }),
      { numRuns: 100 },
    );
  });
});
