import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from 'pg';

/** A fresh 32-byte master key, base64 (KERNEL_MASTER_KEYS format). */
export const masterKey = () => randomBytes(32).toString('base64');

/** KERNEL_MASTER_KEYS / KERNEL_MASTER_KEY_ACTIVE for startTestKernel's env. */
export const masterKeyEnv = (keys: Record<number, string>, active?: number): Record<string, string> => ({
  KERNEL_MASTER_KEYS: JSON.stringify(keys),
  ...(active === undefined ? {} : { KERNEL_MASTER_KEY_ACTIVE: String(active) }),
});

/**
 * A self-signed P-256 certificate valid for `days`, made by the openssl CLI (outside the
 * kernel). Returns the certificate PEM and its private key PEM.
 */
export function opensslCertificate(days: number, commonName = 't'): { certificate: string; privateKey: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'axis-cert-'));
  try {
    const key = path.join(dir, 'k');
    const cert = path.join(dir, 'c');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-days', String(days), '-nodes', '-subj', `/CN=${commonName}`, '-keyout', key, '-out', cert],
      { stdio: 'ignore' },
    );
    return { certificate: readFileSync(cert, 'utf8'), privateKey: readFileSync(key, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs `fn` with a superuser (owner) connection: RLS does not apply, nothing is hidden. */
export async function asSuperuser<T>(url: string, fn: (sql: Client) => Promise<T>): Promise<T> {
  const sql = new Client({ connectionString: url });
  await sql.connect();
  try {
    return await fn(sql);
  } finally {
    await sql.end();
  }
}

/** Every row of every table in the public schema, as text (bytea as hex), one line per row. */
export async function dumpAllTables(sql: Client): Promise<string> {
  const { rows: tables } = await sql.query<{ name: string }>(
    `SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`,
  );
  const parts: string[] = [];
  for (const { name } of tables) {
    const { rows } = await sql.query<{ line: string }>(`SELECT t::text AS line FROM ${name} t`);
    parts.push(...rows.map((r) => `${name}: ${r.line}`));
  }
  return parts.join('\n');
}

/** The forms a value could take in a text dump or a log line. */
export function valueForms(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  // A multi-line value (PEM) would be escaped in JSON logs: each of its distinctive lines counts too.
  const lines = value.split(/\r?\n/).filter((line) => line.length >= 16 && !line.startsWith('-----'));
  return [value, bytes.toString('hex'), bytes.toString('base64'), bytes.toString('base64url'), JSON.stringify([...bytes]).slice(1, -1), ...lines];
}
