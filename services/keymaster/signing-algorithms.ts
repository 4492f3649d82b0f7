import { p256 } from '@noble/curves/p256';
import {
  constants,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair as generateKeyPairCallback,
  privateEncrypt,
  publicDecrypt,
  randomBytes,
  sign as nodeSign,
  timingSafeEqual,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';

const generateKeyPair = promisify(generateKeyPairCallback);

export type AlgorithmName = 'ED25519' | 'ECDSA_P256_SHA256' | 'RSA_PSS_3072_SHA256';

/** What is signed: the message itself, or its SHA-256 digest (ECDSA and RSA-PSS only). */
export type SigningInput = { kind: 'message'; bytes: Buffer } | { kind: 'digest'; bytes: Buffer };

export interface GeneratedKeyPair {
  /** PKCS#8 DER: only ever handed to the envelope, never stored or sent in the clear. */
  privateKeyDer: Buffer;
  /** SubjectPublicKeyInfo DER. */
  publicKeyDer: Buffer;
}

export const DIGEST_BYTES = 32;
const RSA_BITS = 3072;
const PSS_SALT_BYTES = 32;

/** JOSE `alg` of each algorithm (RFC 7518 / RFC 8037). */
export const JOSE_ALGORITHM: Record<AlgorithmName, string> = { ED25519: 'EdDSA', ECDSA_P256_SHA256: 'ES256', RSA_PSS_3072_SHA256: 'PS256' };

export const supportsDigest = (algorithm: AlgorithmName) => algorithm !== 'ED25519';

export async function generateSigningKeyPair(algorithm: AlgorithmName): Promise<GeneratedKeyPair> {
  // Generated off the event loop (libuv thread pool): an RSA-3072 pair takes a while.
  const pair =
    algorithm === 'ED25519'
      ? await generateKeyPair('ed25519')
      : algorithm === 'ECDSA_P256_SHA256'
        ? await generateKeyPair('ec', { namedCurve: 'P-256' })
        : await generateKeyPair('rsa', { modulusLength: RSA_BITS, publicExponent: 0x10001 });
  return {
    privateKeyDer: pair.privateKey.export({ type: 'pkcs8', format: 'der' }),
    publicKeyDer: pair.publicKey.export({ type: 'spki', format: 'der' }),
  };
}

export const privateKeyFromDer = (der: Buffer): KeyObject => createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
export const publicKeyFromDer = (der: Buffer): KeyObject => createPublicKey({ key: der, format: 'der', type: 'spki' });

/** Signs; ECDSA signatures are DER (as OpenSSL emits and expects them). */
export function signWith(algorithm: AlgorithmName, privateKey: KeyObject, input: SigningInput): Buffer {
  switch (algorithm) {
    case 'ED25519':
      return nodeSign(null, input.bytes, privateKey);
    case 'ECDSA_P256_SHA256':
      if (input.kind === 'message') return nodeSign('sha256', input.bytes, { key: privateKey, dsaEncoding: 'der' });
      // node:crypto always hashes what it signs; noble signs the given digest (RFC 6979 nonces).
      return Buffer.from(p256.sign(input.bytes, ecPrivateScalar(privateKey), { prehash: false, lowS: true }).toDERRawBytes());
    case 'RSA_PSS_3072_SHA256':
      if (input.kind === 'message') {
        return nodeSign('sha256', input.bytes, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_BYTES });
      }
      // RSASSA-PSS over a given digest: EMSA-PSS encoding (RFC 8017 §9.1.1), then RSASP1.
      return privateEncrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, emsaPssEncode(input.bytes, RSA_BITS - 1));
  }
}

/** Checks a signature; anything malformed is simply not valid (never throws). */
export function verifyWith(algorithm: AlgorithmName, publicKey: KeyObject, input: SigningInput, signature: Buffer): boolean {
  try {
    switch (algorithm) {
      case 'ED25519':
        return nodeVerify(null, input.bytes, publicKey, signature);
      case 'ECDSA_P256_SHA256':
        if (input.kind === 'message') return nodeVerify('sha256', input.bytes, { key: publicKey, dsaEncoding: 'der' }, signature);
        return p256.verify(signature, input.bytes, ecPublicPoint(publicKey), { prehash: false, lowS: false, format: 'der' });
      case 'RSA_PSS_3072_SHA256':
        if (input.kind === 'message') {
          return nodeVerify('sha256', input.bytes, { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_BYTES }, signature);
        }
        if (signature.length !== RSA_BITS / 8) return false;
        return emsaPssVerify(input.bytes, publicDecrypt({ key: publicKey, padding: constants.RSA_NO_PADDING }, signature), RSA_BITS - 1);
    }
  } catch {
    return false;
  }
}

export function publicKeyPem(publicKeyDer: Buffer): string {
  return publicKeyFromDer(publicKeyDer).export({ type: 'spki', format: 'pem' }).toString();
}

export function publicKeyJwk(algorithm: AlgorithmName, publicKeyDer: Buffer, kid: string): string {
  const jwk = publicKeyFromDer(publicKeyDer).export({ format: 'jwk' });
  return JSON.stringify({ ...jwk, kid, alg: JOSE_ALGORITHM[algorithm], use: 'sig' });
}

function ecPrivateScalar(privateKey: KeyObject): Uint8Array {
  const d = privateKey.export({ format: 'jwk' }).d;
  if (!d) throw new Error('not an EC private key');
  return Buffer.from(d, 'base64url');
}

function ecPublicPoint(publicKey: KeyObject): Uint8Array {
  const { x, y } = publicKey.export({ format: 'jwk' });
  return Buffer.concat([Buffer.of(0x04), Buffer.from(x!, 'base64url'), Buffer.from(y!, 'base64url')]);
}

function mgf1Sha256(seed: Buffer, length: number): Buffer {
  const blocks: Buffer[] = [];
  for (let counter = 0; blocks.length * 32 < length; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    blocks.push(createHash('sha256').update(seed).update(c).digest());
  }
  return Buffer.concat(blocks).subarray(0, length);
}

/** EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with SHA-256, MGF1-SHA-256 and a 32-byte salt. */
function emsaPssEncode(mHash: Buffer, emBits: number): Buffer {
  const emLen = Math.ceil(emBits / 8);
  const hLen = 32;
  const salt = randomBytes(PSS_SALT_BYTES);
  const h = createHash('sha256').update(Buffer.alloc(8)).update(mHash).update(salt).digest();
  const db = Buffer.alloc(emLen - hLen - 1);
  db[emLen - PSS_SALT_BYTES - hLen - 2] = 0x01;
  salt.copy(db, db.length - PSS_SALT_BYTES);
  const mask = mgf1Sha256(h, db.length);
  for (let i = 0; i < db.length; i++) db[i] ^= mask[i];
  db[0] &= 0xff >> (8 * emLen - emBits);
  return Buffer.concat([db, h, Buffer.of(0xbc)]);
}

/** EMSA-PSS-VERIFY (RFC 8017 §9.1.2); `em` is the RSAVP1 output (modulus length). */
function emsaPssVerify(mHash: Buffer, em: Buffer, emBits: number): boolean {
  const emLen = Math.ceil(emBits / 8);
  const hLen = 32;
  if (em.length > emLen) {
    // RSAVP1 yields k bytes; when emBits is a multiple of 8 less one, the leading byte must be 0.
    if (em.subarray(0, em.length - emLen).some((b) => b !== 0)) return false;
    em = em.subarray(em.length - emLen);
  }
  if (em.length !== emLen || em[emLen - 1] !== 0xbc) return false;
  const masked = Buffer.from(em.subarray(0, emLen - hLen - 1));
  const h = em.subarray(emLen - hLen - 1, emLen - 1);
  const topMask = 0xff >> (8 * emLen - emBits);
  if ((masked[0] & ~topMask) !== 0) return false;
  const mask = mgf1Sha256(h, masked.length);
  for (let i = 0; i < masked.length; i++) masked[i] ^= mask[i];
  masked[0] &= topMask;
  const separator = emLen - hLen - PSS_SALT_BYTES - 2;
  for (let i = 0; i < separator; i++) if (masked[i] !== 0) return false;
  if (masked[separator] !== 0x01) return false;
  const salt = masked.subarray(masked.length - PSS_SALT_BYTES);
  const expected = createHash('sha256').update(Buffer.alloc(8)).update(mHash).update(salt).digest();
  return timingSafeEqual(expected, h);
}
