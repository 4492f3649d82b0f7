import { X509Certificate } from 'node:crypto';
import { invalidArgument } from '../platform/kernel-error';

export type SecretKindName = 'OPAQUE' | 'CERTIFICATE' | 'CREDENTIAL';

/** The largest value a version may hold. */
export const MAX_VALUE_BYTES = 64 * 1024;

/** Public facts of a certificate version's leaf, kept as metadata (and for ListExpiring). */
export interface CertificateFacts {
  subject: string;
  issuer: string;
  serialNumber: string;
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)\r?\n?-----END \1-----/g;

const certificateInvalid = (description: string) =>
  invalidArgument('CERTIFICATE_INVALID', `value is not a valid PEM certificate: ${description}`, [{ field: 'value', description }]);

/**
 * Checks a value for its secret's kind before it is sealed. Errors describe the problem, never
 * the value. A CERTIFICATE value must be PEM text: only PEM blocks (and whitespace), at least one
 * CERTIFICATE block, and every CERTIFICATE block must parse as X.509; the first one is the leaf.
 */
export function checkSecretValue(kind: SecretKindName, value: Buffer): CertificateFacts | undefined {
  checkValueSize(value);
  if (kind !== 'CERTIFICATE') return undefined;
  return parseCertificatePem(value);
}

/** The kind-independent part of checkSecretValue: callers run it before touching the database. */
export function checkValueSize(value: Buffer): void {
  if (value.length === 0) throw invalidArgument('VALUE_REQUIRED', 'value must not be empty', [{ field: 'value', description: 'required' }]);
  if (value.length > MAX_VALUE_BYTES) {
    throw invalidArgument('VALUE_TOO_LARGE', `value is ${value.length} bytes; at most ${MAX_VALUE_BYTES} are allowed`, [
      { field: 'value', description: `at most ${MAX_VALUE_BYTES} bytes` },
    ], { max_bytes: String(MAX_VALUE_BYTES), size_bytes: String(value.length) });
  }
}

function parseCertificatePem(value: Buffer): CertificateFacts {
  const text = value.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(value)) throw certificateInvalid('not UTF-8 text');
  let leaf: CertificateFacts | undefined;
  let rest = '';
  let last = 0;
  for (const match of text.matchAll(PEM_BLOCK)) {
    rest += text.slice(last, match.index);
    last = match.index + match[0].length;
    if (match[1] !== 'CERTIFICATE') continue;
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(match[0]);
    } catch {
      throw certificateInvalid('a CERTIFICATE block does not parse as X.509');
    }
    if (leaf) continue;
    const notBefore = new Date(certificate.validFrom);
    const notAfter = new Date(certificate.validTo);
    if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) throw certificateInvalid('unreadable validity dates');
    leaf = {
      subject: certificate.subject,
      issuer: certificate.issuer,
      serialNumber: certificate.serialNumber,
      fingerprint: certificate.fingerprint256,
      notBefore,
      notAfter,
    };
  }
  rest += text.slice(last);
  if (rest.trim() !== '') throw certificateInvalid('text outside PEM blocks');
  if (!leaf) throw certificateInvalid('no CERTIFICATE block');
  return leaf;
}
