/**
 * One migrator process, for the concurrency test of the migration runner.
 *
 *   npx tsx tests/support/migrate-once.ts <database-url> <migrations-dir> [--wait-for-go]
 *
 * With --wait-for-go it connects, writes "ready\n" and waits for a line on stdin before applying,
 * so a test can start several processes and release them at the same moment. It then writes
 * `{"applied":["<version>",...]}` to stdout and exits 0, or `{"reason":...,"message":...}` to
 * stderr and exits 1.
 */
import { once } from 'node:events';
import { Client } from 'pg';
import { applyMigrations, loadMigrations, MigrationError } from '../../services/platform/migrations/migration-runner';

async function main(): Promise<void> {
  const [databaseUrl, migrationsDir, ...flags] = process.argv.slice(2);
  if (!databaseUrl || !migrationsDir) throw new Error('usage: migrate-once.ts <database-url> <migrations-dir> [--wait-for-go]');
  const files = loadMigrations(migrationsDir);
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    if (flags.includes('--wait-for-go')) {
      process.stdout.write('ready\n');
      process.stdin.setEncoding('utf8');
      await once(process.stdin, 'data');
      process.stdin.pause();
    }
    const { applied } = await applyMigrations(client, files, { appliedBy: `migrate-once pid ${process.pid}` });
    process.stdout.write(`${JSON.stringify({ applied: applied.map((file) => file.version) })}\n`);
  } finally {
    await client.end();
  }
}

main().catch((error: unknown) => {
  const reason = error instanceof MigrationError ? error.reason : 'UNEXPECTED';
  process.stderr.write(`${JSON.stringify({ reason, message: error instanceof Error ? error.message : String(error) })}\n`);
  process.exitCode = 1;
});
