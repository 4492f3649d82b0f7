import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import {
  applyMigrations,
  getMigrationStatus,
  loadMigrations,
  MIGRATION_LOCK_KEY,
  MigrationError,
  splitSqlStatements,
  type MigrationProgress,
} from '../../services/platform/migrations/migration-runner';
import { createTestDatabase, type TestDatabase } from '../support/test-database';

const repoRoot = resolve(__dirname, '../..');
const databases: TestDatabase[] = [];
const clients: Client[] = [];
const tempDirs: string[] = [];

afterAll(async () => {
  await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
  await Promise.all(databases.map((database) => database.drop()));
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A new empty database per test, so that ledgers never meet. */
async function freshDatabase(): Promise<{ url: string; client: Client }> {
  const database = await createTestDatabase('axis_migrations');
  databases.push(database);
  const client = await connect(database.url);
  return { url: database.url, client };
}

async function connect(url: string): Promise<Client> {
  const client = new Client({ connectionString: url });
  await client.connect();
  clients.push(client);
  return client;
}

function migrationsDir(migrations: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'axis-migrations-'));
  tempDirs.push(dir);
  for (const [folder, sql] of Object.entries(migrations)) writeMigration(dir, folder, sql);
  return dir;
}

function writeMigration(dir: string, folder: string, sql: string): void {
  mkdirSync(join(dir, folder), { recursive: true });
  writeFileSync(join(dir, folder, 'migration.sql'), sql);
}

const sha256 = (text: string) => createHash('sha256').update(Buffer.from(text, 'utf8')).digest('hex');

async function migrationError(promiseOrFn: Promise<unknown> | (() => unknown)): Promise<MigrationError> {
  try {
    await (typeof promiseOrFn === 'function' ? promiseOrFn() : promiseOrFn);
  } catch (error) {
    expect(error).toBeInstanceOf(MigrationError);
    return error as MigrationError;
  }
  throw new Error('expected a MigrationError, but nothing was thrown');
}

async function ledger(client: Client): Promise<Array<{ version: string; name: string; checksum: string; applied_by: string; duration_ms: number }>> {
  const { rows } = await client.query('SELECT version, name, checksum, applied_by, duration_ms FROM kernel_schema_migrations ORDER BY version');
  return rows;
}

async function tableExists(client: Client, table: string): Promise<boolean> {
  const { rows } = await client.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [table]);
  return rows[0]!.present;
}

/** Advisory locks held or awaited in the current database, by any session. */
async function advisoryLocks(client: Client): Promise<number> {
  const { rows } = await client.query<{ n: string }>(
    `SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
  return Number(rows[0]!.n);
}

async function sessionTimeouts(client: Client): Promise<string[]> {
  const lock = await client.query<{ lock_timeout: string }>('SHOW lock_timeout');
  const statement = await client.query<{ statement_timeout: string }>('SHOW statement_timeout');
  return [lock.rows[0]!.lock_timeout, statement.rows[0]!.statement_timeout];
}

describe('loadMigrations', () => {
  it('reads the folders sorted by version, with the sha256 of each file and its transaction mode', () => {
    const third = '-- kernel:no-transaction\r\nCREATE INDEX CONCURRENTLY t_x ON t (x);\n';
    const dir = migrationsDir({
      '20261126000300_third': third,
      '20261126000100_first': 'CREATE TABLE t (x int);\n',
      '20261126000200_second-step': '\uFEFFALTER TABLE t ADD COLUMN y int;\n',
    });
    writeFileSync(join(dir, 'migration_lock.toml'), 'provider = "postgresql"\n');
    mkdirSync(join(dir, '.cache'));

    const files = loadMigrations(dir);

    expect(files.map((file) => [file.version, file.name, file.directory, file.transactional])).toEqual([
      ['20261126000100', 'first', '20261126000100_first', true],
      ['20261126000200', 'second-step', '20261126000200_second-step', true],
      ['20261126000300', 'third', '20261126000300_third', false],
    ]);
    expect(files[0]!.path).toBe(join(dir, '20261126000100_first', 'migration.sql'));
    expect(files[2]!.checksum).toBe(sha256(third));
    // The checksum covers the bytes on disk; the SQL drops the byte-order mark PostgreSQL would reject.
    expect(files[1]!.checksum).toBe(sha256('\uFEFFALTER TABLE t ADD COLUMN y int;\n'));
    expect(files[1]!.sql).toBe('ALTER TABLE t ADD COLUMN y int;\n');
  });

  it.each(['2026112600_short', '20261126000000', 'init', '20261126000000_bad name', '20261126000000-init'])('rejects the folder name %j', async (folder) => {
    const dir = migrationsDir({ '20261126000000_ok': 'SELECT 1;', [folder]: 'SELECT 2;' });
    const error = await migrationError(() => loadMigrations(dir));
    expect(error.reason).toBe('MIGRATION_NAME_INVALID');
    expect(error.details.directory).toBe(folder);
  });

  it('rejects two folders with the same version', async () => {
    const dir = migrationsDir({ '20261126000000_one': 'SELECT 1;', '20261126000000_two': 'SELECT 2;' });
    const error = await migrationError(() => loadMigrations(dir));
    expect(error.reason).toBe('MIGRATION_VERSION_DUPLICATE');
    expect(error.details.version).toBe('20261126000000');
  });

  it('rejects a folder without migration.sql and a missing directory', async () => {
    const dir = migrationsDir({ '20261126000000_one': 'SELECT 1;' });
    mkdirSync(join(dir, '20261126000001_empty'));
    expect((await migrationError(() => loadMigrations(dir))).reason).toBe('MIGRATION_SQL_MISSING');
    expect((await migrationError(() => loadMigrations(join(dir, 'nope')))).reason).toBe('MIGRATION_DIRECTORY_INVALID');
  });
});

describe('splitSqlStatements', () => {
  it('splits on top-level semicolons only', () => {
    const sql = [
      "-- a comment; with a semicolon",
      "CREATE INDEX CONCURRENTLY a ON t (x);",
      "/* block; /* nested; */ still comment; */ SELECT 'it''s; fine', E'back\\'slash;', \"odd;name\" FROM t;",
      "DO $body$ BEGIN PERFORM 1; END $body$;",
      "SELECT $$;$$, a$b FROM t",
      "; ;  -- trailing",
    ].join('\n');
    const statements = splitSqlStatements(sql);
    expect(statements.map((s) => s.text.replace(/\s+/g, ' ').trim())).toEqual([
      '-- a comment; with a semicolon CREATE INDEX CONCURRENTLY a ON t (x)',
      "/* block; /* nested; */ still comment; */ SELECT 'it''s; fine', E'back\\'slash;', \"odd;name\" FROM t",
      'DO $body$ BEGIN PERFORM 1; END $body$',
      'SELECT $$;$$, a$b FROM t',
    ]);
    for (const statement of statements) expect(sql.slice(statement.offset, statement.offset + statement.text.length)).toBe(statement.text);
  });
});

describe('applyMigrations on PostgreSQL', () => {
  it('(A) applies pending migrations in version order, records them, and a re-run is a no-op', async () => {
    const { client } = await freshDatabase();
    const sources = {
      // Created out of order on purpose; each step depends on the one before.
      '20261126000300_add_index': "CREATE INDEX step_version_idx ON step (version);\nINSERT INTO step (version) VALUES ('300');\n",
      '20261126000100_create_step': 'CREATE TABLE step (seq serial PRIMARY KEY);\n',
      '20261126000200_add_version': "ALTER TABLE step ADD COLUMN version text NOT NULL;\nINSERT INTO step (version) VALUES ('200');\n",
    };
    const dir = migrationsDir(sources);
    const files = loadMigrations(dir);
    const versions = ['20261126000100', '20261126000200', '20261126000300'];

    const before = await getMigrationStatus(client, files);
    expect(before.applied).toEqual([]);
    expect(before.pending.map((file) => file.version)).toEqual(versions);
    const timeoutsBefore = await sessionTimeouts(client);

    const events: MigrationProgress[] = [];
    const result = await applyMigrations(client, files, { appliedBy: 'spec A', onProgress: (event) => events.push(event) });

    expect(result.applied.map((file) => file.version)).toEqual(versions);
    expect(events.map((event) => `${event.state} ${event.file.version}`)).toEqual(versions.flatMap((v) => [`applying ${v}`, `applied ${v}`]));
    expect(events.filter((event) => event.state === 'applied').every((event) => typeof event.durationMs === 'number')).toBe(true);
    expect((await client.query('SELECT version FROM step ORDER BY seq')).rows.map((row) => row.version)).toEqual(['200', '300']);
    const rows = await ledger(client);
    expect(rows.map((row) => [row.version, row.name, row.checksum, row.applied_by])).toEqual([
      [versions[0], 'create_step', sha256(sources['20261126000100_create_step']), 'spec A'],
      [versions[1], 'add_version', sha256(sources['20261126000200_add_version']), 'spec A'],
      [versions[2], 'add_index', sha256(sources['20261126000300_add_index']), 'spec A'],
    ]);
    expect(rows.every((row) => row.duration_ms >= 0)).toBe(true);
    // The timeouts were transaction-local: the session (on PGlite, everyone's) is untouched.
    expect(await sessionTimeouts(client)).toEqual(timeoutsBefore);

    const again = await applyMigrations(client, loadMigrations(dir));
    expect(again.applied).toEqual([]);
    expect(await ledger(client)).toEqual(rows);
    expect((await client.query('SELECT count(*)::int AS n FROM step')).rows[0].n).toBe(2);
    const after = await getMigrationStatus(client, files);
    expect(after.pending).toEqual([]);
    expect(after.applied.map((row) => row.version)).toEqual(versions);
    expect(await advisoryLocks(client)).toBe(0);
  });

  it('(B) refuses an edited applied migration, naming the file and both checksums, and applies nothing', async () => {
    const { client } = await freshDatabase();
    const original = 'CREATE TABLE account (id int PRIMARY KEY);\n';
    const edited = 'CREATE TABLE account (id bigint PRIMARY KEY);\n';
    const dir = migrationsDir({ '20261126000100_account': original });
    await applyMigrations(client, loadMigrations(dir));

    writeMigration(dir, '20261126000100_account', edited);
    writeMigration(dir, '20261126000200_more', 'CREATE TABLE more (id int);\n');
    const files = loadMigrations(dir);

    const error = await migrationError(applyMigrations(client, files));
    expect(error.reason).toBe('MIGRATION_CHECKSUM_MISMATCH');
    expect(error.details).toMatchObject({
      version: '20261126000100',
      directory: '20261126000100_account',
      path: join(dir, '20261126000100_account', 'migration.sql'),
      fileChecksum: sha256(edited),
      appliedChecksum: sha256(original),
    });
    for (const fact of ['20261126000100_account', sha256(edited), sha256(original)]) expect(error.message).toContain(fact);
    expect(await tableExists(client, 'more')).toBe(false);
    expect((await ledger(client)).map((row) => row.version)).toEqual(['20261126000100']);
    expect(await advisoryLocks(client)).toBe(0);

    const status = await getMigrationStatus(client, files);
    expect(status.mismatched.map((m) => [m.file.directory, m.appliedChecksum])).toEqual([['20261126000100_account', sha256(original)]]);
  });

  it('refuses an applied migration whose folder is gone, and a pending one older than the newest applied', async () => {
    const { client } = await freshDatabase();
    const dir = migrationsDir({ '20261126000100_one': 'SELECT 1;\n', '20261126000300_three': 'SELECT 3;\n' });
    await applyMigrations(client, loadMigrations(dir));

    rmSync(join(dir, '20261126000100_one'), { recursive: true });
    const missing = await migrationError(applyMigrations(client, loadMigrations(dir)));
    expect(missing.reason).toBe('MIGRATION_FILE_MISSING');
    expect(missing.details.version).toBe('20261126000100');
    expect((await getMigrationStatus(client, loadMigrations(dir))).missingFiles.map((row) => row.version)).toEqual(['20261126000100']);

    writeMigration(dir, '20261126000100_one', 'SELECT 1;\n');
    writeMigration(dir, '20261126000200_late', 'CREATE TABLE late (id int);\n');
    const late = await migrationError(applyMigrations(client, loadMigrations(dir)));
    expect(late.reason).toBe('MIGRATION_OUT_OF_ORDER');
    expect(late.details).toMatchObject({ directory: '20261126000200_late', newestAppliedVersion: '20261126000300' });
    expect(await tableExists(client, 'late')).toBe(false);
  });

  it('(C) rolls a failing migration back completely, keeps the earlier ones, releases the lock, and applies the fixed file', async () => {
    const { url, client } = await freshDatabase();
    const dir = migrationsDir({
      '20261126000100_first': 'CREATE TABLE first_table (id int);\n',
      '20261126000200_broken': 'CREATE TABLE second_table (id int);\n\nINSERT INTO no_such_table VALUES (1);\n',
      '20261126000300_third': 'CREATE TABLE third_table (id int);\n',
    });

    const error = await migrationError(applyMigrations(client, loadMigrations(dir)));
    expect(error.reason).toBe('MIGRATION_FAILED');
    expect(error.details).toMatchObject({ version: '20261126000200', directory: '20261126000200_broken', sqlState: '42P01', line: '3' });
    expect(error.message).toContain('20261126000200_broken');
    expect(error.message).toContain('no_such_table');

    expect(await tableExists(client, 'first_table')).toBe(true);
    expect(await tableExists(client, 'second_table')).toBe(false);
    expect(await tableExists(client, 'third_table')).toBe(false);
    expect((await ledger(client)).map((row) => row.version)).toEqual(['20261126000100']);

    // Released: no advisory lock remains, and another session can take the migration lock at once.
    expect(await advisoryLocks(client)).toBe(0);
    const other = await connect(url);
    expect((await other.query('SELECT pg_try_advisory_lock($1::bigint) AS got', [MIGRATION_LOCK_KEY])).rows[0].got).toBe(true);
    await other.query('SELECT pg_advisory_unlock($1::bigint)', [MIGRATION_LOCK_KEY]);

    writeMigration(dir, '20261126000200_broken', 'CREATE TABLE second_table (id int);\n');
    const fixed = await applyMigrations(client, loadMigrations(dir));
    expect(fixed.applied.map((file) => file.version)).toEqual(['20261126000200', '20261126000300']);
    expect(await tableExists(client, 'third_table')).toBe(true);
    expect((await ledger(client)).map((row) => row.version)).toEqual(['20261126000100', '20261126000200', '20261126000300']);
  });

  it('bounds lock waits and statements with transaction-local timeouts', async () => {
    const { url, client } = await freshDatabase();
    const dir = migrationsDir({ '20261126000100_base': 'CREATE TABLE busy (id int);\n' });
    await applyMigrations(client, loadMigrations(dir));
    const timeoutsBefore = await sessionTimeouts(client);

    const holder = await connect(url);
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE busy IN ACCESS EXCLUSIVE MODE');
    writeMigration(dir, '20261126000200_alter', 'ALTER TABLE busy ADD COLUMN note text;\n');
    const started = Date.now();
    const lockError = await migrationError(applyMigrations(client, loadMigrations(dir), { lockTimeoutMs: 200 }));
    expect(lockError.reason).toBe('MIGRATION_FAILED');
    expect(lockError.details.sqlState).toBe('55P03');
    expect(Date.now() - started).toBeLessThan(5_000);
    await holder.query('ROLLBACK');

    writeMigration(dir, '20261126000200_alter', 'SELECT pg_sleep(5);\n');
    const slowError = await migrationError(applyMigrations(client, loadMigrations(dir), { statementTimeoutMs: 200 }));
    expect(slowError.reason).toBe('MIGRATION_FAILED');
    expect(slowError.details.sqlState).toBe('57014');

    expect(await sessionTimeouts(client)).toEqual(timeoutsBefore);
    expect((await ledger(client)).map((row) => row.version)).toEqual(['20261126000100']);
    expect(await advisoryLocks(client)).toBe(0);
  });

  it('refuses a migration that ends the transaction itself', async () => {
    const { client } = await freshDatabase();
    const dir = migrationsDir({ '20261126000100_commits': 'CREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);\n' });
    const error = await migrationError(applyMigrations(client, loadMigrations(dir)));
    expect(error.reason).toBe('MIGRATION_TRANSACTION_ENDED');
    expect(error.details.directory).toBe('20261126000100_commits');
    expect(await ledger(client)).toEqual([]);
    expect(await advisoryLocks(client)).toBe(0);
  });

  it('runs a "-- kernel:no-transaction" migration statement by statement (CREATE INDEX CONCURRENTLY)', async () => {
    const { client } = await freshDatabase();
    const concurrently = 'CREATE INDEX CONCURRENTLY item_a_idx ON item (a);\n-- second; index\nCREATE INDEX CONCURRENTLY item_b_idx ON item (b);\n';
    const dir = migrationsDir({
      '20261126000100_item': 'CREATE TABLE item (a int, b int);\n',
      '20261126000200_wrapped': concurrently,
    });
    const wrapped = await migrationError(applyMigrations(client, loadMigrations(dir)));
    expect(wrapped.reason).toBe('MIGRATION_FAILED');
    expect(wrapped.details.sqlState).toBe('25001');

    writeMigration(dir, '20261126000200_wrapped', `-- kernel:no-transaction\n${concurrently}`);
    const result = await applyMigrations(client, loadMigrations(dir));
    expect(result.applied.map((file) => file.version)).toEqual(['20261126000200']);
    const { rows } = await client.query(
      `SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'item'::regclass ORDER BY 1`,
    );
    expect(rows).toEqual([
      { relname: 'item_a_idx', indisvalid: true },
      { relname: 'item_b_idx', indisvalid: true },
    ]);
    expect((await ledger(client)).map((row) => row.version)).toEqual(['20261126000100', '20261126000200']);

    writeMigration(dir, '20261126000300_bad', '-- kernel:no-transaction\nCREATE INDEX CONCURRENTLY item_c_idx ON item (a);\nSELECT no_such_column FROM item;\n');
    const failed = await migrationError(applyMigrations(client, loadMigrations(dir)));
    expect(failed.details).toMatchObject({ version: '20261126000300', sqlState: '42703', statement: '2', statementsCompleted: '1', line: '3' });
    // Without a transaction the first index stays: the documented price of the directive.
    expect(await tableExists(client, 'item_c_idx')).toBe(true);
    expect((await ledger(client)).map((row) => row.version)).toEqual(['20261126000100', '20261126000200']);
  });

  it('(D) two migrator processes at once: each migration is applied exactly once and both succeed', async () => {
    const { url, client } = await freshDatabase();
    const dir = migrationsDir({
      // The sleep keeps the winner inside the lock long enough for the other to queue behind it.
      '20261126000100_counter': 'CREATE TABLE counter (n int NOT NULL);\nSELECT pg_sleep(1.5);\n',
      '20261126000200_count': 'INSERT INTO counter (n) VALUES (1);\n',
      '20261126000300_index': 'CREATE INDEX counter_n_idx ON counter (n);\n',
    });

    const migrators = [startMigrator(url, dir), startMigrator(url, dir)];
    await Promise.all(migrators.map((migrator) => migrator.ready));
    for (const migrator of migrators) migrator.child.stdin.write('go\n');

    // Watch for the loser waiting on the advisory lock while the winner works.
    let sawAdvisoryWait = false;
    let finished = false;
    const exits = Promise.all(migrators.map((migrator) => migrator.exit)).finally(() => (finished = true));
    while (!finished) {
      const { rows } = await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
      );
      if (Number(rows[0]!.n) > 0) sawAdvisoryWait = true;
      await new Promise((resolveDelay) => setTimeout(resolveDelay, 50));
    }
    const results = await exits;

    for (const result of results) expect(result).toMatchObject({ code: 0, stderr: '' });
    const applied = results.map((result) => (JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { applied: string[] }).applied);
    expect(applied.flat().sort()).toEqual(['20261126000100', '20261126000200', '20261126000300']);
    expect(applied.map((versions) => versions.length).sort()).toEqual([0, 3]);
    expect(sawAdvisoryWait).toBe(true);
    expect((await ledger(client)).map((row) => row.version)).toEqual(['20261126000100', '20261126000200', '20261126000300']);
    expect((await client.query('SELECT count(*)::int AS n FROM counter')).rows[0].n).toBe(1);
    expect(await advisoryLocks(client)).toBe(0);
  });
});

interface Migrator {
  child: ChildProcessWithoutNullStreams;
  ready: Promise<void>;
  exit: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function startMigrator(url: string, dir: string): Migrator {
  const child = spawn('npx', ['tsx', 'tests/support/migrate-once.ts', url, dir, '--wait-for-go'], { cwd: repoRoot });
  let stdout = '';
  let stderr = '';
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolveReady, rejectReady) => {
    markReady = resolveReady;
    child.once('exit', (code) => rejectReady(new Error(`migrator exited (${code}) before it was ready: ${stderr}`)));
  });
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    if (stdout.startsWith('ready\n')) markReady();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exit = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolveExit) =>
    child.once('close', (code) => resolveExit({ code, stdout: stdout.replace(/^ready\n/, ''), stderr })),
  );
  return { child, ready, exit };
}
