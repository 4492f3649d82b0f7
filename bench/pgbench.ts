import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from 'pg';

/**
 * PostgreSQL's single-row-update commit rate at `clients` concurrency, measured by pgbench on
 * the given database: the physical bound for anything that serialises on one row.
 */
export async function pgbenchSingleRowUpdate(databaseUrl: string, clients: number, seconds: number): Promise<number> {
  const sql = new Client({ connectionString: databaseUrl });
  await sql.connect();
  await sql.query('CREATE TABLE IF NOT EXISTS bench_hot_row (id int PRIMARY KEY, v bigint NOT NULL); INSERT INTO bench_hot_row VALUES (1, 0) ON CONFLICT DO NOTHING');
  await sql.end();
  const script = path.join(tmpdir(), `axis-pgbench-${process.pid}.sql`);
  writeFileSync(script, 'UPDATE bench_hot_row SET v = v + 1 WHERE id = 1;\n');
  const url = new URL(databaseUrl);
  const out = execFileSync(
    'pgbench',
    ['-n', '-M', 'prepared', '-f', script, '-c', String(clients), '-j', '2', '-T', String(seconds), '-h', url.hostname, '-p', url.port || '5432', '-U', decodeURIComponent(url.username) || 'postgres', url.pathname.slice(1)],
    { encoding: 'utf8', env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) } },
  );
  const tps = /tps = ([\d.]+)/.exec(out);
  if (!tps) throw new Error(`could not read pgbench output:\n${out}`);
  return Number(tps[1]);
}
