/**
 * The kernel's SQL migration runner (docs/platform-contract.md#migrations).
 *
 * Migrations are `prisma/migrations/<14-digit timestamp>_<name>/migration.sql` files, applied in
 * version order and recorded in the ledger table `kernel_schema_migrations` (created on first
 * use). Applied files are immutable: their SHA-256 is checked on every run, and a change must
 * come as a new migration.
 *
 * Transactions: each migration runs in its own transaction, with `lock_timeout` and
 * `statement_timeout` set transaction-locally and its ledger row inserted in the same
 * transaction, so it applies completely or not at all. Files must not contain BEGIN/COMMIT/
 * ROLLBACK; a file that ends the runner's transaction is refused (MIGRATION_TRANSACTION_ENDED).
 *
 * `-- kernel:no-transaction` as a file's first line runs it outside a transaction, one statement
 * at a time (PostgreSQL refuses CREATE INDEX CONCURRENTLY in a transaction block, and a
 * multi-statement query string is one). The price: no atomicity — statements before a failing one
 * stay applied, so write such files to be re-runnable (`IF NOT EXISTS`; after a failed
 * CREATE INDEX CONCURRENTLY drop the INVALID index it leaves) — and no runner timeouts, because
 * setting them would need a session-level SET, which would leak into every connection of the
 * embedded database (PGlite serves all connections from one session). The ledger row is
 * written once every statement has succeeded. Keep these files to such statements only.
 *
 * Concurrency: `applyMigrations` holds the session-level advisory lock
 * {@link MIGRATION_LOCK_KEY} for its whole run, so concurrent migrators (several kernel
 * instances starting at once) serialize and the later ones find nothing pending. On PGlite the
 * lock excludes nothing (all connections share one session, and session locks are re-entrant), so
 * calls within one process are also queued in memory — an embedded database has only one process.
 * Each migration's transaction re-checks the ledger as a last line of defence, so a migration
 * another connection has just recorded is skipped, not applied twice.
 */
import { hostname, userInfo } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { ClientBase } from 'pg';
import { sqlState } from '../database/postgres-errors';
import { MigrationError } from './migration-error';
import { sortMigrations, splitSqlStatements, type MigrationFile } from './migration-files';

export { MigrationError } from './migration-error';
export {
  loadMigrations,
  sortMigrations,
  splitSqlStatements,
  MIGRATION_SQL_FILE,
  NO_TRANSACTION_DIRECTIVE,
  type MigrationFile,
  type SqlStatement,
} from './migration-files';

/**
 * The `pg_advisory_lock` key every migrator takes: the ASCII bytes of "AXISMIGR" read as a
 * big-endian bigint (0x415849534D494752). A string, because it does not fit a JS number exactly.
 * Advisory lock keys are per database, so migrators of different databases never wait on each other.
 */
export const MIGRATION_LOCK_KEY = '4708594032543614802';

/** The ledger table, in the connection's current schema (normally `public`). */
export const MIGRATION_LEDGER_TABLE = 'kernel_schema_migrations';

const DEFAULT_LOCK_TIMEOUT_MS = 5_000;
const DEFAULT_STATEMENT_TIMEOUT_MS = 60_000;

/** One row of the ledger. */
export interface AppliedMigration {
  readonly version: string;
  readonly name: string;
  readonly checksum: string;
  readonly appliedAt: Date;
  readonly appliedBy: string;
  readonly durationMs: number;
}

/** How the files on disk compare with the ledger. */
export interface MigrationStatus {
  /** Ledger rows, by version. */
  applied: AppliedMigration[];
  /** Files not in the ledger, by version. */
  pending: MigrationFile[];
  /** Applied files whose bytes changed since (applyMigrations refuses to run). */
  mismatched: Array<{ file: MigrationFile; appliedChecksum: string }>;
  /** Ledger rows whose folder is gone (applyMigrations refuses to run). */
  missingFiles: AppliedMigration[];
  /** Pending files older than the newest applied version (applyMigrations refuses to run). */
  outOfOrder: MigrationFile[];
}

/** Reported before and after each migration. */
export interface MigrationProgress {
  file: MigrationFile;
  state: 'applying' | 'applied';
  /** Set with `applied`: time spent running the file, in milliseconds. */
  durationMs?: number;
}

export interface ApplyMigrationsOptions {
  /** Transaction-local `lock_timeout` per migration; 0 disables. Default 5 000 ms. */
  lockTimeoutMs?: number;
  /** Transaction-local `statement_timeout` (per statement) per migration; 0 disables. Default 60 000 ms. */
  statementTimeoutMs?: number;
  /** Recorded in the ledger's `applied_by`. Default `<os user>@<host name>`. */
  appliedBy?: string;
  /** Called before and after each migration; an exception it throws stops the run. */
  onProgress?: (event: MigrationProgress) => void;
}

/**
 * Compares `files` with the ledger without changing anything (a missing ledger means nothing is
 * applied). Throws MIGRATION_VERSION_DUPLICATE when two files share a version.
 */
export async function getMigrationStatus(client: ClientBase, files: readonly MigrationFile[]): Promise<MigrationStatus> {
  return classify(sortMigrations(files), await readLedger(client));
}

/**
 * Applies the pending migrations among `files`, in version order, and returns the ones it
 * applied (none when everything is up to date, or another migrator got there first).
 *
 * Holds the advisory lock {@link MIGRATION_LOCK_KEY} throughout and always releases it. Before
 * applying anything it refuses, with a {@link MigrationError}, an applied file that was edited
 * (MIGRATION_CHECKSUM_MISMATCH), an applied version whose file is gone (MIGRATION_FILE_MISSING)
 * or a pending file older than the newest applied one (MIGRATION_OUT_OF_ORDER). A failing
 * migration is rolled back and reported as MIGRATION_FAILED with its file and PostgreSQL error;
 * the migrations before it stay applied. Lost connections and the like surface as node-postgres
 * raised them.
 *
 * `client` must be a dedicated connection that is not inside a transaction. Calls in one process
 * run one after another (see the module comment), so `onProgress` must not call this function.
 */
export async function applyMigrations(
  client: ClientBase,
  files: readonly MigrationFile[],
  options: ApplyMigrationsOptions = {},
): Promise<{ applied: MigrationFile[] }> {
  const sorted = sortMigrations(files);
  const settings: RunSettings = {
    lockTimeoutMs: timeoutOption('lockTimeoutMs', options.lockTimeoutMs, DEFAULT_LOCK_TIMEOUT_MS),
    statementTimeoutMs: timeoutOption('statementTimeoutMs', options.statementTimeoutMs, DEFAULT_STATEMENT_TIMEOUT_MS),
    appliedBy: options.appliedBy ?? defaultAppliedBy(),
  };

  return serializeInProcess(() => applyUnderLock(client, sorted, settings, options.onProgress));
}

/** The tail of the in-process queue of `applyMigrations` calls. */
let inProcessTail: Promise<unknown> = Promise.resolve();

function serializeInProcess<T>(fn: () => Promise<T>): Promise<T> {
  const run = inProcessTail.then(fn, fn);
  inProcessTail = run.catch(() => undefined);
  return run;
}

async function applyUnderLock(
  client: ClientBase,
  sorted: MigrationFile[],
  settings: RunSettings,
  onProgress: ApplyMigrationsOptions['onProgress'],
): Promise<{ applied: MigrationFile[] }> {
  await client.query('SELECT pg_advisory_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
  let succeeded = false;
  try {
    await ensureLedger(client);
    const status = classify(sorted, await readLedger(client));
    refuseUnsafeHistory(status);
    const applied: MigrationFile[] = [];
    for (const file of status.pending) {
      onProgress?.({ file, state: 'applying' });
      const durationMs = file.transactional ? await applyInTransaction(client, file, settings) : await applyWithoutTransaction(client, file, settings);
      if (durationMs === undefined) continue;
      applied.push(file);
      onProgress?.({ file, state: 'applied', durationMs });
    }
    succeeded = true;
    return { applied };
  } finally {
    try {
      await client.query('SELECT pg_advisory_unlock($1::bigint)', [MIGRATION_LOCK_KEY]);
    } catch (error) {
      // After a failure the connection is often what broke, and then the server has already
      // dropped the lock with the session; the original error is the one worth reporting.
      if (succeeded) {
        throw new MigrationError('MIGRATION_LOCK_RELEASE_FAILED', `migrations applied, but releasing the migration lock failed: ${(error as Error).message}`, { lockKey: MIGRATION_LOCK_KEY }, { cause: error });
      }
    }
  }
}

interface RunSettings {
  lockTimeoutMs: number;
  statementTimeoutMs: number;
  appliedBy: string;
}

/** Runs one file and its ledger row in one transaction; undefined when it turned out to be recorded already. */
async function applyInTransaction(client: ClientBase, file: MigrationFile, settings: RunSettings): Promise<number | undefined> {
  await client.query('BEGIN');
  try {
    // set_config(..., true) is SET LOCAL: it ends with the transaction, so nothing leaks into the
    // session — which on PGlite is every connection's session.
    const { rows } = await client.query<{ xid: string }>(
      `SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true), txid_current()::text AS xid`,
      [`${settings.lockTimeoutMs}ms`, `${settings.statementTimeoutMs}ms`],
    );
    const xid = rows[0]!.xid;
    if (await isRecorded(client, file.version)) {
      await client.query('ROLLBACK');
      return undefined;
    }
    const started = performance.now();
    try {
      await client.query(file.sql);
    } catch (error) {
      throw migrationFailed(file, error, 0);
    }
    const durationMs = Math.round(performance.now() - started);
    // A COMMIT or ROLLBACK in the file would have ended our transaction, and what ran after it
    // autocommitted; a new transaction id is how that shows.
    const after = await client.query<{ xid: string }>('SELECT txid_current()::text AS xid');
    if (after.rows[0]!.xid !== xid) {
      throw new MigrationError(
        'MIGRATION_TRANSACTION_ENDED',
        `migration ${file.directory} (${file.path}) ended the runner's transaction; remove BEGIN/COMMIT/ROLLBACK from it (parts of it may have been committed)`,
        fileDetails(file),
      );
    }
    await insertLedgerRow(client, file, settings.appliedBy, durationMs);
    const commit = await client.query('COMMIT');
    // PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK rather than an error.
    if (commit.command === 'ROLLBACK') throw new Error('the transaction was aborted and rolled back at COMMIT');
    return durationMs;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error instanceof MigrationError ? error : migrationFailed(file, error, 0);
  }
}

/** Runs a no-transaction file statement by statement, then records it; undefined when recorded already. */
async function applyWithoutTransaction(client: ClientBase, file: MigrationFile, settings: RunSettings): Promise<number | undefined> {
  if (await isRecorded(client, file.version)) return undefined;
  const statements = splitSqlStatements(file.sql);
  const started = performance.now();
  for (const [index, statement] of statements.entries()) {
    try {
      await client.query(statement.text);
    } catch (error) {
      throw migrationFailed(file, error, statement.offset, {
        statement: String(index + 1),
        statementsCompleted: String(index),
        transactional: 'false',
      });
    }
  }
  const durationMs = Math.round(performance.now() - started);
  try {
    await insertLedgerRow(client, file, settings.appliedBy, durationMs);
  } catch (error) {
    throw migrationFailed(file, error, 0, { transactional: 'false', statementsCompleted: String(statements.length) });
  }
  return durationMs;
}

async function insertLedgerRow(client: ClientBase, file: MigrationFile, appliedBy: string, durationMs: number): Promise<void> {
  await client.query(
    `INSERT INTO ${MIGRATION_LEDGER_TABLE} (version, name, checksum, applied_at, applied_by, duration_ms)
     VALUES ($1, $2, $3, clock_timestamp(), $4, $5)`,
    [file.version, file.name, file.checksum, appliedBy, durationMs],
  );
}

async function isRecorded(client: ClientBase, version: string): Promise<boolean> {
  const { rowCount } = await client.query(`SELECT 1 FROM ${MIGRATION_LEDGER_TABLE} WHERE version = $1`, [version]);
  return (rowCount ?? 0) > 0;
}

async function ledgerExists(client: ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [MIGRATION_LEDGER_TABLE]);
  return rows[0]?.present === true;
}

/**
 * Creates the ledger if absent. Callers hold the advisory lock, but CREATE TABLE IF NOT EXISTS is
 * not atomic against a concurrent creator that does not (it can fail on the catalog's unique
 * index), so such a failure counts as success once the table is there.
 */
async function ensureLedger(client: ClientBase): Promise<void> {
  if (await ledgerExists(client)) return;
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS ${MIGRATION_LEDGER_TABLE} (
      version     text        NOT NULL PRIMARY KEY,
      name        text        NOT NULL,
      checksum    text        NOT NULL,
      applied_at  timestamptz NOT NULL DEFAULT now(),
      applied_by  text        NOT NULL,
      duration_ms integer     NOT NULL
    )`);
  } catch (error) {
    const state = sqlState(error);
    if (!((state === '42P07' || state === '23505') && (await ledgerExists(client)))) throw error;
  }
}

async function readLedger(client: ClientBase): Promise<AppliedMigration[]> {
  if (!(await ledgerExists(client))) return [];
  const { rows } = await client.query<{ version: string; name: string; checksum: string; applied_at: Date; applied_by: string; duration_ms: number }>(
    // COLLATE "C": versions are digit strings and must order bytewise whatever the database locale.
    `SELECT version, name, checksum, applied_at, applied_by, duration_ms FROM ${MIGRATION_LEDGER_TABLE} ORDER BY version COLLATE "C"`,
  );
  return rows.map((row) => ({
    version: row.version,
    name: row.name,
    checksum: row.checksum,
    appliedAt: row.applied_at,
    appliedBy: row.applied_by,
    durationMs: row.duration_ms,
  }));
}

function classify(files: MigrationFile[], applied: AppliedMigration[]): MigrationStatus {
  const filesByVersion = new Map(files.map((file) => [file.version, file]));
  const appliedVersions = new Set(applied.map((row) => row.version));
  const mismatched: MigrationStatus['mismatched'] = [];
  const missingFiles: AppliedMigration[] = [];
  for (const row of applied) {
    const file = filesByVersion.get(row.version);
    if (!file) missingFiles.push(row);
    else if (file.checksum !== row.checksum) mismatched.push({ file, appliedChecksum: row.checksum });
  }
  const pending = files.filter((file) => !appliedVersions.has(file.version));
  const newestApplied = applied.at(-1)?.version;
  const outOfOrder = newestApplied === undefined ? [] : pending.filter((file) => file.version < newestApplied);
  return { applied, pending, mismatched, missingFiles, outOfOrder };
}

function refuseUnsafeHistory(status: MigrationStatus): void {
  const [edited] = status.mismatched;
  if (edited) {
    const { file, appliedChecksum } = edited;
    const others = status.mismatched.slice(1).map((m) => m.file.directory);
    throw new MigrationError(
      'MIGRATION_CHECKSUM_MISMATCH',
      `migration ${file.directory} (${file.path}) was changed after it was applied: sha256 ${file.checksum} on disk, ` +
        `${appliedChecksum} when applied; restore the file and put the change in a new migration` +
        (others.length > 0 ? ` (also changed: ${others.join(', ')})` : ''),
      { ...fileDetails(file), fileChecksum: file.checksum, appliedChecksum, mismatchedVersions: status.mismatched.map((m) => m.file.version).join(',') },
    );
  }
  const [missing] = status.missingFiles;
  if (missing) {
    throw new MigrationError(
      'MIGRATION_FILE_MISSING',
      `migration ${missing.version}_${missing.name} is recorded as applied but its folder is missing` +
        (status.missingFiles.length > 1 ? ` (${status.missingFiles.length} such versions)` : ''),
      {
        version: missing.version,
        directory: `${missing.version}_${missing.name}`,
        appliedChecksum: missing.checksum,
        missingVersions: status.missingFiles.map((row) => row.version).join(','),
      },
    );
  }
  const [late] = status.outOfOrder;
  if (late) {
    const newestApplied = status.applied.at(-1)!.version;
    throw new MigrationError(
      'MIGRATION_OUT_OF_ORDER',
      `migration ${late.directory} (${late.path}) is pending but older than the newest applied migration ${newestApplied}; give it a newer timestamp`,
      { ...fileDetails(late), newestAppliedVersion: newestApplied, outOfOrderVersions: status.outOfOrder.map((file) => file.version).join(',') },
    );
  }
}

function fileDetails(file: MigrationFile): Record<string, string> {
  return { version: file.version, directory: file.directory, path: file.path };
}

/** MIGRATION_FAILED for `error`, with the file line when PostgreSQL reported a position. */
function migrationFailed(file: MigrationFile, error: unknown, statementOffset: number, extra: Record<string, string> = {}): MigrationError {
  const pgError = error as { message?: unknown; position?: unknown; detail?: unknown; hint?: unknown };
  const message = typeof pgError?.message === 'string' ? pgError.message : String(error);
  const details: Record<string, string> = { ...fileDetails(file), error: message, ...extra };
  const state = sqlState(error);
  if (state) details.sqlState = state;
  if (typeof pgError?.detail === 'string') details.errorDetail = pgError.detail;
  if (typeof pgError?.hint === 'string') details.errorHint = pgError.hint;
  const position = Number(pgError?.position);
  let location = file.path;
  if (Number.isInteger(position) && position > 0) {
    const line = file.sql.slice(0, statementOffset + position - 1).split('\n').length;
    details.line = String(line);
    location += `:${line}`;
  }
  const outcome =
    extra.transactional === 'false'
      ? `it runs without a transaction, so its first ${extra.statementsCompleted ?? 0} statement(s) stay applied`
      : 'it was rolled back';
  return new MigrationError(
    'MIGRATION_FAILED',
    `migration ${file.directory} failed (${location}): ${message}${state ? ` [SQLSTATE ${state}]` : ''}; ${outcome}`,
    details,
    { cause: error },
  );
}

function timeoutOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new MigrationError('MIGRATION_OPTIONS_INVALID', `${name} must be a non-negative integer number of milliseconds, got ${value}`, { option: name, value: String(value) });
  }
  return value;
}

function defaultAppliedBy(): string {
  let user: string | undefined;
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry for the uid (common in containers).
    user = process.env.USER;
  }
  return `${user ?? 'unknown'}@${hostname()}`;
}
